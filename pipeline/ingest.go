package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// MessageReader fetches and commits Kafka messages; *kafka-go.Reader
// implements it.
type MessageReader interface {
	FetchMessage(ctx context.Context) (kafkago.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafkago.Message) error
}

// Upload is one object version under incoming/ that a batch verifies.
type Upload struct {
	Bucket string
	Key    IncomingKey
	// Version identifies the object version (see ObjectVersion); "" when
	// the notification named none, and the ingester asks S3.
	Version string
	// VersionID and ETag are what the notification (or S3) says of the
	// version: its S3 version id ("" in an unversioned bucket) and its
	// unquoted ETag. The ingester checks them against the object as S3
	// has it before any batch is recorded.
	VersionID, ETag string
	// Metadata is the object's user metadata as S3 has it (filled by the
	// ingester): MetaChecks chooses the upload's checks; MetaHeaderRow,
	// read by the splitter, its header row.
	Metadata map[string]string
}

// MetaChecks is the user metadata (x-amz-meta-apbatch-checks) of an upload
// that names its checks, as --checks does ("qf,c2s" or "all"); without it
// the batch runs the ingester's default checks.
const MetaChecks = "apbatch-checks"

// MetaHeaderRow is the user metadata (x-amz-meta-apbatch-header-row) of an
// upload whose header is not where the reader finds it: the line of the
// file (the row of the sheet) that names the columns, from 1, as
// --header-row gives it (see csv.Options.HeaderRow). The splitter and the
// exporter read it from the object, so the same rows come out of both.
const MetaHeaderRow = "apbatch-header-row"

// HeaderRow returns the header row that an object's metadata names (see
// MetaHeaderRow), 0 when it names none. A value that is not a line
// number is an error in French, for the agent who uploaded the file.
func HeaderRow(meta map[string]string) (int, error) {
	raw := strings.TrimSpace(meta[MetaHeaderRow])
	if raw == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return 0, &FileError{Message: fmt.Sprintf("la ligne d'en-tête demandée pour ce fichier (« %.20s ») n'est pas un numéro de ligne ; déposez-le à nouveau avec un numéro à partir de 1, ou sans pour qu'elle soit trouvée", raw)}
	}
	return n, nil
}

// ErrNotCreated is returned by UploadOf for records that announce no new
// object (removals, tagging, ACL, restore, replication).
var ErrNotCreated = errors.New("pipeline: event is not an object creation")

// UploadOf returns the upload an event record announces: the key decoded
// (URL-decoded unless the emitter sends it raw, see
// schemas.S3EventRecord.KeyEncoded) and parsed, the version from the version
// id, else the ETag. The sequencer is not used: versitygw numbers events
// from 1 at each start, so it would name two uploads alike. It returns
// ErrNotCreated, ErrNotIncoming (wrapped or not), or a refusal of the key
// that does not repeat it.
func UploadOf(rec schemas.S3EventRecord) (Upload, error) {
	if !rec.ObjectCreated() {
		return Upload{}, ErrNotCreated
	}
	key := rec.S3.Object.Key
	if rec.KeyEncoded() {
		var err error
		if key, err = DecodeEventKey(key); err != nil {
			return Upload{}, fmt.Errorf("pipeline: event key is not URL-encoded")
		}
	}
	ik, err := ParseIncomingKey(key)
	if err != nil {
		return Upload{}, err
	}
	up := Upload{Bucket: rec.S3.Bucket.Name, Key: ik, Version: ObjectVersion(rec.S3.Object.VersionID, rec.S3.Object.ETag, ""),
		ETag: strings.Trim(rec.S3.Object.ETag, `"`)}
	if v := rec.S3.Object.VersionID; v != "null" {
		up.VersionID = v
	}
	if !storable(up.Bucket) || !storable(up.Version) || !storable(up.ETag) {
		// No store emits these; the ledger could not keep them, and the
		// event would be retried forever.
		return Upload{}, fmt.Errorf("pipeline: event names its bucket or object version with control characters or invalid UTF-8")
	}
	return up, nil
}

// storable reports whether s is valid UTF-8 without control characters
// (PostgreSQL text refuses NUL and invalid UTF-8).
func storable(s string) bool { return utf8.ValidString(s) && !hasControl(s) }

// KeyDigest returns a short hash of an object key, to name it in logs
// without its file name (which may name a person).
func KeyDigest(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:6])
}

// keyTenant returns the tenant part of a key under incoming/, if it looks
// like one, for logs.
func keyTenant(key string) string {
	rest, ok := strings.CutPrefix(key, IncomingPrefix)
	if !ok {
		return ""
	}
	t, _, _ := strings.Cut(rest, "/")
	if !ValidTenant(t) {
		return ""
	}
	return t
}

// maxSplitAttempts is how many splits of a batch may fail before the
// batch is refused.
const maxSplitAttempts = 3

// Ingester turns S3 event notifications into batches: one batch per object
// version under incoming/<tenant>/<campaign>/, split at once. The offset of
// an event is committed only after its batches are split (or refused).
type Ingester struct {
	// Uploads reads the topic the bucket notifies (apbatch.uploads unless
	// configured otherwise).
	Uploads  MessageReader
	Ledger   *ledger.Store
	Splitter *Splitter
	Log      zerolog.Logger
	// Bucket, when set, ignores events of other buckets. Default: "" (any).
	Bucket string
	// Checks are the verifications every new batch runs; every row gets
	// one result per check. Default: the quotient familial alone.
	Checks []schemas.Check
	// Period is the QF month new batches ask for, "YYYY-MM"; "" lets the
	// API use the current month. Default: "".
	Period string
	// Recipient is the SIRET of the collectivité sent with every call of
	// a tenant without its own in Recipients; "" for none: the uploads of
	// such a tenant are refused (batch failed) rather than sent under
	// another collectivité's SIRET.
	Recipient string
	// Recipients maps a tenant to its own SIRET, sent with the calls of
	// its batches instead of Recipient. Default: nil (Recipient for all).
	Recipients map[string]string
	// Metrics, when set, counts the batches started. Default: nil (none).
	Metrics *Metrics

	// mu serialises Start: the event consumer and the watcher may announce
	// the same upload at once, and one split per batch is enough.
	mu sync.Mutex
}

// Run consumes events until ctx ends. It returns nil on cancellation.
func (in *Ingester) Run(ctx context.Context) error {
	log := in.Log.With().Str("component", "ingest").Logger()
	for {
		m, err := in.Uploads.FetchMessage(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ingest: fetch event: %w", err)
		}
		if err := in.Handle(ctx, m.Value); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := in.Uploads.CommitMessages(ctx, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ingest: commit event offset %d: %w", m.Offset, err)
		}
		log.Debug().Int("partition", m.Partition).Int64("offset", m.Offset).Msg("event done")
	}
}

// Handle processes one event notification (see schemas.DecodeS3Event for
// the shapes accepted). Malformed events, events other than object
// creations, other buckets and keys outside incoming/ are logged and
// skipped; errors returned are transient.
func (in *Ingester) Handle(ctx context.Context, value []byte) error {
	log := in.Log.With().Str("component", "ingest").Logger()
	ev, err := schemas.DecodeS3Event(value)
	if err != nil {
		log.Warn().Err(err).Msg("event is not an S3 notification; skipped")
		return nil
	}
	if len(ev.Records) == 0 {
		log.Debug().Msg("notification without records (test event?); skipped")
	}
	for _, rec := range ev.Records {
		if in.Bucket != "" && rec.S3.Bucket.Name != in.Bucket {
			log.Debug().Str("bucket", rec.S3.Bucket.Name).Msg("event for another bucket; skipped")
			continue
		}
		up, err := UploadOf(rec)
		switch {
		case errors.Is(err, ErrNotCreated):
			log.Debug().Str("event", rec.EventName).Msg("not an object creation; skipped")
			continue
		case errors.Is(err, ErrNotIncoming):
			log.Debug().Str("key_sha256", KeyDigest(rec.S3.Object.Key)).Msg("object outside incoming/; skipped")
			continue
		case err != nil:
			log.Warn().Err(err).Str("tenant", keyTenant(rec.S3.Object.Key)).Str("key_sha256", KeyDigest(rec.S3.Object.Key)).
				Msg("upload refused")
			continue
		case strings.HasPrefix(up.Version, ForcedVersionPrefix):
			// Only "run --force", in its own process, makes such versions
			// up (Start, without an event): a notification naming one is
			// forged to run a roster again.
			log.Warn().Str("tenant", up.Key.Tenant).Str("key_sha256", KeyDigest(rec.S3.Object.Key)).
				Msg("event names a version no S3 service makes; skipped, no batch")
			continue
		}
		if err := in.Start(ctx, up); err != nil {
			return err
		}
	}
	return nil
}

// recipient returns the SIRET sent with the calls of tenant's batches.
func (in *Ingester) recipient(tenant string) string {
	if r := in.Recipients[tenant]; r != "" {
		return r
	}
	return in.Recipient
}

// Start records the upload's batch unless its object version already has
// one, and splits it; a batch recorded but not split yet (a crash between
// the two) is split again. An upload without a version is looked up in S3
// first, and skipped when the object is gone. Errors are transient.
func (in *Ingester) Start(ctx context.Context, up Upload) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	log := in.Log.With().Str("component", "ingest").Str("tenant", up.Key.Tenant).Str("campaign", up.Key.Campaign).Logger()
	key := up.Key.String()
	if up.Version == "" {
		obj, err := in.Splitter.S3.Head(ctx, key)
		if errors.Is(err, s3.ErrNotFound) {
			log.Info().Str("key_sha256", KeyDigest(key)).Msg("announced object is gone; skipped")
			return nil
		}
		if err != nil {
			return fmt.Errorf("ingest: version of an upload (key_sha256 %s): %w", KeyDigest(key), withoutKey(err))
		}
		up.Version, up.VersionID, up.ETag, up.Metadata = ObjectVersion(obj.VersionID, obj.ETag, ""), obj.VersionID, obj.ETag, obj.Metadata
	} else if gone, err := in.verify(ctx, log, &up); gone || err != nil {
		return err
	}
	checks := in.Checks
	var refused string
	if raw := strings.TrimSpace(up.Metadata[MetaChecks]); raw != "" {
		if cs, err := schemas.ParseChecks(raw); err != nil {
			refused = "les vérifications demandées pour ce fichier sont inconnues (" + err.Error() + ") ; déposez-le à nouveau en choisissant parmi : " + schemas.CheckNames()
		} else {
			checks = cs
		}
	}
	if len(checks) == 0 {
		checks = []schemas.Check{schemas.CheckQuotientFamilial}
	}
	nb := ledger.Batch{
		Tenant: up.Key.Tenant, Campaign: up.Key.Campaign, Checks: schemas.JoinChecks(checks),
		Bucket: up.Bucket, ObjectKey: key, ObjectVersion: up.Version, ObjectETag: up.ETag,
		Period: in.Period, Recipient: in.recipient(up.Key.Tenant),
	}
	if err := in.refreshed(ctx, &nb); err != nil {
		return err
	}
	b, created, err := in.Ledger.CreateBatch(ctx, nb)
	if err != nil {
		return err
	}
	blog := log.With().Str("batch_id", b.ID).Logger()
	if !created && b.State != ledger.StateCreated {
		blog.Info().Str("state", b.State).Msg("object version already has a batch; event ignored")
		return nil
	}
	blog.Info().Bool("resumed", !created).Msg("batch started")
	if created {
		in.Metrics.batchStarted(b.Tenant)
	}
	if refused != "" && b.State == ledger.StateCreated {
		return in.Splitter.fail(ctx, blog, b, refused)
	}
	if b.Recipient == "" {
		// Better no call than a call under another collectivité's SIRET.
		return in.Splitter.fail(ctx, blog, b, "aucun SIRET destinataire (recipient) n'est configuré pour cette collectivité")
	}
	// A file whose split fails every time (a crash it causes, an error
	// that is not transient after all) must not stop the role on each
	// restart: after maxSplitAttempts, the batch is refused.
	n, err := in.Ledger.StartSplit(ctx, b.ID)
	if err != nil {
		return err
	}
	if n > maxSplitAttempts {
		return in.Splitter.fail(ctx, blog, b, fmt.Sprintf("le découpage de ce fichier a échoué %d fois ; vérifiez-le (ouvrez-le dans un tableur et enregistrez-le à nouveau en CSV), puis déposez-le à nouveau", n-1))
	}
	return in.Splitter.Split(ctx, b)
}

// verify checks that the version up names exists as S3 has it (HEAD with
// its version id and If-Match on its ETag), and completes up's ETag from
// S3. When it does not exist (a forged event, or an upload replaced before
// its event was read in an unversioned bucket) no batch is started: gone
// is true, and a batch recorded for it but never split is failed. Errors
// are transient.
func (in *Ingester) verify(ctx context.Context, log zerolog.Logger, up *Upload) (gone bool, err error) {
	key := up.Key.String()
	pin := s3.Version{ID: up.VersionID, ETag: up.ETag}
	if strings.HasPrefix(up.Version, ForcedVersionPrefix) {
		pin.ID = ""
	}
	obj, err := in.Splitter.S3.HeadVersion(ctx, key, pin)
	if err == nil {
		up.ETag, up.Metadata = obj.ETag, obj.Metadata
		return false, nil
	}
	if !errors.Is(err, s3.ErrNotFound) {
		return false, fmt.Errorf("ingest: check the version of an upload (key_sha256 %s): %w", KeyDigest(key), withoutKey(err))
	}
	id := ledger.BatchID(up.Bucket, key, up.Version)
	b, berr := in.Ledger.Batch(ctx, id)
	switch {
	case berr == nil && b.State == ledger.StateCreated:
		return true, in.Splitter.fail(ctx, log.With().Str("batch_id", id).Logger(), b, goneMessage(path.Base(key)))
	case berr != nil && !errors.Is(berr, ledger.ErrNotFound):
		return false, berr
	}
	log.Warn().Str("key_sha256", KeyDigest(key)).Bool("has_version_id", pin.ID != "").
		Msg("announced object version does not exist in the bucket (replaced, deleted, or a forged event); skipped, no batch")
	return true, nil
}

// goneMessage tells agents that the file a batch verified is no longer in
// the bucket as it was.
func goneMessage(name string) string {
	return "le fichier « " + name + " » déposé pour ce lot a été remplacé ou supprimé depuis ; déposez-le à nouveau pour le vérifier"
}

// refreshed gives b the checks and recipient of the batch whose roster a
// refresh copied to b's object, and the refresh's period: a refreshed
// roster is verified as it was, whatever this process's defaults.
func (in *Ingester) refreshed(ctx context.Context, b *ledger.Batch) error {
	rf, err := in.Ledger.Refresh(ctx, b.Tenant, b.Campaign)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	// The copy's own event, or the bucket's notification of it (which may
	// come before the refresh records its batch); not a later upload.
	if rf.ObjectKey != b.ObjectKey || (rf.BatchID != "" && rf.BatchID != ledger.BatchID(b.Bucket, b.ObjectKey, b.ObjectVersion)) {
		return nil
	}
	src, err := in.Ledger.Batch(ctx, rf.SourceBatch)
	if err != nil {
		return err
	}
	b.Checks, b.Recipient, b.Period = src.Checks, src.Recipient, rf.Period
	return nil
}

// PublishUpload publishes the S3 event notification of an object stored
// under incoming/ on the uploads topic, as a bucket configured to notify
// Kafka does; version is the object version the batch will verify.
func PublishUpload(ctx context.Context, w MessageWriter, bucket, key string, obj s3.ObjectInfo, version string) error {
	ev := schemas.S3Event{Records: []schemas.S3EventRecord{{
		EventVersion: "2.1", EventSource: "aws:s3", EventTime: time.Now().UTC().Format(time.RFC3339Nano), EventName: "ObjectCreated:Put",
		S3: schemas.S3Entity{
			Bucket: schemas.S3Bucket{Name: bucket},
			Object: schemas.S3Object{Key: EncodeEventKey(key), Size: obj.Size, ETag: obj.ETag, VersionID: version},
		},
	}}}
	v, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode upload event: %w", err)
	}
	if err := w.WriteMessages(ctx, kafkago.Message{Key: []byte(bucket), Value: v}); err != nil {
		return fmt.Errorf("publish upload event: %w", err)
	}
	return nil
}

// EncodeEventKey encodes an object key as S3 notifications do.
func EncodeEventKey(k string) string {
	segs := strings.Split(k, "/")
	for i, s := range segs {
		segs[i] = url.QueryEscape(s)
	}
	return strings.Join(segs, "/")
}
