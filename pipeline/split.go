package pipeline

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/csv"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// MessageWriter produces Kafka messages; *kafka-go.Writer implements it.
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafkago.Message) error
}

// FileError is a file-level problem (missing columns, empty file, wrong
// encoding): the batch fails with Message, which names the file and says what
// to do. It never holds personal data.
type FileError struct{ Message string }

func (e *FileError) Error() string { return e.Message }

// jobsFlush is the most jobs produced per call, each call then recorded in
// the ledger: a split killed between the two produces them again when it
// resumes, and each is a provider call. It is kafka-go's batch size, so one
// call is one produce request.
const jobsFlush = 100

// Splitter streams a batch's object, validates its rows, produces one job per
// distinct lookup (all rows sharing it listed in the job) and one result per
// invalid row, then records the row count in the ledger.
type Splitter struct {
	S3      *s3.Client
	Ledger  *ledger.Store
	Jobs    MessageWriter // topic apbatch.jobs
	Results MessageWriter // topic apbatch.results
	Log     zerolog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// FlushEvery is how many messages are produced per call. Default: 500
	// for results; jobs go by at most jobsFlush.
	FlushEvery int
	// Encoding is the files' encoding (see csv.Encodings); "" detects it.
	Encoding string
	// Sheet is the sheet read in workbooks; "" is the first one.
	Sheet string
	// MaxSize refuses larger files. Default: 200 MB.
	MaxSize int64
	// TmpDir receives the workbook parts too large for memory (see
	// csv.Options). Default: "" (the system's temporary folder).
	TmpDir string
	// Columns, when set, returns a tenant's explicit column mapping
	// (canonical column → the header its files use), or nil.
	Columns func(ctx context.Context, tenant string) (map[string]string, error)
	// Metrics, when set, counts the batches refused. Default: nil (none).
	Metrics *Metrics
	// Notify, when set, is told of the batches refused. Default: nil
	// (none).
	Notify *Notifier
	// Identities, when set, seals each job's identity before it is
	// produced (*keys.Ring). Default: nil (identities in clear: tests).
	Identities IdentitySealer
}

// IdentitySealer encrypts a job's identity into job.Sealed; *keys.Ring
// implements it.
type IdentitySealer interface {
	Seal(ctx context.Context, job *schemas.Job) error
}

func (s *Splitter) maxSize() int64 {
	if s.MaxSize > 0 {
		return s.MaxSize
	}
	return MaxFileSize
}

func (s *Splitter) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Split splits batch b. It is safe to call again after a crash: messages are
// produced again and downstream stages drop what they already have.
func (s *Splitter) Split(ctx context.Context, b ledger.Batch) error {
	log := s.Log.With().Str("component", "split").Str("batch_id", b.ID).Str("tenant", b.Tenant).Logger()
	period, err := ParsePeriod(b.Period)
	if err != nil {
		return s.fail(ctx, log, b, err.Error())
	}
	key, err := ParseIncomingKey(b.ObjectKey)
	if err != nil {
		return s.fail(ctx, log, b, err.Error())
	}
	start := s.now()

	// Pass 1: count rows, emit results for rows a check cannot use, group
	// the others by lookup (a lookup belongs to one check).
	checks := b.CheckList()
	groups := newLookups()
	results := newBatcher(s.Results, s.FlushEvery)
	// Message keys: one copy each for all the messages (none changes them).
	batchKey, tenantKey := []byte(b.ID), []byte(b.Tenant)
	var rows, invalid int64
	err = s.scan(ctx, b, key.File, checks, func(r csv.Row) error {
		rows++
		return eachCheck(r, checks, func(in *csv.CheckInput, problems []string) error {
			if len(problems) > 0 {
				invalid++
				res := schemas.Result{
					Version: schemas.ResultVersion, BatchID: b.ID, Tenant: b.Tenant, Campaign: b.Campaign,
					RowNumber: r.Number, Reference: r.Reference, Check: in.Check,
					Status: schemas.StatusInvalidInput, ErrorCode: schemas.CodeInvalidRow,
					ErrorMessage: joinProblems(problems), CheckedAt: s.now().UTC(),
				}
				v, err := schemas.EncodeResult(&res)
				if err != nil {
					return fmt.Errorf("split: encode result: %w", err)
				}
				return results.add(ctx, kafkago.Message{Key: batchKey, Value: v})
			}
			groups.add(schemas.LookupKey(in.Check, periodFor(in.Check, period), &in.Identity), r.Number, r.Reference)
			return nil
		})
	})
	var fe *FileError
	if errors.As(err, &fe) {
		return s.fail(ctx, log, b, fe.Message)
	}
	if tooLarge(err) {
		return s.fail(ctx, log, b, tooLargeMessage)
	}
	if err != nil {
		return err
	}
	if rows == 0 {
		return s.fail(ctx, log, b, fmt.Sprintf("fichier « %s » : aucune ligne de données après l'en-tête ; ajoutez une ligne par personne à vérifier", key.File))
	}
	if err := results.flush(ctx); err != nil {
		return err
	}

	// Pass 2: one job per distinct lookup, at its first row, with every row sharing it.
	jobs := newBatcher(s.Jobs, min(cmp.Or(s.FlushEvery, jobsFlush), jobsFlush))
	// A split resumed after a crash skips the jobs it had produced (the
	// file is read in the same order): workers do not call for them again.
	jobs.skip = int(b.JobsProduced)
	if jobs.skip > 0 {
		log.Info().Int64("jobs_produced", b.JobsProduced).Msg("split resumed after its jobs already produced")
	}
	jobs.onFlush = func(ctx context.Context, n int) error { return s.Ledger.SetJobsProduced(ctx, b.ID, int64(n)) }
	var saved int64 // results that share another row's call
	// One job reused: sealing takes its address, which would otherwise
	// make one on the heap per job.
	var job schemas.Job
	err = s.scan(ctx, b, key.File, checks, func(r csv.Row) error {
		return eachCheck(r, checks, func(in *csv.CheckInput, problems []string) error {
			if len(problems) > 0 {
				return nil // its result was produced by the first pass
			}
			p := periodFor(in.Check, period)
			k := schemas.LookupKey(in.Check, p, &in.Identity)
			refs, ok := groups.take(k, schemas.RowRef{Number: r.Number, Reference: r.Reference})
			if !ok {
				return nil // already emitted at an earlier row
			}
			saved += int64(len(refs) - 1)
			job = schemas.Job{
				Version: schemas.JobVersion, BatchID: b.ID, Tenant: b.Tenant, Campaign: b.Campaign,
				Check: in.Check, LookupID: hex.EncodeToString(k[:]), Recipient: b.Recipient, Period: p,
				Identity: in.Identity, Rows: refs,
			}
			if s.Identities != nil {
				if err := s.Identities.Seal(ctx, &job); err != nil {
					return fmt.Errorf("split: %w", err)
				}
			}
			v, err := schemas.EncodeJob(&job)
			if err != nil {
				return fmt.Errorf("split: %w", err)
			}
			// Key = tenant: one token per tenant, so one budget owner per partition.
			return jobs.add(ctx, kafkago.Message{Key: tenantKey, Value: v})
		})
	})
	if err == nil {
		err = jobs.flush(ctx)
	}
	if tooLarge(err) {
		return s.fail(ctx, log, b, tooLargeMessage)
	}
	if err != nil {
		return err
	}
	if n := len(groups.first); n != 0 {
		return fmt.Errorf("split: batch %s: object changed between passes (%d lookups not found again)", b.ID, n)
	}
	if err := s.Ledger.SetSplit(ctx, b.ID, rows, int64(jobs.sent), saved); err != nil {
		return err
	}
	log.Info().Int64("rows", rows).Int64("invalid", invalid).Int("lookups", jobs.sent).
		Dur("took", s.now().Sub(start)).Msg("batch split")
	return nil
}

// eachCheck calls fn once for each of the batch's checks, in order, with
// what the row gives that check and its problems (none: a lookup to call;
// some: an invalid result). Both passes of the split go through it, and
// the writer waits for rows × checks results: every row read gets exactly
// one outcome per check, whatever the reader made of it.
func eachCheck(r csv.Row, checks []schemas.Check, fn func(in *csv.CheckInput, problems []string) error) error {
	for i, c := range checks {
		var in *csv.CheckInput
		if i < len(r.Checks) && r.Checks[i].Check == c {
			in = &r.Checks[i]
		}
		problems := r.Invalid(i)
		if in == nil {
			// The reader gave this check nothing: a bug, but the row still
			// gets its result rather than a batch that never ends.
			in = &csv.CheckInput{Check: c}
			if len(problems) == 0 {
				problems = []string{"ligne " + strconv.Itoa(r.Line) + " : ligne illisible ; vérifiez-la dans le fichier"}
			}
		}
		if err := fn(in, problems); err != nil {
			return err
		}
	}
	return nil
}

// maxProblems bounds the message of an invalid result (it travels in a
// Kafka message and a Parquet cell).
const maxProblems = 1000

// joinProblems is a row's problems as one message, at most maxProblems
// bytes, cut at a character.
func joinProblems(problems []string) string {
	msg := strings.Join(problems, " ; ")
	if len(msg) <= maxProblems {
		return msg
	}
	cut := maxProblems - len(" …")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + " …"
}

// tooLargeMessage says why a batch whose messages Kafka refuses failed.
const tooLargeMessage = "une ligne du fichier produit un message plus grand que ce que la file de messages accepte ; vérifiez les lignes très longues du fichier, puis déposez-le à nouveau"

// tooLarge reports whether err is Kafka refusing a message for its size:
// a refusal that comes back on every try, so the batch fails rather than
// stop the role each time.
func tooLarge(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, kafkago.MessageSizeTooLarge) {
		return true
	}
	var we kafkago.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if errors.Is(e, kafkago.MessageSizeTooLarge) {
				return true
			}
		}
	}
	return false
}

// scan streams the batch's object row by row.
func (s *Splitter) scan(ctx context.Context, b ledger.Batch, name string, checks []schemas.Check, fn func(csv.Row) error) error {
	opts := csv.Options{Now: s.now(), Checks: checks, Encoding: s.Encoding, Sheet: s.Sheet, TmpDir: s.TmpDir}
	// The version the batch verifies, not whatever the key holds by now.
	body, info, err := s.S3.OpenVersion(ctx, b.ObjectKey, PinnedVersion(b))
	if errors.Is(err, s3.ErrNotFound) {
		return &FileError{Message: goneMessage(name)}
	}
	if err != nil {
		return fmt.Errorf("split: %w", err)
	}
	defer body.Close()
	if limit := s.maxSize(); info.Size > limit {
		return &FileError{Message: fmt.Sprintf("fichier « %s » trop volumineux (%d Mo, %d Mo au plus) ; découpez-le en plusieurs fichiers", name, info.Size>>20, limit>>20)}
	}
	if opts.HeaderRow, err = HeaderRow(info.Metadata); err != nil {
		return err
	}
	if s.Columns != nil {
		if opts.Columns, err = s.Columns(ctx, b.Tenant); err != nil {
			return err
		}
	}
	r, err := csv.OpenFile(ctx, body, name, opts)
	if err != nil {
		var ce *csv.FileError
		if errors.As(err, &ce) {
			return &FileError{Message: ce.Error()}
		}
		return fmt.Errorf("split: read %s: %w", b.ObjectKey, err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			var ce *csv.FileError
			if errors.As(err, &ce) {
				return &FileError{Message: ce.Error()}
			}
			return fmt.Errorf("split: read %s: %w", b.ObjectKey, err)
		}
		if err := fn(row); err != nil {
			return err
		}
	}
}

func (s *Splitter) fail(ctx context.Context, log zerolog.Logger, b ledger.Batch, msg string) error {
	log.Warn().Str("reason", msg).Msg("batch refused")
	if err := s.Ledger.Fail(ctx, b.ID, msg); err != nil {
		return err
	}
	s.Metrics.batchFailed(b.Tenant)
	s.Notify.Notify(NewBatchEvent(b, ledger.StateFailed, ledger.Counts{}, time.Now()))
	return nil
}

// lookups groups a file's rows by lookup (schemas.LookupKey) between the
// split's two passes. It keeps little per lookup: most have one row, which
// the second pass reads again, so only the rows after a lookup's first are
// held.
type lookups struct {
	// first maps a lookup to its index in more, or -1 while it has one row.
	first map[[16]byte]int32
	// more holds, per lookup seen again, the rows after its first.
	more [][]schemas.RowRef
}

func newLookups() *lookups { return &lookups{first: make(map[[16]byte]int32)} }

// add records row n (reference ref) under lookup k.
func (l *lookups) add(k [16]byte, n int64, ref string) {
	i, ok := l.first[k]
	if !ok {
		l.first[k] = -1
		return
	}
	// A copy: ref is part of its line, which it must not keep whole.
	row := schemas.RowRef{Number: n, Reference: strings.Clone(ref)}
	if i < 0 {
		l.first[k] = int32(len(l.more))
		l.more = append(l.more, []schemas.RowRef{row})
		return
	}
	l.more[i] = append(l.more[i], row)
}

// take returns every row of lookup k, first the one the second pass reads
// (its first row), and forgets the lookup; false when it was taken before.
func (l *lookups) take(k [16]byte, first schemas.RowRef) ([]schemas.RowRef, bool) {
	i, ok := l.first[k]
	if !ok {
		return nil, false
	}
	delete(l.first, k)
	if i < 0 {
		return []schemas.RowRef{first}, true
	}
	rows := append([]schemas.RowRef{first}, l.more[i]...)
	l.more[i] = nil
	return rows, true
}

// batcher groups messages into WriteMessages calls.
type batcher struct {
	w    MessageWriter
	n    int
	buf  []kafkago.Message
	sent int // messages produced, skipped ones included
	// skip is how many of the first messages were produced before (they
	// are counted, not sent again).
	skip int
	// onFlush, when set, is told how many messages are produced after
	// each write.
	onFlush func(ctx context.Context, sent int) error
}

func newBatcher(w MessageWriter, n int) *batcher {
	if n <= 0 {
		n = 500
	}
	return &batcher{w: w, n: n}
}

func (b *batcher) add(ctx context.Context, m kafkago.Message) error {
	if b.skip > 0 {
		b.skip--
		b.sent++
		return nil
	}
	b.buf = append(b.buf, m)
	if len(b.buf) >= b.n {
		return b.flush(ctx)
	}
	return nil
}

func (b *batcher) flush(ctx context.Context) error {
	if len(b.buf) == 0 {
		return nil
	}
	if err := b.w.WriteMessages(ctx, b.buf...); err != nil {
		return fmt.Errorf("split: produce %d messages: %w", len(b.buf), err)
	}
	b.sent += len(b.buf)
	b.buf = b.buf[:0]
	if b.onFlush != nil {
		return b.onFlush(ctx, b.sent)
	}
	return nil
}

// periodFor is the period a check's lookups carry: only the quotient
// familial is asked for a month.
func periodFor(c schemas.Check, p schemas.Period) schemas.Period {
	if c == schemas.CheckQuotientFamilial {
		return p
	}
	return schemas.Period{}
}

// ParsePeriod parses "YYYY-MM" ("" is the zero period).
func ParsePeriod(s string) (schemas.Period, error) {
	if s == "" {
		return schemas.Period{}, nil
	}
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return schemas.Period{}, fmt.Errorf("période %q invalide : attendu AAAA-MM (par exemple 2026-09)", s)
	}
	return schemas.Period{Year: t.Year(), Month: int(t.Month())}, nil
}
