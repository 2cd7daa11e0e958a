package keys

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/apbatch/apbatch/schemas"
)

// KeySize is the size of a local key-encryption key: AES-256.
const KeySize = 32

// Local is a key-encryption key held by the process (from a file or the
// environment): it wraps data keys with AES-256-GCM, binding each to its ID.
type Local struct {
	id   string
	aead cipher.AEAD
	rand io.Reader
}

var _ Wrapper = (*Local)(nil)

// NewLocal returns the wrapper of a 32-byte key-encryption key.
func NewLocal(kek []byte) (*Local, error) {
	if len(kek) != KeySize {
		return nil, fmt.Errorf("keys: local key of %d bytes, want %d", len(kek), KeySize)
	}
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	// The id is a hash of the key under a label of its own: stable across
	// processes, different for every key, and no help to find the key.
	h := sha256.Sum256(append([]byte("apbatch.kek.id\x00"), kek...))
	return &Local{id: "local:" + hex.EncodeToString(h[:8]), aead: aead, rand: rand.Reader}, nil
}

// ID returns "local:" and 16 hex digits derived from the key.
func (l *Local) ID() string { return l.id }

func (l *Local) aad() []byte { return []byte("apbatch.dek\x00" + l.id) }

// Wrap returns nonce ‖ AES-GCM(dek).
func (l *Local) Wrap(_ context.Context, dek []byte) ([]byte, error) {
	ns := l.aead.NonceSize()
	out := make([]byte, ns, ns+len(dek)+l.aead.Overhead())
	if _, err := io.ReadFull(l.rand, out); err != nil {
		return nil, fmt.Errorf("keys: wrap: nonce: %w", err)
	}
	return l.aead.Seal(out, out[:ns], dek, l.aad()), nil
}

// Unwrap opens what Wrap returned; any failure wraps schemas.ErrUnsealable.
func (l *Local) Unwrap(_ context.Context, wrapped []byte) ([]byte, error) {
	ns := l.aead.NonceSize()
	if len(wrapped) < ns+l.aead.Overhead() {
		return nil, fmt.Errorf("keys: wrapped data key of %d bytes: %w", len(wrapped), schemas.ErrUnsealable)
	}
	dek, err := l.aead.Open(nil, wrapped[:ns], wrapped[ns:], l.aad())
	if err != nil {
		return nil, fmt.Errorf("keys: data key not wrapped by %s: %w", l.id, schemas.ErrUnsealable)
	}
	return dek, nil
}

// ParseKey decodes a key-encryption key written as 64 hex digits or as
// base64 (standard or URL alphabet, padded or not) of 32 bytes, such as
// "openssl rand -hex 32" or "openssl rand -base64 32" print.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	// The value is a secret: it is not quoted back.
	return nil, errors.New("keys: want 32 bytes as 64 hex digits or base64 (openssl rand -hex 32)")
}

// ReadKeyFile reads a key file written as ParseKey takes it.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return k, nil
}

// LoadOrCreateKeyFile reads the key file at path, or creates it (readable by
// its owner only) with a new random key when it does not exist.
func LoadOrCreateKeyFile(path string) ([]byte, error) {
	k, err := ReadKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k = make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("keys: new key: %w", err)
	}
	// Written aside then linked in place: a process that finds the file
	// finds it whole, and of two processes creating it, one key wins.
	f, err := os.CreateTemp(filepath.Dir(path), ".kek-*")
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(hex.EncodeToString(k) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("keys: write %s: %w", path, err)
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return ReadKeyFile(path)
	} else if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return k, nil
}
