package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/pipeline/s3"
)

// Embedded runs, in this process, the services apbatch needs when nothing is
// installed: a Kafka-protocol broker and an S3 server, both keeping their
// data under DataDir, next to the SQLite ledger. Clients reach them over the
// network exactly as they reach production services.
type Embedded struct {
	// DataDir holds kafka/, s3/ and ledger.db. Default: "./apbatch-data".
	DataDir string

	broker *kafka.Broker
	s3     *s3.Server
}

// Open starts the broker and the S3 server.
func (e *Embedded) Open(ctx context.Context) error {
	if e.DataDir == "" {
		e.DataDir = "./apbatch-data"
	}
	if err := os.MkdirAll(e.DataDir, 0o750); err != nil {
		return fmt.Errorf("embedded: create data folder %s: %w", e.DataDir, err)
	}
	e.broker = &kafka.Broker{DataDir: filepath.Join(e.DataDir, "kafka")}
	if err := e.broker.Open(ctx); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	e.s3 = &s3.Server{Dir: filepath.Join(e.DataDir, "s3")}
	if err := e.s3.Open(ctx); err != nil {
		e.broker.Close()
		return fmt.Errorf("embedded: %w", err)
	}
	return nil
}

// Kafka returns the configuration that reaches the embedded broker.
func (e *Embedded) Kafka() kafka.Config {
	return kafka.Config{Brokers: e.broker.Addrs()}
}

// S3 returns the configuration that reaches the embedded S3 server.
func (e *Embedded) S3() s3.Config { return EmbeddedS3(e.s3.URL()) }

// EmbeddedS3 returns the configuration that reaches an embedded S3 server
// (s3.Server, which checks no credentials) at url, bucket "apbatch".
func EmbeddedS3(url string) s3.Config {
	return s3.Config{Endpoint: url, AccessKey: "apbatch", SecretKey: "apbatch-embedded", Bucket: "apbatch"}
}

// LedgerURL returns the SQLite ledger's URL.
func (e *Embedded) LedgerURL() string {
	return "sqlite://" + filepath.Join(e.DataDir, "ledger.db")
}

// Close stops both services, returning the first error. Idempotent.
func (e *Embedded) Close(ctx context.Context) error {
	var errs []error
	if e.s3 != nil {
		errs = append(errs, e.s3.Close(ctx))
		e.s3 = nil
	}
	if e.broker != nil {
		errs = append(errs, e.broker.Close())
		e.broker = nil
	}
	return errors.Join(errs...)
}
