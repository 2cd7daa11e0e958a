// Package keys seals the identity of job messages for their transit through
// Kafka, with envelope encryption: each identity is encrypted with AES-256-GCM
// under a data key (32 random bytes), and the data key travels with the
// message wrapped by a key-encryption key (KEK) that never leaves its
// Wrapper: a local key (Local) or a KMS key (package pipeline/kms).
//
// A Ring holds the current KEK, which wraps the data keys of the identities
// sealed here, and the previous ones, which still open the messages sealed
// under them until they are removed (the rotation's grace period). A data key
// is made when a process first seals and replaced after MaxUses seals, so
// the KEK (and a KMS) is called once per data key, not per message; readers
// keep unwrapped data keys in a bounded cache.
package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/apbatch/apbatch/schemas"
)

// Wrapper wraps data keys under one key-encryption key. Implementations are
// safe for concurrent use.
type Wrapper interface {
	// ID names the key-encryption key; it travels with every message sealed
	// under it, so it must be the same in every process and reveal nothing
	// of the key.
	ID() string
	// Wrap encrypts a data key.
	Wrap(ctx context.Context, dek []byte) ([]byte, error)
	// Unwrap decrypts a data key Wrap returned. An error wrapping
	// schemas.ErrUnsealable means it never will (wrong key, altered bytes);
	// others are transient.
	Unwrap(ctx context.Context, wrapped []byte) ([]byte, error)
}

// Defaults of a Ring.
const (
	// DefaultMaxUses is how many identities one data key seals: far below
	// the 2^32 messages that random 96-bit GCM nonces allow per key.
	DefaultMaxUses = 1 << 24
	// DefaultCacheSize is how many unwrapped data keys a Ring keeps.
	DefaultCacheSize = 1024
)

// dataKeySize is the size of data keys: AES-256.
const dataKeySize = 32

// Ring seals and opens job identities. Build it with New; set the optional
// fields before its first use. It is safe for concurrent use.
type Ring struct {
	// MaxUses is how many identities a data key seals before a new one is
	// made. Default: DefaultMaxUses.
	MaxUses int64
	// CacheSize is how many unwrapped data keys are kept; the oldest goes
	// first. Default: DefaultCacheSize.
	CacheSize int
	// Rand is the source of data keys and nonces. Default: crypto/rand.
	Rand io.Reader

	current Wrapper            // nil: the ring only opens
	byID    map[string]Wrapper // current and previous
	ids     []string           // current first

	sealMu  sync.Mutex // held while a new data key is wrapped
	sealing *dataKey

	mu      sync.Mutex          // guards what follows
	cache   map[string]*dataKey // wrapped bytes → unwrapped key
	order   []string            // cache keys, oldest first
	loading map[string]*loadingKey
}

// dataKey is an unwrapped data key ready to seal or open.
type dataKey struct {
	kid     string
	wrapped []byte
	aead    cipher.AEAD
	uses    int64 // seals made (sealing key only, under Ring.sealMu)
}

// loadingKey is an unwrap under way; others asking for the same key wait.
type loadingKey struct {
	done chan struct{}
	key  *dataKey
	err  error
}

// New returns a ring that seals under current (nil: the ring only opens)
// and opens what current or any of previous sealed.
func New(current Wrapper, previous ...Wrapper) (*Ring, error) {
	r := &Ring{current: current, byID: make(map[string]Wrapper)}
	all := previous
	if current != nil {
		all = append([]Wrapper{current}, previous...)
	}
	if len(all) == 0 {
		return nil, errors.New("keys: no key-encryption key")
	}
	for _, w := range all {
		if w == nil {
			return nil, errors.New("keys: nil key-encryption key")
		}
		if _, dup := r.byID[w.ID()]; dup {
			return nil, fmt.Errorf("keys: key-encryption key %s given twice", w.ID())
		}
		r.byID[w.ID()] = w
		r.ids = append(r.ids, w.ID())
	}
	return r, nil
}

// KeyIDs returns the ids of the ring's key-encryption keys, the current one
// (if any) first.
func (r *Ring) KeyIDs() []string { return append([]string(nil), r.ids...) }

func (r *Ring) rand() io.Reader {
	if r.Rand != nil {
		return r.Rand
	}
	return rand.Reader
}

// Seal encrypts job's identity into job.Sealed and clears job.Identity.
// Binding the ciphertext to the job (IdentityAAD), it must be called once
// the job's tenant, batch, check, period and lookup are set. It calls the
// key-encryption key only when a new data key is needed.
func (r *Ring) Seal(ctx context.Context, job *schemas.Job) error {
	if r.current == nil {
		return errors.New("keys: seal: this ring only opens (no current key-encryption key)")
	}
	dk, err := r.sealingKey(ctx)
	if err != nil {
		return err
	}
	plain, err := schemas.EncodeIdentity(&job.Identity)
	if err != nil {
		return fmt.Errorf("keys: seal: %w", err)
	}
	defer clear(plain)
	nonce := make([]byte, dk.aead.NonceSize())
	if _, err := io.ReadFull(r.rand(), nonce); err != nil {
		return fmt.Errorf("keys: seal: nonce: %w", err)
	}
	ct := dk.aead.Seal(nil, nonce, plain, job.IdentityAAD())
	job.Sealed = &schemas.SealedIdentity{KeyID: dk.kid, DataKey: dk.wrapped, Nonce: nonce, Ciphertext: ct}
	job.Identity = schemas.Identity{}
	return nil
}

// sealingKey returns the data key to seal with, making one (and wrapping it
// under the current KEK) when there is none or it has sealed MaxUses
// identities.
func (r *Ring) sealingKey(ctx context.Context) (*dataKey, error) {
	maxUses := r.MaxUses
	if maxUses <= 0 {
		maxUses = DefaultMaxUses
	}
	r.sealMu.Lock()
	defer r.sealMu.Unlock()
	if dk := r.sealing; dk != nil && dk.uses < maxUses {
		dk.uses++
		return dk, nil
	}
	dek := make([]byte, dataKeySize)
	if _, err := io.ReadFull(r.rand(), dek); err != nil {
		return nil, fmt.Errorf("keys: new data key: %w", err)
	}
	defer clear(dek)
	// Under the lock: sealers wait for the one wrap instead of each
	// making a data key.
	wrapped, err := r.current.Wrap(ctx, dek)
	if err != nil {
		return nil, fmt.Errorf("keys: wrap data key under %s: %w", r.current.ID(), err)
	}
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	dk := &dataKey{kid: r.current.ID(), wrapped: wrapped, aead: aead, uses: 1}
	r.sealing = dk
	r.mu.Lock()
	r.remember(string(wrapped), dk) // this process opens what it seals
	r.mu.Unlock()
	return dk, nil
}

// Open decrypts job.Sealed into job.Identity and clears job.Sealed; a job
// that is not sealed is left as is. An error wrapping schemas.ErrUnsealable
// means the job can never be opened with this ring; other errors are
// transient (a KMS out of reach).
func (r *Ring) Open(ctx context.Context, job *schemas.Job) error {
	s := job.Sealed
	if s == nil {
		return nil
	}
	dk, err := r.openingKey(ctx, s.KeyID, s.DataKey)
	if err != nil {
		return err
	}
	if len(s.Nonce) != dk.aead.NonceSize() {
		return fmt.Errorf("keys: open: nonce of %d bytes: %w", len(s.Nonce), schemas.ErrUnsealable)
	}
	plain, err := dk.aead.Open(nil, s.Nonce, s.Ciphertext, job.IdentityAAD())
	if err != nil {
		return fmt.Errorf("keys: open: %w", schemas.ErrUnsealable)
	}
	id, err := schemas.DecodeIdentity(plain)
	clear(plain)
	if err != nil {
		return fmt.Errorf("keys: open: decode identity: %w", schemas.ErrUnsealable)
	}
	job.Identity, job.Sealed = id, nil
	return nil
}

// openingKey returns the unwrapped data key of a message, from the cache or
// by unwrapping it once however many ask at the same time.
func (r *Ring) openingKey(ctx context.Context, kid string, wrapped []byte) (*dataKey, error) {
	r.mu.Lock()
	if dk, ok := r.cache[string(wrapped)]; ok {
		r.mu.Unlock()
		if dk.kid != kid {
			return nil, fmt.Errorf("keys: data key relabelled %s: %w", kid, schemas.ErrUnsealable)
		}
		return dk, nil
	}
	w, ok := r.byID[kid]
	if !ok {
		r.mu.Unlock()
		return nil, fmt.Errorf("keys: key-encryption key %q not in the keyring: %w", kid, schemas.ErrUnsealable)
	}
	name := string(wrapped)
	if l, ok := r.loading[name]; ok {
		r.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if l.err == nil && l.key.kid != kid {
			return nil, fmt.Errorf("keys: data key relabelled %s: %w", kid, schemas.ErrUnsealable)
		}
		return l.key, l.err
	}
	l := &loadingKey{done: make(chan struct{})}
	if r.loading == nil {
		r.loading = make(map[string]*loadingKey)
	}
	r.loading[name] = l
	r.mu.Unlock()

	l.key, l.err = r.unwrap(ctx, w, wrapped)
	r.mu.Lock()
	delete(r.loading, name)
	if l.err == nil {
		r.remember(name, l.key) // errors are not kept: a transient one is tried again
	}
	r.mu.Unlock()
	close(l.done)
	return l.key, l.err
}

func (r *Ring) unwrap(ctx context.Context, w Wrapper, wrapped []byte) (*dataKey, error) {
	dek, err := w.Unwrap(ctx, wrapped)
	if err != nil {
		return nil, fmt.Errorf("keys: unwrap data key under %s: %w", w.ID(), err)
	}
	defer clear(dek)
	if len(dek) != dataKeySize {
		return nil, fmt.Errorf("keys: data key of %d bytes under %s: %w", len(dek), w.ID(), schemas.ErrUnsealable)
	}
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	return &dataKey{kid: w.ID(), wrapped: append([]byte(nil), wrapped...), aead: aead}, nil
}

// remember caches an unwrapped data key, forgetting the oldest beyond
// CacheSize. r.mu is held.
func (r *Ring) remember(name string, dk *dataKey) {
	size := r.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	if r.cache == nil {
		r.cache = make(map[string]*dataKey)
	}
	if _, ok := r.cache[name]; ok {
		return
	}
	for len(r.order) >= size {
		delete(r.cache, r.order[0])
		r.order = r.order[1:]
	}
	r.cache[name] = dk
	r.order = append(r.order, name)
}

// cached returns how many data keys are cached (tests).
func (r *Ring) cached() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cache)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return aead, nil
}
