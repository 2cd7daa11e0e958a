package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/pipeline/s3"
)

// brokerCommand is "apbatch broker": the embedded Kafka-protocol broker,
// alone, for development and tests of separate role processes.
type brokerCommand struct {
	env
	fs            *flag.FlagSet
	dataDir, addr string
}

func (c *brokerCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.dataDir, "data-dir", "./apbatch-data/kafka", "folder of the broker's logs and offsets")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:9092", "listen address")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *brokerCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch broker [flags]

Serves the embedded Kafka-protocol broker (kfake) on its own, keeping its
data in --data-dir, for development and tests of separate role processes.
Production uses a real Kafka cluster.

Flags:
`)
}

// Run runs the command until ctx ends.
func (c *brokerCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	b := &kafka.Broker{DataDir: c.dataDir, Addr: c.addr}
	if err := b.Open(ctx); err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintf(c.stdout, "broker listening on %v (APBATCH_KAFKA_BROKERS)\n", b.Addrs())
	<-ctx.Done()
	return nil
}

// s3Command is "apbatch s3": an S3 server on a local folder.
type s3Command struct {
	env
	fs        *flag.FlagSet
	dir, addr string
}

func (c *s3Command) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("s3", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.dir, "dir", "./apbatch-data/s3", "folder holding one sub-folder per bucket")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:9000", "listen address")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *s3Command) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch s3 [flags]

Serves S3 over HTTP on a local folder (any access key is accepted), for
development and tests of separate role processes. Production uses a real S3.

Flags:
`)
}

// Run runs the command until ctx ends.
func (c *s3Command) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	srv := &s3.Server{Dir: c.dir, Addr: c.addr}
	if err := srv.Open(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "S3 listening on %s (APBATCH_S3_ENDPOINT)\n", srv.URL())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Close(sctx)
}
