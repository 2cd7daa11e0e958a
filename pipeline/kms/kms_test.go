package kms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/apbatch/apbatch/pipeline/keys"
	"github.com/apbatch/apbatch/schemas"
)

// fakeKMS speaks the KMS JSON protocol (awsJson1_1) for Encrypt and Decrypt,
// with one AES-GCM key per key id; a blob names its key, as real ones do.
type fakeKMS struct {
	mu    sync.Mutex
	keys  map[string]cipher.AEAD
	calls map[string]int
	deny  bool // answer AccessDeniedException to everything
}

func newFakeKMS(t *testing.T, ids ...string) (*fakeKMS, *httptest.Server) {
	f := &fakeKMS{keys: map[string]cipher.AEAD{}, calls: map[string]int{}}
	for _, id := range ids {
		k := make([]byte, 32)
		rand.Read(k)
		b, _ := aes.NewCipher(k)
		f.keys[id], _ = cipher.NewGCM(b)
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeKMS) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeKMS) fail(w http.ResponseWriter, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

func (f *fakeKMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op, _ := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	f.mu.Lock()
	f.calls[op]++
	deny := f.deny
	f.mu.Unlock()
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") ||
		r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
		f.fail(w, "InvalidSignatureException", "unsigned or not JSON 1.1")
		return
	}
	if deny {
		f.fail(w, "AccessDeniedException", "not allowed")
		return
	}
	var in struct {
		KeyID             string            `json:"KeyId"`
		Plaintext         []byte            `json:"Plaintext"`
		CiphertextBlob    []byte            `json:"CiphertextBlob"`
		EncryptionContext map[string]string `json:"EncryptionContext"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		f.fail(w, "ValidationException", err.Error())
		return
	}
	ctx, _ := json.Marshal(in.EncryptionContext) // map keys are sorted
	var out map[string]any
	switch op {
	case "Encrypt":
		aead, ok := f.keys[in.KeyID]
		if !ok {
			f.fail(w, "NotFoundException", "no key "+in.KeyID)
			return
		}
		nonce := make([]byte, 12)
		rand.Read(nonce)
		blob := append([]byte{byte(len(in.KeyID))}, in.KeyID...)
		blob = append(blob, nonce...)
		blob = aead.Seal(blob, nonce, in.Plaintext, ctx)
		out = map[string]any{"CiphertextBlob": blob, "KeyId": "arn:aws:kms:eu-west-3:111122223333:key/" + in.KeyID,
			"EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
	case "Decrypt":
		b := in.CiphertextBlob
		if len(b) < 1 || len(b) < 1+int(b[0])+12+16 {
			f.fail(w, "InvalidCiphertextException", "short blob")
			return
		}
		id := string(b[1 : 1+b[0]])
		if in.KeyID != "" && in.KeyID != id {
			f.fail(w, "IncorrectKeyException", "blob of another key")
			return
		}
		aead, ok := f.keys[id]
		if !ok {
			f.fail(w, "NotFoundException", "no key")
			return
		}
		rest := b[1+b[0]:]
		pt, err := aead.Open(nil, rest[:12], rest[12:], ctx)
		if err != nil {
			f.fail(w, "InvalidCiphertextException", "cannot decrypt")
			return
		}
		out = map[string]any{"Plaintext": pt, "KeyId": "arn:aws:kms:eu-west-3:111122223333:key/" + id,
			"EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
	default:
		f.fail(w, "UnknownOperationException", op)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

func newWrapper(t *testing.T, url, keyID string) *Wrapper {
	t.Helper()
	w, err := New(t.Context(), Config{KeyID: keyID, Endpoint: url, Region: "eu-west-3", AccessKey: "AKIDTEST", SecretKey: "test-secret"})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWrapper_WrapUnwrap(t *testing.T) {
	fake, srv := newFakeKMS(t, "alias/apbatch", "alias/other")
	w := newWrapper(t, srv.URL, "alias/apbatch")
	if w.ID() != "kms:alias/apbatch" {
		t.Fatalf("ID = %s", w.ID())
	}
	dek := make([]byte, 32)
	rand.Read(dek)
	wrapped, err := w.Wrap(t.Context(), dek)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wrapped, dek) {
		t.Fatal("data key in clear")
	}
	got, err := newWrapper(t, srv.URL, "alias/apbatch").Unwrap(t.Context(), wrapped)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	for _, tc := range []struct {
		name      string
		keyID     string
		blob      []byte
		deny      bool
		unsealing bool // permanent
	}{
		{"altered blob", "alias/apbatch", append(append([]byte(nil), wrapped[:len(wrapped)-1]...), wrapped[len(wrapped)-1]^1), false, true},
		{"another key's blob", "alias/other", wrapped, false, true},
		{"unknown key", "alias/gone", wrapped, false, true},
		{"access denied", "alias/apbatch", wrapped, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.mu.Lock()
			fake.deny = tc.deny
			fake.mu.Unlock()
			defer func() { fake.mu.Lock(); fake.deny = false; fake.mu.Unlock() }()
			_, err := newWrapper(t, srv.URL, tc.keyID).Unwrap(t.Context(), tc.blob)
			if err == nil || errors.Is(err, schemas.ErrUnsealable) != tc.unsealing {
				t.Fatalf("Unwrap = %v; want unsealable %v", err, tc.unsealing)
			}
		})
	}
}

// TestRing_KMS seals and opens through the keyring and the real SDK: KMS is
// called once per data key, whatever the number of messages.
func TestRing_KMS(t *testing.T) {
	fake, srv := newFakeKMS(t, "alias/apbatch", "alias/next")
	producer, err := keys.New(newWrapper(t, srv.URL, "alias/apbatch"))
	if err != nil {
		t.Fatal(err)
	}
	id := schemas.Identity{NomNaissance: "MARTIN", Prenoms: []string{"Léa"}, AnneeNaissance: 2012, CodePaysNaissance: "99100"}
	var jobs []schemas.Job
	for i := 0; i < 50; i++ {
		j := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "demo", Check: schemas.CheckQuotientFamilial,
			LookupID: string(rune('a' + i%26)), Identity: id, Rows: []schemas.RowRef{{Number: int64(i + 1)}}}
		if err := producer.Seal(t.Context(), &j); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	// Rotation to another KMS key, the previous one kept for the grace period.
	consumer, err := keys.New(newWrapper(t, srv.URL, "alias/next"), newWrapper(t, srv.URL, "alias/apbatch"))
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if err := consumer.Open(t.Context(), &j); err != nil {
			t.Fatal(err)
		}
		if j.Identity.NomNaissance != "MARTIN" {
			t.Fatalf("opened %+v", j.Identity)
		}
	}
	if e, d := fake.count("Encrypt"), fake.count("Decrypt"); e != 1 || d != 1 {
		t.Fatalf("%d Encrypt and %d Decrypt calls for 50 messages, want 1 and 1", e, d)
	}
}

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"alias", Config{KeyID: "alias/apbatch"}, true},
		{"no key", Config{}, false},
		{"half credentials", Config{KeyID: "k", AccessKey: "a"}, false},
		{"endpoint without scheme", Config{KeyID: "k", Endpoint: "localhost:4566"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
}
