// Package kafka adapts Kafka to apbatch: an embedded Kafka-protocol broker for
// the all-in-one mode and tests, topic creation, and kafka-go readers and
// writers configured for at-least-once delivery (explicit commits, acks from
// all replicas). The same code talks to kfake and to a production Kafka.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Broker is an embedded, single-node Kafka-protocol broker (kfake) whose
// topics and committed offsets persist in a data directory. It listens on
// the loopback interface only. With Username and Password set, it serves
// only clients that authenticate with them (SASL/PLAIN): any other
// connection gets no answer but to its SASL handshake and API versions.
type Broker struct {
	// DataDir holds the broker's segments and offsets; empty keeps them in
	// memory. Default: "" (memory).
	DataDir string
	// Addr is the listen address; its port only is used (the broker binds
	// 127.0.0.1). Default: "127.0.0.1:0" (a free port).
	Addr string
	// Username and Password are the one SASL/PLAIN user the broker
	// accepts. Default: "" (no authentication: any local client).
	Username, Password string

	mu          sync.Mutex
	cluster     *kfake.Cluster
	stopJanitor context.CancelFunc
	janitorDone chan struct{}
}

// Open starts the broker. It returns once the broker accepts connections.
func (b *Broker) Open(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cluster != nil {
		return errors.New("kafka: broker already open")
	}
	port := 0
	if b.Addr != "" {
		_, p, err := net.SplitHostPort(b.Addr)
		if err != nil {
			return fmt.Errorf("kafka: broker address %q: %w", b.Addr, err)
		}
		if port, err = strconv.Atoi(p); err != nil {
			return fmt.Errorf("kafka: broker port %q: %w", p, err)
		}
	}
	if port == 0 {
		// kfake treats port 0 as "pick one", but asking the kernel first
		// keeps the address stable for the lifetime of this broker.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("kafka: find a free port: %w", err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	opts := []kfake.Opt{
		kfake.Ports(port),
		kfake.DefaultNumPartitions(4),
		kfake.GroupMinSessionTimeout(MinSessionTimeout),
	}
	if b.DataDir != "" {
		opts = append(opts, kfake.DataDir(b.DataDir))
	}
	if (b.Username == "") != (b.Password == "") {
		return errors.New("kafka: broker Username and Password go together")
	}
	if b.Username != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser("PLAIN", b.Username, b.Password))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("kafka: start embedded broker: %w", err)
	}
	b.cluster = c
	// Members of killed processes are evicted even when kfake keeps them
	// (see janitor).
	j := newJanitor(b.config())
	for _, key := range []int16{kmsg.JoinGroup.Int16(), kmsg.SyncGroup.Int16(), kmsg.Heartbeat.Int16()} {
		c.ControlKey(key, j.observe)
	}
	jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.stopJanitor, b.janitorDone = cancel, make(chan struct{})
	go func() {
		defer close(b.janitorDone)
		j.run(jctx)
	}()
	return ctx.Err()
}

// Addrs returns the broker's bootstrap addresses, or nil before Open.
func (b *Broker) Addrs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cluster == nil {
		return nil
	}
	return b.cluster.ListenAddrs()
}

// Config returns the configuration that reaches the broker (its
// addresses and credentials), or one without brokers before Open.
func (b *Broker) Config() Config {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.config()
}

func (b *Broker) config() Config {
	var addrs []string
	if b.cluster != nil {
		addrs = b.cluster.ListenAddrs()
	}
	return Config{Brokers: addrs, Username: b.Username, Password: b.Password}
}

// Close stops the broker and flushes its data directory. It is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopJanitor != nil {
		b.stopJanitor()
		<-b.janitorDone
		b.stopJanitor = nil
	}
	if b.cluster != nil {
		b.cluster.Close()
		b.cluster = nil
	}
	return nil
}
