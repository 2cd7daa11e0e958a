package kafka

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// openBroker starts an embedded broker for one test.
func openBroker(t *testing.T, dir string) *Broker {
	t.Helper()
	b := &Broker{DataDir: dir}
	if err := b.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestBroker_ProduceConsumeResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	b := openBroker(t, dir)
	cfg := Config{Brokers: b.Addrs()}
	if err := EnsureTopics(ctx, cfg, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, cfg, "t1"); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}
	w := NewWriter(cfg, "t1")
	var msgs []kafkago.Message
	for i := 0; i < 10; i++ {
		msgs = append(msgs, kafkago.Message{Key: []byte("k"), Value: []byte(fmt.Sprint(i))})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()

	r := NewReader(cfg, "g", "t1")
	for i := 0; i < 5; i++ {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Value) != fmt.Sprint(i) {
			t.Fatalf("message %d = %s", i, m.Value)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()

	// Restart the broker on the same data directory: committed offsets survive.
	b.Close()
	b2 := openBroker(t, dir)
	cfg2 := Config{Brokers: b2.Addrs()}
	r2 := NewReader(cfg2, "g", "t1")
	defer r2.Close()
	m, err := r2.FetchMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Value) != "5" {
		t.Fatalf("after restart got %s, want 5", m.Value)
	}
}

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"empty", Config{}, false},
		{"bad addr", Config{Brokers: []string{"nohost"}}, false},
		{"ok", Config{Brokers: []string{"127.0.0.1:9092"}}, true},
		{"negative", Config{Brokers: []string{"127.0.0.1:9092"}, Partitions: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, ok want %v", err, tc.ok)
			}
		})
	}
}

// TestEnsureTopics_Retention: topics apbatch creates get their retention.ms,
// which the broker keeps.
func TestEnsureTopics_Retention(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := openBroker(t, t.TempDir())
	cfg := Config{Brokers: b.Addrs(), Retention: map[string]time.Duration{"short": 90 * time.Minute}}
	if err := EnsureTopics(ctx, cfg, "short", "apbatch.jobs"); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, Config{Brokers: b.Addrs()}, "apbatch.uploads"); err != nil {
		t.Fatal(err)
	}
	client := &kafkago.Client{Addr: kafkago.TCP(b.Addrs()...)}
	for topic, want := range map[string]string{"short": "5400000", "apbatch.uploads": "604800000"} {
		resp, err := client.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
			ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"retention.ms"}}}})
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, r := range resp.Resources {
			for _, e := range r.ConfigEntries {
				if e.ConfigName == "retention.ms" {
					got = e.ConfigValue
				}
			}
		}
		if got != want {
			t.Errorf("%s: retention.ms %q, want %s", topic, got, want)
		}
	}
}

// TestReader_LargerThanFetch: a record batch, or a message, larger than
// FetchMaxBytes still reaches the reader whole (the broker returns a
// fetch's first batch whatever its size).
func TestReader_LargerThanFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := openBroker(t, t.TempDir())
	cfg := Config{Brokers: b.Addrs()}
	if err := EnsureTopics(ctx, cfg, "big"); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(cfg, "big")
	defer w.Close()
	big := bytes.Repeat([]byte{'j'}, FetchMaxBytes+FetchMaxBytes/2)
	var want []kafkago.Message
	for _, write := range [][]kafkago.Message{
		// One batch of 100 messages, together three times FetchMaxBytes.
		func() (ms []kafkago.Message) {
			for i := 0; i < 100; i++ {
				ms = append(ms, kafkago.Message{Key: []byte("k"), Value: big[:3*FetchMaxBytes/100]})
			}
			return ms
		}(),
		{{Key: []byte("k"), Value: big}}, // one message larger than a fetch
		{{Key: []byte("k"), Value: []byte("small")}},
	} {
		if err := w.WriteMessages(ctx, write...); err != nil {
			t.Fatal(err)
		}
		want = append(want, write...)
	}
	r := NewReader(cfg, "g", "big")
	defer r.Close()
	for i, wm := range want {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(m.Value, wm.Value) {
			t.Fatalf("message %d: %d bytes, want %d", i, len(m.Value), len(wm.Value))
		}
	}
}

// TestBroker_SASL: a broker with credentials serves the readers and
// writers configured with them, and nothing to a client without them or
// with a wrong password: no produce, no metadata, no fetch.
func TestBroker_SASL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := &Broker{Username: "apbatch-embedded", Password: "0123456789abcdef"}
	if err := b.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := b.Config()
	if err := EnsureTopics(ctx, cfg, "t"); err != nil {
		t.Fatalf("authenticated topic creation: %v", err)
	}
	w := NewWriter(cfg, "t")
	if err := w.WriteMessages(ctx, kafkago.Message{Key: []byte("k"), Value: []byte("secret")}); err != nil {
		t.Fatalf("authenticated produce: %v", err)
	}
	CloseWriter(w)
	r := NewReader(cfg, "g", "t")
	m, err := r.FetchMessage(ctx)
	r.Close()
	if err != nil || string(m.Value) != "secret" {
		t.Fatalf("authenticated fetch: %q, %v", m.Value, err)
	}

	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no credentials", Config{Brokers: cfg.Brokers}},
		{"wrong password", Config{Brokers: cfg.Brokers, Username: cfg.Username, Password: "guess"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := EnsureTopics(ctx, tc.cfg, "t2"); err == nil {
				t.Error("topic created")
			}
			w := NewWriter(tc.cfg, "t")
			w.MaxAttempts, w.WriteTimeout = 1, 10*time.Second
			if err := w.WriteMessages(ctx, kafkago.Message{Value: []byte("forged")}); err == nil {
				t.Error("produced")
			}
			CloseWriter(w)
			d := tc.cfg.Dialer()
			conn, err := d.DialLeader(ctx, "tcp", cfg.Brokers[0], "t", 0)
			if err == nil {
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.ReadMessage(1 << 20); err == nil {
					t.Error("fetched")
				}
				conn.Close()
			}
		})
	}
	// Nothing forged reached the topic.
	r = NewReader(cfg, "g2", "t")
	defer r.Close()
	for i := 0; ; i++ {
		fctx, fcancel := context.WithTimeout(ctx, 3*time.Second)
		m, err := r.FetchMessage(fctx)
		fcancel()
		if err != nil {
			break
		}
		if string(m.Value) != "secret" {
			t.Fatalf("topic holds %q", m.Value)
		}
	}
}
