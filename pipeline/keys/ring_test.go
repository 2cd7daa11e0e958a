package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	json "github.com/segmentio/encoding/json"

	"github.com/apbatch/apbatch/schemas"
)

func newKEK(t testing.TB) *Local {
	t.Helper()
	k := make([]byte, KeySize)
	rand.Read(k)
	l, err := NewLocal(k)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newRing(t testing.TB, current Wrapper, previous ...Wrapper) *Ring {
	t.Helper()
	r, err := New(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var person = schemas.Identity{NomNaissance: "LEFÈVRE", Prenoms: []string{"Élodie", "Anne"}, Sexe: "F",
	AnneeNaissance: 2012, MoisNaissance: 5, JourNaissance: 14, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480",
	INE: "1234567890A"}

func newJob() schemas.Job {
	return schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "demo", Campaign: "2026-09",
		Check: schemas.CheckQuotientFamilial, LookupID: "l1", Identity: person, Rows: []schemas.RowRef{{Number: 1}}}
}

// sealed seals a fresh job with r and returns it as a worker receives it.
func sealed(t testing.TB, r *Ring) schemas.Job {
	t.Helper()
	j := newJob()
	if err := r.Seal(t.Context(), &j); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	got, err := schemas.DecodeJob(b)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRing_SealOpen(t *testing.T) {
	kek := newKEK(t)
	producer, consumer := newRing(t, kek), newRing(t, kek) // two processes
	j := newJob()
	if err := producer.Seal(t.Context(), &j); err != nil {
		t.Fatal(err)
	}
	if j.Sealed == nil || j.Identity.NomNaissance != "" || j.Sealed.KeyID != kek.ID() {
		t.Fatalf("after Seal: %+v", j)
	}
	b, _ := json.Marshal(j)
	for _, clear := range []string{"LEFÈVRE", "Élodie", "2012", "1234567890A", "08480"} {
		if bytes.Contains(b, []byte(clear)) {
			t.Errorf("%q in clear in %s", clear, b)
		}
	}
	got, err := schemas.DecodeJob(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Open(t.Context(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Sealed != nil || got.Identity.NomNaissance != person.NomNaissance || got.Identity.INE != person.INE ||
		strings.Join(got.Identity.Prenoms, " ") != "Élodie Anne" || got.Identity.JourNaissance != 14 {
		t.Fatalf("opened %+v", got)
	}
	// A plain job is left as is.
	plain := newJob()
	if err := consumer.Open(t.Context(), &plain); err != nil || plain.Identity.NomNaissance != person.NomNaissance {
		t.Fatalf("plain job: %v %+v", err, plain)
	}
}

func TestRing_Open_Refuses(t *testing.T) {
	kek := newKEK(t)
	r := newRing(t, kek)
	other := sealed(t, newRing(t, newKEK(t)))
	for _, tc := range []struct {
		name   string
		change func(*schemas.Job)
	}{
		{"moved to another batch", func(j *schemas.Job) { j.BatchID = "b2" }},
		{"moved to another tenant", func(j *schemas.Job) { j.Tenant = "other" }},
		{"moved to another lookup", func(j *schemas.Job) { j.LookupID = "l2" }},
		{"moved to another check", func(j *schemas.Job) { j.Check = schemas.CheckRSA }},
		{"moved to another campaign", func(j *schemas.Job) { j.Campaign = "2027-09" }},
		{"recipient changed", func(j *schemas.Job) { j.Recipient = "21750001600019" }},
		{"rows pointed elsewhere", func(j *schemas.Job) { j.Rows = []schemas.RowRef{{Number: 2}} }},
		{"row added", func(j *schemas.Job) { j.Rows = append(j.Rows, schemas.RowRef{Number: 2}) }},
		{"reference changed", func(j *schemas.Job) { j.Rows[0].Reference = "F9" }},
		{"ciphertext altered", func(j *schemas.Job) { j.Sealed.Ciphertext[3] ^= 1 }},
		{"tag altered", func(j *schemas.Job) { j.Sealed.Ciphertext[len(j.Sealed.Ciphertext)-1] ^= 1 }},
		{"nonce altered", func(j *schemas.Job) { j.Sealed.Nonce[0] ^= 1 }},
		{"nonce truncated", func(j *schemas.Job) { j.Sealed.Nonce = j.Sealed.Nonce[:8] }},
		{"data key altered", func(j *schemas.Job) { j.Sealed.DataKey[20] ^= 1 }},
		{"data key truncated", func(j *schemas.Job) { j.Sealed.DataKey = j.Sealed.DataKey[:10] }},
		{"unknown key id", func(j *schemas.Job) { j.Sealed.KeyID = "local:0000000000000000" }},
		{"another deployment's key", func(j *schemas.Job) { j.Sealed = other.Sealed }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := sealed(t, r)
			tc.change(&j)
			err := newRing(t, kek).Open(t.Context(), &j)
			if !errors.Is(err, schemas.ErrUnsealable) {
				t.Fatalf("Open = %v, want ErrUnsealable", err)
			}
			if strings.Contains(err.Error(), "LEF") || j.Identity.NomNaissance != "" {
				t.Fatalf("identity leaked: %v %+v", err, j.Identity)
			}
		})
	}
	t.Run("relabelled cached data key", func(t *testing.T) {
		r2 := newRing(t, kek, newKEK(t))
		j := sealed(t, r2) // the sealing key is cached
		j.Sealed.KeyID = r2.KeyIDs()[1]
		if err := r2.Open(t.Context(), &j); !errors.Is(err, schemas.ErrUnsealable) {
			t.Fatalf("Open = %v", err)
		}
	})
}

func TestRing_Rotation(t *testing.T) {
	old, cur := newKEK(t), newKEK(t)
	before := sealed(t, newRing(t, old))
	// During the grace period: new messages under cur, old ones still open.
	grace := newRing(t, cur, old)
	if ids := grace.KeyIDs(); len(ids) != 2 || ids[0] != cur.ID() || ids[1] != old.ID() {
		t.Fatalf("KeyIDs = %v", ids)
	}
	after := sealed(t, grace)
	if after.Sealed.KeyID != cur.ID() {
		t.Fatalf("sealed under %s, want the current key %s", after.Sealed.KeyID, cur.ID())
	}
	for name, j := range map[string]schemas.Job{"old message": before, "new message": after} {
		j := j
		if err := grace.Open(t.Context(), &j); err != nil || j.Identity.NomNaissance != person.NomNaissance {
			t.Fatalf("grace period, %s: %v", name, err)
		}
	}
	// After the grace period: the old key is gone, so are its messages.
	done := newRing(t, cur)
	j := before
	if err := done.Open(t.Context(), &j); !errors.Is(err, schemas.ErrUnsealable) {
		t.Fatalf("old message after rotation: %v", err)
	}
	j = after
	if err := done.Open(t.Context(), &j); err != nil {
		t.Fatal(err)
	}
	// A ring of previous keys only opens.
	ro := newRing(t, nil, old)
	k := newJob()
	if err := ro.Seal(t.Context(), &k); err == nil {
		t.Fatal("a ring without current key sealed")
	}
}

// countingWrapper is a hand-written Wrapper counting its calls.
type countingWrapper struct {
	Wrapper
	wraps, unwraps atomic.Int64
	unwrapErr      error
	gate           chan struct{} // when set, Unwrap waits for it
}

func (c *countingWrapper) Wrap(ctx context.Context, dek []byte) ([]byte, error) {
	c.wraps.Add(1)
	return c.Wrapper.Wrap(ctx, dek)
}

func (c *countingWrapper) Unwrap(ctx context.Context, w []byte) ([]byte, error) {
	c.unwraps.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	if c.unwrapErr != nil {
		return nil, c.unwrapErr
	}
	return c.Wrapper.Unwrap(ctx, w)
}

func TestRing_DataKeys(t *testing.T) {
	t.Run("one data key per MaxUses seals", func(t *testing.T) {
		kek := &countingWrapper{Wrapper: newKEK(t)}
		r := newRing(t, kek)
		r.MaxUses = 3
		keys := map[string]bool{}
		for i := 0; i < 7; i++ {
			keys[string(sealed(t, r).Sealed.DataKey)] = true
		}
		if len(keys) != 3 || kek.wraps.Load() != 3 {
			t.Fatalf("%d data keys, %d wraps for 7 seals of 3 uses each", len(keys), kek.wraps.Load())
		}
	})
	t.Run("cache bounded, oldest evicted", func(t *testing.T) {
		kek := &countingWrapper{Wrapper: newKEK(t)}
		producer := newRing(t, kek)
		producer.MaxUses = 1 // a data key per message
		var jobs []schemas.Job
		for i := 0; i < 10; i++ {
			jobs = append(jobs, sealed(t, producer))
		}
		consumer := newRing(t, kek)
		consumer.CacheSize = 4
		open := func(j schemas.Job) {
			t.Helper()
			if err := consumer.Open(t.Context(), &j); err != nil {
				t.Fatal(err)
			}
		}
		for _, j := range jobs {
			open(j)
		}
		if n := consumer.cached(); n != 4 {
			t.Fatalf("%d data keys cached, want 4", n)
		}
		if n := kek.unwraps.Load(); n != 10 {
			t.Fatalf("%d unwraps, want 10", n)
		}
		open(jobs[9]) // the newest is cached
		if n := kek.unwraps.Load(); n != 10 {
			t.Fatalf("cached key unwrapped again (%d)", n)
		}
		open(jobs[0]) // the oldest was evicted
		if n := kek.unwraps.Load(); n != 11 {
			t.Fatalf("%d unwraps, want 11", n)
		}
		if n := consumer.cached(); n != 4 {
			t.Fatalf("%d data keys cached, want 4", n)
		}
	})
	t.Run("concurrent opens unwrap once", func(t *testing.T) {
		kek := &countingWrapper{Wrapper: newKEK(t), gate: make(chan struct{})}
		j := sealed(t, newRing(t, kek))
		consumer := newRing(t, kek)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := j
				errs <- consumer.Open(t.Context(), &k)
			}()
		}
		close(kek.gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := kek.unwraps.Load(); n != 1 {
			t.Fatalf("%d unwraps for one data key", n)
		}
	})
	t.Run("transient unwrap errors are not kept", func(t *testing.T) {
		down := errors.New("kms out of reach")
		kek := &countingWrapper{Wrapper: newKEK(t), unwrapErr: down}
		j := sealed(t, newRing(t, kek))
		consumer := newRing(t, kek)
		k := j
		if err := consumer.Open(t.Context(), &k); !errors.Is(err, down) || errors.Is(err, schemas.ErrUnsealable) {
			t.Fatalf("Open = %v, want the transient error", err)
		}
		kek.unwrapErr = nil
		k = j
		if err := consumer.Open(t.Context(), &k); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	})
}

func TestNew_Invalid(t *testing.T) {
	kek := newKEK(t)
	for name, ws := range map[string][]Wrapper{"none": {nil}, "twice": {kek, kek}, "nil previous": {kek, nil}} {
		if _, err := New(ws[0], ws[1:]...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseKey(t *testing.T) {
	k := make([]byte, KeySize)
	rand.Read(k)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"hex", hex.EncodeToString(k), true},
		{"hex with newline", hex.EncodeToString(k) + "\n", true},
		{"base64", base64.StdEncoding.EncodeToString(k), true},
		{"base64 raw url", base64.RawURLEncoding.EncodeToString(k), true},
		{"too short", hex.EncodeToString(k[:16]), false},
		{"passphrase", "correct horse battery staple", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.in)
			if (err == nil) != tc.ok || (tc.ok && !bytes.Equal(got, k)) {
				t.Fatalf("ParseKey = %x, %v", got, err)
			}
			if err != nil && tc.in != "" && strings.Contains(err.Error(), tc.in) {
				t.Fatalf("error quotes the secret: %v", err)
			}
		})
	}
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	k1, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", st.Mode(), err)
	}
	k2, err := LoadOrCreateKeyFile(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load: %x, %v; want %x", k2, err, k1)
	}
	if k3, err := ReadKeyFile(path); err != nil || !bytes.Equal(k1, k3) {
		t.Fatalf("ReadKeyFile: %v", err)
	}
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeyFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("bad key file: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestLocal_IDs(t *testing.T) {
	k := make([]byte, KeySize)
	a, _ := NewLocal(k)
	b, _ := NewLocal(k)
	k[0] = 1
	c, _ := NewLocal(k)
	if a.ID() != b.ID() || a.ID() == c.ID() || !strings.HasPrefix(a.ID(), "local:") || len(a.ID()) != len("local:")+16 {
		t.Fatalf("ids %s %s %s", a.ID(), b.ID(), c.ID())
	}
	if _, err := NewLocal(k[:16]); err == nil {
		t.Fatal("16-byte key accepted")
	}
}

// BenchmarkRing measures the cost per job of sealing (split) and opening
// (worker) once the data key is made and cached: no wrap or unwrap happens.
func BenchmarkRing(b *testing.B) {
	kek := newKEK(b)
	producer, consumer := newRing(b, kek), newRing(b, kek)
	warm := sealed(b, producer)
	if err := consumer.Open(b.Context(), &warm); err != nil {
		b.Fatal(err)
	}
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			j := newJob()
			if err := producer.Seal(b.Context(), &j); err != nil {
				b.Fatal(err)
			}
		}
	})
	s := sealed(b, producer)
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			j := s
			if err := consumer.Open(b.Context(), &j); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("seal+open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			j := newJob()
			if err := producer.Seal(b.Context(), &j); err != nil {
				b.Fatal(err)
			}
			if err := consumer.Open(b.Context(), &j); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzRing_Open: whatever a job message's sealed fields hold, Open returns
// an error (ErrUnsealable) or the identity, and never panics.
func FuzzRing_Open(f *testing.F) {
	kek := newKEK(f)
	r := newRing(f, kek)
	j := sealed(f, r)
	f.Add(j.Sealed.KeyID, j.Sealed.DataKey, j.Sealed.Nonce, j.Sealed.Ciphertext)
	f.Add("local:", []byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, kid string, dk, nonce, ct []byte) {
		k := newJob()
		k.Identity = schemas.Identity{}
		k.Sealed = &schemas.SealedIdentity{KeyID: kid, DataKey: dk, Nonce: nonce, Ciphertext: ct}
		if err := r.Open(t.Context(), &k); err != nil && !errors.Is(err, schemas.ErrUnsealable) {
			t.Fatalf("Open = %v, want ErrUnsealable", err)
		}
	})
}

// TestSeal_AnySize: identities of any size open to what was sealed.
func TestSeal_AnySize(t *testing.T) {
	kek := newKEK(t)
	producer, consumer := newRing(t, kek), newRing(t, kek)
	for _, extra := range []int{0, 1, 100, 300, 1000} {
		t.Run(strconv.Itoa(extra), func(t *testing.T) {
			j := newJob()
			if extra > 0 {
				j.Identity.NomUsage = strings.Repeat("A", extra)
			}
			want := j.Identity
			if err := producer.Seal(t.Context(), &j); err != nil {
				t.Fatal(err)
			}
			if err := consumer.Open(t.Context(), &j); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(j.Identity, want) {
				t.Fatalf("opened %+v, want %+v", j.Identity, want)
			}
		})
	}
}
