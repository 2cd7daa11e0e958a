package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/ledger"
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
	checks := in.Checks
	if len(checks) == 0 {
		checks = []schemas.Check{schemas.CheckQuotientFamilial}
	}
	for _, up := range in.uploads(log, value) {
		b, created, err := in.Ledger.CreateBatch(ctx, ledger.Batch{
			Tenant: up.Incoming.Tenant, Campaign: up.Incoming.Campaign, Checks: schemas.JoinChecks(checks),
			Bucket: up.Bucket, ObjectKey: up.Key, ObjectVersion: up.Version,
			Period: in.Period, Recipient: in.Recipient,
		})
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

// upload is one object version an event notification announces under
// incoming/.
type upload struct {
	Bucket   string
	Key      string // decoded object key
	Incoming IncomingKey
	Version  string // see ObjectVersion
}

// uploads reads an event notification (outside data) into the uploads it
// announces, in order. A value that is not an S3 notification, records
// other than object creations, other buckets and refused keys are logged
// and skipped.
func (in *Ingester) uploads(log zerolog.Logger, value []byte) []upload {
	var ev schemas.S3Event
	if err := json.Unmarshal(value, &ev); err != nil {
		log.Warn().Err(err).Msg("event is not an S3 notification; skipped")
		return nil
	}
	var out []upload
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
		if hasControl(rec.S3.Bucket.Name) || hasControl(version) {
			// No store emits these; the ledger could not keep them.
			log.Warn().Msg("event names its bucket or object version with control characters; skipped")
			continue
		}
		out = append(out, upload{Bucket: rec.S3.Bucket.Name, Key: key, Incoming: ik, Version: version})
	}
	return out
}
