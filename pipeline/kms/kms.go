// Package kms adapts AWS KMS (or a service speaking its API) to
// keys.Wrapper: data keys are wrapped by Encrypt and unwrapped by Decrypt
// under one KMS key, through aws-sdk-go-v2. The keyring caches what Decrypt
// returns, so KMS is called once per data key, never per message.
package kms

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/apbatch/apbatch/pipeline/keys"
	"github.com/apbatch/apbatch/schemas"
)

// Config names a KMS key and how to reach it.
type Config struct {
	// KeyID is the KMS key: a key id, key ARN, alias name ("alias/apbatch")
	// or alias ARN. It names the key-encryption key in every message, so
	// every process must give the same string. Required.
	KeyID string
	// Endpoint is the KMS service URL; empty uses AWS's endpoint for the
	// region (or AWS_ENDPOINT_URL_KMS). Default: "".
	Endpoint string
	// Region is the key's region; empty takes the SDK's (AWS_REGION, the
	// profile). Default: "".
	Region string
	// AccessKey and SecretKey are static credentials; when both are empty
	// the SDK's default chain (environment, profile, instance or pod role)
	// is used.
	AccessKey string
	SecretKey string
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case strings.TrimSpace(c.KeyID) == "":
		return errors.New("kms: KeyID is required")
	case (c.AccessKey == "") != (c.SecretKey == ""):
		return errors.New("kms: AccessKey and SecretKey go together")
	case c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://"):
		return fmt.Errorf("kms: Endpoint %q must start with http:// or https://", c.Endpoint)
	}
	return nil
}

// encryptionContext is bound to every wrapped data key: KMS refuses to
// decrypt it for any other purpose, and its audit logs say what it was.
var encryptionContext = map[string]string{"apbatch": "job-identity-data-key"}

// Wrapper wraps data keys under one KMS key.
type Wrapper struct {
	keyID string
	api   *awskms.Client
}

var _ keys.Wrapper = (*Wrapper)(nil)

// New builds a wrapper; it does not contact the service.
func New(ctx context.Context, cfg Config) (*Wrapper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("kms: load config: %w", err)
	}
	api := awskms.NewFromConfig(awsCfg, func(o *awskms.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return &Wrapper{keyID: strings.TrimSpace(cfg.KeyID), api: api}, nil
}

// ID returns "kms:" and the configured key id.
func (w *Wrapper) ID() string { return "kms:" + w.keyID }

// Wrap encrypts dek under the KMS key (one Encrypt call).
func (w *Wrapper) Wrap(ctx context.Context, dek []byte) ([]byte, error) {
	out, err := w.api.Encrypt(ctx, &awskms.EncryptInput{KeyId: &w.keyID, Plaintext: dek, EncryptionContext: encryptionContext})
	if err != nil {
		return nil, fmt.Errorf("kms: encrypt under %s: %w", w.keyID, err)
	}
	return out.CiphertextBlob, nil
}

// Unwrap decrypts a wrapped data key (one Decrypt call), asking KMS to use
// this wrapper's key only. KMS's refusals of the blob itself (not its
// ciphertext, another key's, a disabled key) wrap schemas.ErrUnsealable;
// other errors (network, throttling, permissions) are transient.
func (w *Wrapper) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	out, err := w.api.Decrypt(ctx, &awskms.DecryptInput{KeyId: &w.keyID, CiphertextBlob: wrapped, EncryptionContext: encryptionContext})
	var (
		invalid   *types.InvalidCiphertextException
		incorrect *types.IncorrectKeyException
		disabled  *types.DisabledException
		notFound  *types.NotFoundException
	)
	switch {
	case errors.As(err, &invalid), errors.As(err, &incorrect), errors.As(err, &disabled), errors.As(err, &notFound):
		return nil, fmt.Errorf("kms: decrypt under %s: %w (%w)", w.keyID, schemas.ErrUnsealable, err)
	case err != nil:
		return nil, fmt.Errorf("kms: decrypt under %s: %w", w.keyID, err)
	}
	return out.Plaintext, nil
}
