package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

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

// Ingester turns S3 event notifications into batches: one batch per object
// version under incoming/<tenant>/<campaign>/, split at once. The offset of
// an event is committed only after its batches are split (or refused).
type Ingester struct {
	Uploads  MessageReader // topic apbatch.uploads
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
	// Recipient is the SIRET of the collectivité sent with every call.
	Recipient string
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
		log.Debug().Int64("offset", m.Offset).Msg("event done")
	}
}

// Handle processes one event notification. Malformed events and objects
// outside incoming/ are logged and skipped; errors returned are transient.
func (in *Ingester) Handle(ctx context.Context, value []byte) error {
	log := in.Log.With().Str("component", "ingest").Logger()
	var ev schemas.S3Event
	if err := json.Unmarshal(value, &ev); err != nil {
		log.Warn().Err(err).Msg("event is not an S3 notification; skipped")
		return nil
	}
	for _, rec := range ev.Records {
		if !strings.Contains(rec.EventName, "ObjectCreated") {
			continue
		}
		if in.Bucket != "" && rec.S3.Bucket.Name != in.Bucket {
			log.Debug().Str("bucket", rec.S3.Bucket.Name).Msg("event for another bucket; skipped")
			continue
		}
		key, err := DecodeEventKey(rec.S3.Object.Key)
		if err != nil {
			log.Warn().Err(err).Msg("undecodable object key; skipped")
			continue
		}
		ik, err := ParseIncomingKey(key)
		if errors.Is(err, ErrNotIncoming) {
			continue
		}
		if err != nil {
			log.Warn().Err(err).Msg("upload refused")
			continue
		}
		version := ObjectVersion(rec.S3.Object.VersionID, strings.Trim(rec.S3.Object.ETag, `"`), rec.S3.Object.Sequencer)
		checks := in.Checks
		if len(checks) == 0 {
			checks = []schemas.Check{schemas.CheckQuotientFamilial}
		}
		nb := ledger.Batch{
			Tenant: ik.Tenant, Campaign: ik.Campaign, Checks: schemas.JoinChecks(checks),
			Bucket: rec.S3.Bucket.Name, ObjectKey: key, ObjectVersion: version,
			Period: in.Period, Recipient: in.Recipient,
		}
		if err := in.refreshed(ctx, &nb); err != nil {
			return err
		}
		b, created, err := in.Ledger.CreateBatch(ctx, nb)
		if err != nil {
			return err
		}
		blog := log.With().Str("batch_id", b.ID).Str("tenant", b.Tenant).Str("campaign", b.Campaign).Logger()
		if !created && b.State != ledger.StateCreated {
			blog.Info().Str("state", b.State).Msg("object version already has a batch; event ignored")
			continue
		}
		blog.Info().Bool("resumed", !created).Msg("batch started")
		if err := in.Splitter.Split(ctx, b); err != nil {
			return err
		}
	}
	return nil
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
		EventVersion: "2.1", EventSource: "aws:s3", EventTime: time.Now().UTC(), EventName: "ObjectCreated:Put",
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
