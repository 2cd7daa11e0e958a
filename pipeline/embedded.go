package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/pipeline/s3"
)

// Embedded runs, in this process, the services apbatch needs when nothing is
// installed: a Kafka-protocol broker and an S3 server, both keeping their
// data under DataDir, next to the SQLite ledger. Clients reach them over the
// network exactly as they reach production services, and both let in only
// the holders of the credentials of DataDir (see Credentials): the S3 server
// requires requests signed with its key (SigV4), the broker, bound to the
// loopback interface, SASL/PLAIN.
type Embedded struct {
	// DataDir holds kafka/, s3/, ledger.db and the services' credentials.
	// Default: "./apbatch-data".
	DataDir string

	creds  Credentials
	broker *kafka.Broker
	s3     *s3.Server
}

// CredentialsFile is the file under the data folder holding the embedded
// services' credentials (JSON, readable by its owner only).
const CredentialsFile = "services.key"

// Credentials are the embedded services' credentials, made at random the
// first time a data folder is used and kept in it (CredentialsFile): only
// the processes that can read that file reach the services.
type Credentials struct {
	S3AccessKey   string `json:"s3_access_key"`
	S3SecretKey   string `json:"s3_secret_key"`
	KafkaUser     string `json:"kafka_user"`
	KafkaPassword string `json:"kafka_password"`
}

// LoadCredentials returns the credentials of the data folder dir, making
// them (mode 0600, with O_EXCL: concurrent processes agree on the first
// one's) when it has none. A file readable by others is made private.
func LoadCredentials(dir string) (Credentials, error) {
	path := filepath.Join(dir, CredentialsFile)
	for attempt := 0; attempt < 2; attempt++ {
		if raw, err := os.ReadFile(path); err == nil {
			var c Credentials
			if err := json.Unmarshal(raw, &c); err != nil || c.S3AccessKey == "" || c.S3SecretKey == "" || c.KafkaUser == "" || c.KafkaPassword == "" {
				return Credentials{}, fmt.Errorf("embedded: %s is unreadable; delete it, a new one is made on the next start", path)
			}
			if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
				if err := os.Chmod(path, 0o600); err != nil {
					return Credentials{}, fmt.Errorf("embedded: make %s private: %w", path, err)
				}
			}
			return c, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return Credentials{}, fmt.Errorf("embedded: read credentials: %w", err)
		}
		c := Credentials{S3AccessKey: "AK" + randomHex(9), S3SecretKey: randomHex(24), KafkaUser: "apbatch-" + randomHex(4), KafkaPassword: randomHex(24)}
		raw, _ := json.Marshal(c)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue // made by another process meanwhile: read it
		}
		if err != nil {
			return Credentials{}, fmt.Errorf("embedded: write credentials: %w", err)
		}
		_, err = f.Write(append(raw, '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return Credentials{}, fmt.Errorf("embedded: write credentials: %w", err)
		}
		return c, nil
	}
	return Credentials{}, fmt.Errorf("embedded: %s appeared empty twice", path)
}

// randomHex returns n random bytes in hex (crypto/rand never fails on
// the systems Go supports).
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// S3Config returns the configuration that reaches an embedded S3 server at
// url with these credentials, bucket "apbatch".
func (c Credentials) S3Config(url string) s3.Config {
	return s3.Config{Endpoint: url, AccessKey: c.S3AccessKey, SecretKey: c.S3SecretKey, Bucket: "apbatch"}
}

// S3Server returns an S3 server on the data folder dir's s3/ that requires
// these credentials.
func (c Credentials) S3Server(dir string) *s3.Server {
	return &s3.Server{Dir: filepath.Join(dir, "s3"), AccessKey: c.S3AccessKey, SecretKey: c.S3SecretKey}
}

// Open starts the broker and the S3 server.
func (e *Embedded) Open(ctx context.Context) error {
	if e.DataDir == "" {
		e.DataDir = "./apbatch-data"
	}
	if err := os.MkdirAll(e.DataDir, 0o750); err != nil {
		return fmt.Errorf("embedded: create data folder %s: %w", e.DataDir, err)
	}
	creds, err := LoadCredentials(e.DataDir)
	if err != nil {
		return err
	}
	e.creds = creds
	e.broker = &kafka.Broker{DataDir: filepath.Join(e.DataDir, "kafka"), Username: creds.KafkaUser, Password: creds.KafkaPassword}
	if err := e.broker.Open(ctx); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	e.s3 = creds.S3Server(e.DataDir)
	if err := e.s3.Open(ctx); err != nil {
		e.broker.Close()
		return fmt.Errorf("embedded: %w", err)
	}
	return nil
}

// Kafka returns the configuration that reaches the embedded broker, with
// its credentials.
func (e *Embedded) Kafka() kafka.Config { return e.broker.Config() }

// S3 returns the configuration that reaches the embedded S3 server, with
// its credentials.
func (e *Embedded) S3() s3.Config { return e.creds.S3Config(e.s3.URL()) }

// EmbeddedS3 returns the configuration that reaches an S3 server that
// checks no credentials (s3.Server without AccessKey, as "apbatch s3"
// runs it) at url, bucket "apbatch".
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
