package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
)

// MinSessionTimeout is the smallest consumer-group session timeout the
// embedded broker accepts, and the one apbatch readers use.
const MinSessionTimeout = 6 * time.Second

// Config locates a Kafka cluster.
type Config struct {
	// Brokers are the bootstrap addresses (host:port). Required.
	Brokers []string
	// Partitions is the partition count of topics apbatch creates.
	// Default: 4.
	Partitions int
	// ReplicationFactor of topics apbatch creates. Default: 1.
	ReplicationFactor int
	// Log, when set, receives kafka-go's consumer-group events (joins,
	// assignments: debug level) and errors (warn level). Default: nil.
	Log *zerolog.Logger
	// Retention is the retention.ms apbatch sets on the topics it creates,
	// by topic; topics it does not create, or not listed, keep the
	// cluster's default. Default: DefaultRetention().
	Retention map[string]time.Duration
	// Username and Password authenticate every connection with
	// SASL/PLAIN (the embedded broker requires it, see Broker). Default:
	// "" (no authentication).
	Username, Password string
}

// mechanism returns the SASL mechanism of the configuration, or nil.
func (c Config) mechanism() sasl.Mechanism {
	if c.Username == "" {
		return nil
	}
	return plain.Mechanism{Username: c.Username, Password: c.Password}
}

// Dialer returns a kafka-go dialer that authenticates as the
// configuration says, for direct connections (tools, tests).
func (c Config) Dialer() *kafkago.Dialer {
	return &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true, SASLMechanism: c.mechanism()}
}

// Transport returns the kafka-go transport of clients and writers: the
// default one, or one that authenticates. The caller closes its idle
// connections when done (CloseIdleConnections).
func (c Config) Transport() kafkago.RoundTripper {
	if m := c.mechanism(); m != nil {
		return &kafkago.Transport{SASL: m, DialTimeout: 10 * time.Second}
	}
	return kafkago.DefaultTransport
}

// Client returns a kafka-go client of the brokers with timeout.
func (c Config) Client(timeout time.Duration) *kafkago.Client {
	return &kafkago.Client{Addr: kafkago.TCP(c.Brokers...), Timeout: timeout, Transport: c.Transport()}
}

// DefaultRetention returns how long apbatch's topics keep messages: uploads a
// week (a notification replayed after a long outage still finds its
// batch), jobs and results three days (the ledger and S3 hold what is
// durable; a job holds identities, so it should not outlive its use).
// Compaction does not suit them: every message is a distinct event.
func DefaultRetention() map[string]time.Duration {
	return map[string]time.Duration{
		"apbatch.uploads": 7 * 24 * time.Hour,
		"apbatch.jobs":    72 * time.Hour,
		"apbatch.results": 72 * time.Hour,
	}
}

func (c Config) retention(topic string) (time.Duration, bool) {
	r := c.Retention
	if r == nil {
		r = DefaultRetention()
	}
	d, ok := r[topic]
	return d, ok && d > 0
}

// Validate reports the first missing or invalid field.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: Brokers: at least one address is required")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("kafka: Brokers: %q is not host:port", b)
		}
	}
	if c.Password != "" && c.Username == "" {
		return errors.New("kafka: Password needs a Username")
	}
	if c.Partitions < 0 || c.ReplicationFactor < 0 {
		return errors.New("kafka: Partitions and ReplicationFactor must not be negative")
	}
	return nil
}

func (c Config) partitions() int {
	if c.Partitions == 0 {
		return 4
	}
	return c.Partitions
}

func (c Config) replication() int {
	if c.ReplicationFactor == 0 {
		return 1
	}
	return c.ReplicationFactor
}

// EnsureTopics creates the topics that do not exist yet. Writers never
// create topics, so every role calls this before producing.
func EnsureTopics(ctx context.Context, cfg Config, topics ...string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	client := cfg.Client(10 * time.Second)
	defer closeIdle(client.Transport)
	req := &kafkago.CreateTopicsRequest{}
	for _, t := range topics {
		tc := kafkago.TopicConfig{
			Topic:             t,
			NumPartitions:     cfg.partitions(),
			ReplicationFactor: cfg.replication(),
		}
		if d, ok := cfg.retention(t); ok {
			tc.ConfigEntries = append(tc.ConfigEntries, kafkago.ConfigEntry{ConfigName: "retention.ms", ConfigValue: fmt.Sprint(d.Milliseconds())})
		}
		req.Topics = append(req.Topics, tc)
	}
	var resp *kafkago.CreateTopicsResponse
	var err error
	// The broker may still be electing a controller right after start.
	for attempt := 0; attempt < 50; attempt++ {
		resp, err = client.CreateTopics(ctx, req)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: create topics: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("kafka: create topics: %w", err)
	}
	for topic, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafkago.TopicAlreadyExists) {
			return fmt.Errorf("kafka: create topic %s: %w", topic, terr)
		}
	}
	return nil
}

// Ping checks that one of the brokers accepts a connection.
func Ping(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var errs []error
	for _, b := range cfg.Brokers {
		d := cfg.Dialer()
		d.Timeout = 5 * time.Second
		conn, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			return conn.Close()
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("kafka: no broker reachable: %w", errors.Join(errs...))
}

// NewWriter returns a kafka-go writer for topic that waits for all in-sync
// replicas (RequireAll) and hashes keys onto partitions, so that all messages
// with one key land on one partition. The caller closes it.
func NewWriter(cfg Config, topic string) *kafkago.Writer {
	return &kafkago.Writer{
		Addr:                   kafkago.TCP(cfg.Brokers...),
		Topic:                  topic,
		Balancer:               &kafkago.Hash{},
		RequiredAcks:           kafkago.RequireAll,
		BatchTimeout:           5 * time.Millisecond,
		AllowAutoTopicCreation: false,
		MaxAttempts:            10,
		Transport:              cfg.Transport(),
	}
}

// CloseWriter closes w and the idle connections of its transport.
func CloseWriter(w *kafkago.Writer) error {
	err := w.Close()
	closeIdle(w.Transport)
	return err
}

// closeIdle closes the idle connections of a transport of its own (not
// kafka-go's default, shared by the process).
func closeIdle(rt kafkago.RoundTripper) {
	if t, ok := rt.(*kafkago.Transport); ok && t != kafkago.DefaultTransport {
		t.CloseIdleConnections()
	}
}

// FetchMaxBytes bounds one fetch of a reader (a broker still returns a
// larger first batch whole). apbatch's consumers read a few thousand
// messages a second, so 256 KiB per fetch (hundreds of jobs) keeps them fed,
// while large fetches cost the embedded broker dearly when a backlog waits
// (the splitter runs ahead of the workers): it copies the whole response
// several times while building it, and holds it until it is sent. With
// 10 MiB, a 100,000-job backlog took the embedded flow to a 69 MB heap peak;
// with 256 KiB, 7-9 MB.
const FetchMaxBytes = 256 << 10

// NewReader returns a kafka-go consumer-group reader on topic with explicit
// commits (CommitInterval 0: CommitMessages commits synchronously), fetches
// of at most FetchMaxBytes and timings short enough for quick restarts and
// rebalances.
func NewReader(cfg Config, group, topic string) *kafkago.Reader {
	rc := fetchConfig(cfg, group, topic)
	rc.GroupID = group
	rc.HeartbeatInterval = 500 * time.Millisecond
	rc.SessionTimeout = MinSessionTimeout
	rc.RebalanceTimeout = RebalanceTimeout
	rc.JoinGroupBackoff = 200 * time.Millisecond
	rc.StartOffset = kafkago.FirstOffset
	rc.CommitInterval = 0
	return kafkago.NewReader(rc)
}

// fetchConfig is how apbatch's readers fetch topic: at most FetchMaxBytes
// at a time, short waits and backoffs, logs through cfg.Log tagged with the
// consumer group.
func fetchConfig(cfg Config, group, topic string) kafkago.ReaderConfig {
	logger, errLogger := loggers(cfg, group)
	return kafkago.ReaderConfig{
		Logger:         logger,
		ErrorLogger:    errLogger,
		Brokers:        cfg.Brokers,
		Dialer:         cfg.Dialer(),
		Topic:          topic,
		MinBytes:       1,
		MaxBytes:       FetchMaxBytes,
		MaxWait:        250 * time.Millisecond,
		ReadBackoffMin: 50 * time.Millisecond,
		ReadBackoffMax: 500 * time.Millisecond,
	}
}

// loggers are kafka-go's loggers writing to cfg.Log (debug and warn),
// tagged with the consumer group; nil without cfg.Log.
func loggers(cfg Config, group string) (logger, errLogger kafkago.Logger) {
	if cfg.Log == nil {
		return nil, nil
	}
	l := cfg.Log.With().Str("component", "kafka").Str("group", group).Logger()
	return kafkago.LoggerFunc(func(msg string, args ...any) { l.Debug().Msgf(msg, args...) }),
		kafkago.LoggerFunc(func(msg string, args ...any) { l.Warn().Msgf(msg, args...) })
}
