package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/pipeline/keys"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
)

// Consumer groups of the roles.
const (
	GroupIngest  = "apbatch-ingest"
	GroupWorkers = "apbatch-workers"
	GroupWriters = "apbatch-writers"
)

// RunnerConfig is what the roles need to reach their services.
type RunnerConfig struct {
	Kafka       kafka.Config
	S3          s3.Config
	LedgerURL   string
	Log         zerolog.Logger
	ProviderURL string
	Tokens      workers.TokenSource
	Rate        int
	IPLimit     int
	Share       float64
	Schedule    *workers.Schedule
	// AuditKey keys the identity hash of the audit trail.
	AuditKey  []byte
	InFlight  int
	Period    string
	Recipient string
	// Recipients maps tenants to their own SIRET (APBATCH_RECIPIENT_<TENANT>).
	Recipients map[string]string
	// Habilitations maps tenants to the habilitation their tokens belong
	// to (APBATCH_HABILITATION_<TENANT>), when their claims do not say.
	Habilitations map[string]string
	// KeyLimits are per-minute limits per budget key (--per-minute).
	KeyLimits workers.KeyLimits
	// Delegations maps tenants to the delegation_id of their calls
	// (APBATCH_DELEGATION_<TENANT>), for editor tokens.
	Delegations map[string]string
	// Checks are the verifications new batches run (default: QF).
	Checks []schemas.Check
	// Encoding is the input files' encoding; "" detects it.
	Encoding string
	// Sheet is the sheet read in XLSX files; "" is the first one.
	Sheet string
	// TmpDir receives the temporary files of large workbooks; "" is the
	// system's temporary folder.
	TmpDir string
	// Roles are the roles this process runs; nil means all of them.
	Roles []string
	// SharedIP, when set, names the egress IP whose per-IP budget the
	// worker pools share through the ledger with every other process
	// using the same name.
	SharedIP      string
	FlushInterval time.Duration
	// StallAfter is the watchdog's delay (ResultWriter).
	StallAfter time.Duration
	// EventsTopic is the topic the bucket's notifications reach (default
	// schemas.TopicUploads).
	EventsTopic string
	// WatchInterval, when positive, also lists incoming/ at this interval
	// for uploads no notification announced (Watcher).
	WatchInterval time.Duration
	// Registry, when set, receives the roles' metrics; nil: no metrics.
	Registry *prometheus.Registry
	// Keys seals job identities (ingest) and opens them (work); nil: the
	// splitter produces jobs in clear, which workers drop without a call.
	Keys *keys.Ring
	// NotifyURL, when set, receives a JSON event when a batch this
	// process ends completes, is refused or is cancelled
	// (Notifier).
	NotifyURL string
}

// eventsTopic returns the topic the ingest role consumes.
func (c RunnerConfig) Events() string {
	if c.EventsTopic != "" {
		return c.EventsTopic
	}
	return schemas.TopicUploads
}

// Runner is the ingest, work and write roles wired to Kafka, S3 and the
// ledger: what every front end runs, the CLI's run, refresh, serve and
// bench, and the portal's web. OpenRunner builds it, Start runs its roles,
// Wait waits for them, Close releases the services.
type Runner struct {
	Kafka kafka.Config
	S3    *s3.Client
	// Ledger is the ledger the roles share.
	Ledger *ledger.Store
	// Uploads produces to the topic the ingest role consumes.
	Uploads *kafkago.Writer
	// Jobs and Results produce to the jobs and results topics.
	Jobs    *kafkago.Writer
	Results *kafkago.Writer
	readers []*kafkago.Reader
	groups  []*kafka.Group // the workers' consumer groups

	// Ingest, Pool and Writer are the roles; Extra more worker replicas
	// (AddWorkers).
	Ingest  *Ingester
	watcher *Watcher // nil unless WatchInterval is set
	Pool    *workers.Pool
	Extra   []*workers.Pool
	Writer  *ResultWriter
	// notifier posts the batches' ends; nil without a URL.
	notifier *Notifier
	// metrics of the worker pools; nil without a registry.
	metrics *workers.Metrics

	wg sync.WaitGroup
}

// OpenRunner connects to the services and builds the roles; Start runs them.
func OpenRunner(ctx context.Context, cfg RunnerConfig) (*Runner, error) {
	var notifier *Notifier
	if cfg.NotifyURL != "" {
		notifier = &Notifier{URL: cfg.NotifyURL, Log: cfg.Log}
		if err := notifier.Validate(); err != nil {
			return nil, fmt.Errorf("--notify-url (APBATCH_NOTIFY_URL): %w", err)
		}
	}
	client, err := s3.NewClient(ctx, cfg.S3)
	if err != nil {
		return nil, err
	}
	if err := client.EnsureBucket(ctx); err != nil {
		return nil, err
	}
	topics := []string{schemas.TopicUploads, schemas.TopicJobs, schemas.TopicResults}
	if t := cfg.Events(); !slices.Contains(topics, t) {
		topics = append(topics, t)
	}
	if err := kafka.EnsureTopics(ctx, cfg.Kafka, topics...); err != nil {
		return nil, err
	}
	store, err := ledger.Open(ctx, cfg.LedgerURL)
	if err != nil {
		return nil, err
	}
	st := &Runner{
		Kafka:   cfg.Kafka,
		S3:      client,
		Ledger:  store,
		Uploads: kafka.NewWriter(cfg.Kafka, cfg.Events()),
		Jobs:    kafka.NewWriter(cfg.Kafka, schemas.TopicJobs),
		Results: kafka.NewWriter(cfg.Kafka, schemas.TopicResults),
	}
	// A group reader joins its group as soon as it exists: a process
	// builds only the readers of the roles it runs, or it would hold
	// partitions it never reads.
	reader := func(role, group, topic string) *kafkago.Reader {
		if len(cfg.Roles) > 0 && !slices.Contains(cfg.Roles, role) {
			return nil
		}
		r := kafka.NewReader(cfg.Kafka, group, topic)
		st.readers = append(st.readers, r)
		return r
	}
	upR := reader("ingest", GroupIngest, cfg.Events())
	var jobG *kafka.Group
	if len(cfg.Roles) == 0 || slices.Contains(cfg.Roles, "work") {
		if jobG, err = st.group(cfg); err != nil {
			st.Close()
			return nil, err
		}
	}
	resR := reader("write", GroupWriters, schemas.TopicResults)

	var pm *Metrics
	if cfg.Registry != nil {
		var readers []kafka.StatsReader
		for _, r := range st.readers {
			readers = append(readers, r)
		}
		for _, g := range st.groups {
			readers = append(readers, g)
		}
		if pm, err = NewMetrics(cfg.Registry); err == nil {
			if st.metrics, err = workers.NewMetrics(cfg.Registry); err == nil {
				err = cfg.Registry.Register(kafka.NewLagCollector(readers...))
			}
		}
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}

	st.notifier = notifier
	splitter := &Splitter{S3: client, Ledger: store, Jobs: st.Jobs, Results: st.Results, Log: cfg.Log, Encoding: cfg.Encoding, Sheet: cfg.Sheet, TmpDir: cfg.TmpDir,
		Columns: TenantColumns(client), Metrics: pm, Notify: notifier}
	if cfg.Keys != nil {
		splitter.Identities = cfg.Keys
	}
	st.Ingest = &Ingester{Uploads: upR, Ledger: store, Splitter: splitter, Log: cfg.Log,
		Bucket: client.Bucket(), Period: cfg.Period, Recipient: cfg.Recipient, Recipients: cfg.Recipients, Checks: cfg.Checks, Metrics: pm}
	if cfg.WatchInterval > 0 {
		st.watcher = &Watcher{S3: client, Ledger: store, Start: st.Ingest.Start, Interval: cfg.WatchInterval, Log: cfg.Log}
	}
	st.Pool = newPool(cfg, jobG, st.Results, store, st.metrics)
	st.Writer = &ResultWriter{Results: resR, S3: client, Ledger: store, Log: cfg.Log, FlushInterval: cfg.FlushInterval, StallAfter: cfg.StallAfter, Metrics: pm,
		Notify: notifier}
	return st, nil
}

// Ready checks that the services the roles use answer: a Kafka broker,
// the ledger and the S3 bucket.
func (st *Runner) Ready(ctx context.Context) error {
	if err := kafka.Ping(ctx, st.Kafka); err != nil {
		return err
	}
	if err := st.Ledger.Ping(ctx); err != nil {
		return err
	}
	return st.S3.Ping(ctx)
}

// group joins the workers' consumer group, for one more pool.
func (st *Runner) group(cfg RunnerConfig) (*kafka.Group, error) {
	g, err := kafka.NewGroup(cfg.Kafka, GroupWorkers, schemas.TopicJobs)
	if err != nil {
		return nil, err
	}
	st.groups = append(st.groups, g)
	return g, nil
}

// newPool builds a worker pool consuming jobs through g (nil: a pool that
// never runs, in a process without the work role).
func newPool(cfg RunnerConfig, g *kafka.Group, w *kafkago.Writer, store *ledger.Store, m *workers.Metrics) *workers.Pool {
	p := &workers.Pool{Results: w, Client: &workers.Client{BaseURL: cfg.ProviderURL}, Metrics: m, Delegations: cfg.Delegations,
		Tokens: cfg.Tokens, Log: cfg.Log, Limit: cfg.Rate, IPLimit: cfg.IPLimit, Share: cfg.Share, MaxInFlight: cfg.InFlight,
		Schedule: cfg.Schedule, Audit: &workers.GroupCommit{Log: store, Linger: 50 * time.Millisecond}, AuditKey: cfg.AuditKey,
		AnsweredLog: store, Group: GroupWorkers, Leases: store,
		Cancelled: (&Cancellations{Ledger: store}).Cancelled, Activity: store,
		// Every process sharing the ledger shares each key's per-minute
		// limit: the tokens of one habilitation, on any replica.
		KeyLimits: cfg.KeyLimits, SharedKeys: store}
	if g != nil {
		p.ConsumerGroup = g
	}
	if habilitations := cfg.Habilitations; len(habilitations) > 0 {
		p.Habilitations = func(tenant string) string { return habilitations[tenant] }
	}
	if cfg.Keys != nil {
		p.Identities = cfg.Keys
	}
	if cfg.SharedIP != "" && cfg.IPLimit > 0 {
		limit := cfg.IPLimit
		if cfg.Share > 0 && cfg.Share < 1 {
			limit = max(int(float64(limit)*cfg.Share), 1)
		}
		p.SharedIP = &workers.SharedLimit{Leaser: store, Scope: "ip:" + cfg.SharedIP, Limit: limit}
	}
	return p
}

// AddWorkers adds n more worker pools to the consumer group, each with its
// own budgets, as n more worker processes would be. Call before Start.
func (st *Runner) AddWorkers(cfg RunnerConfig, n int) error {
	for i := 0; i < n; i++ {
		g, err := st.group(cfg)
		if err != nil {
			return err
		}
		st.Extra = append(st.Extra, newPool(cfg, g, st.Results, st.Ledger, st.metrics))
	}
	return nil
}

// Start runs every role (or only those named) until ctx ends. The channel receives the error of
// the first role that stops on its own.
func (st *Runner) Start(ctx context.Context, only ...string) <-chan error {
	errc := make(chan error, 3+len(st.Extra))
	roles := map[string]func(context.Context) error{
		"ingest": st.runIngest,
		"work":   st.Pool.Run,
		"write":  st.Writer.Run,
	}
	if len(only) > 0 {
		for name := range roles {
			if !slices.Contains(only, name) {
				delete(roles, name)
			}
		}
	}
	for i, p := range st.Extra {
		roles[fmt.Sprintf("work-%d", i+2)] = p.Run
	}
	var running sync.WaitGroup
	for name, run := range roles {
		st.wg.Add(1)
		running.Add(1)
		go func() {
			defer st.wg.Done()
			defer running.Done()
			err := run(ctx)
			if ctx.Err() == nil {
				if err == nil {
					err = errors.New("stopped")
				}
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	if st.notifier != nil && (roles["ingest"] != nil || roles["write"] != nil) {
		// Stopped once the roles have, so that what they notified last
		// is sent.
		nctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		st.wg.Add(2)
		go func() {
			defer st.wg.Done()
			st.notifier.Run(nctx)
		}()
		go func() {
			defer st.wg.Done()
			defer stop()
			running.Wait()
		}()
	}
	return errc
}

// runIngest consumes notifications and, when configured, runs the listing
// watcher beside them, until ctx ends or one of them fails.
func (st *Runner) runIngest(ctx context.Context) error {
	if st.watcher == nil {
		return st.Ingest.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- st.Ingest.Run(ctx) }()
	go func() { errc <- st.watcher.Run(ctx) }()
	err := <-errc
	cancel()
	return errors.Join(err, <-errc)
}

// Wait waits for the roles started by Start to return.
func (st *Runner) Wait() { st.wg.Wait() }

// Close closes readers, writers and the ledger, returning the first error.
func (st *Runner) Close() error {
	var errs []error
	for _, r := range st.readers {
		errs = append(errs, r.Close())
	}
	for _, g := range st.groups {
		errs = append(errs, g.Close())
	}
	for _, w := range []*kafkago.Writer{st.Uploads, st.Jobs, st.Results} {
		errs = append(errs, kafka.CloseWriter(w))
	}
	errs = append(errs, st.Ledger.Close())
	return errors.Join(errs...)
}
