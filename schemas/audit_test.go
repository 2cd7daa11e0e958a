package schemas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestIdentityHMAC_SearchKeys(t *testing.T) {
	key := []byte("k")
	civil := Identity{NomNaissance: "MARTIN", Prenoms: []string{"LÉA"}, Sexe: "F"}
	byINE1, byINE2 := Identity{INE: "1234567890A"}, Identity{INE: "1234567890B"}
	byFT := Identity{IdentifiantFT: "1234567890A"}
	hashes := map[string]string{}
	for name, id := range map[string]Identity{"civil": civil, "ine1": byINE1, "ine2": byINE2, "ft": byFT, "empty": {}} {
		h := IdentityHMAC(key, id)
		for other, oh := range hashes {
			if oh == h {
				t.Errorf("%s and %s share a hash", name, other)
			}
		}
		hashes[name] = h
	}
	if IdentityHMAC(key, civil) != IdentityHMAC(key, Identity{NomNaissance: " martin ", Prenoms: []string{"léa"}, Sexe: "f"}) {
		t.Error("the hash depends on case or spaces")
	}
}

func BenchmarkIdentityHMAC(b *testing.B) {
	key := []byte("0123456789abcdef0123456789abcdef")
	id := Identity{NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS", "Gérôme", "JEAN-PHILIPPE"}, Sexe: "F",
		AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}
	b.ReportAllocs()
	for b.Loop() {
		if len(IdentityHMAC(key, id)) != 64 {
			b.Fatal("not a hex SHA-256")
		}
	}
}

// BenchmarkIdentityHasher is BenchmarkIdentityHMAC with the keyed states
// reused, as the worker pool hashes.
func BenchmarkIdentityHasher(b *testing.B) {
	h := NewIdentityHasher([]byte("0123456789abcdef0123456789abcdef"))
	id := Identity{NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS", "Gérôme", "JEAN-PHILIPPE"}, Sexe: "F",
		AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if len(h.Sum(id)) != 64 {
				b.Fatal("not a hex SHA-256")
			}
		}
	})
}

// identityHMACReference is IdentityHMAC as first written: the hashes in
// audit trails already kept must not change.
func identityHMACReference(key []byte, id Identity) string {
	m := hmac.New(sha256.New, key)
	for _, v := range []string{id.NomNaissance, id.NomUsage, strings.Join(id.Prenoms, " "), id.Sexe,
		strconv.Itoa(id.AnneeNaissance), strconv.Itoa(id.MoisNaissance), strconv.Itoa(id.JourNaissance),
		id.CodePaysNaissance, id.CodeCommuneNaissance, id.NomCommuneNaissance, id.CodeDepartementNaissance} {
		m.Write([]byte(strings.ToUpper(strings.TrimSpace(v))))
		m.Write([]byte{0})
	}
	for _, kv := range [][2]string{{"ine", id.INE}, {"identifiant", id.IdentifiantFT}} {
		if kv[1] != "" {
			m.Write([]byte(kv[0] + "=" + strings.ToUpper(strings.TrimSpace(kv[1]))))
			m.Write([]byte{0})
		}
	}
	return hex.EncodeToString(m.Sum(nil))
}

// identityCases are identities whose normalisation has pitfalls: case,
// accents, spaces around and inside first names, ligatures, bytes that are
// not UTF-8, negative and missing numbers, search keys.
var identityCases = []Identity{
	{},
	{NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS", "GÉRÔME", "JEAN-PHILIPPE"}, Sexe: "F", AnneeNaissance: 1982,
		MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"},
	{NomNaissance: " de la fontaine ", NomUsage: "Dürr", Prenoms: []string{" Élodie", "", "marie "}, Sexe: "f",
		AnneeNaissance: -1, CodePaysNaissance: "99350", NomCommuneNaissance: "sedan", CodeDepartementNaissance: "08"},
	{NomNaissance: "straße ǆ ﬁ", Prenoms: []string{"\xff\xfeA", "\u00a0b\u2003"}, Sexe: "\t"},
	{INE: " 1234567890a ", IdentifiantFT: "jdupont"},
	{NomNaissance: "X", Prenoms: []string{"Y"}, IdentifiantFT: "\xc3"},
}

func TestIdentityHMAC_Unchanged(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("k"), []byte(strings.Repeat("long key ", 20))} {
		h := NewIdentityHasher(key)
		for i, id := range identityCases {
			want := identityHMACReference(key, id)
			if got := IdentityHMAC(key, id); got != want {
				t.Errorf("key %q, identity %d: IdentityHMAC = %s, want %s", key, i, got, want)
			}
			for range 2 { // a fresh state, then a reset one
				if got := h.Sum(id); got != want {
					t.Errorf("key %q, identity %d: hasher = %s, want %s", key, i, got, want)
				}
			}
		}
	}
}

func TestIdentityHasher_Concurrent(t *testing.T) {
	key := []byte("0123456789abcdef")
	h := NewIdentityHasher(key)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				id := identityCases[(g+i)%len(identityCases)]
				if got, want := h.Sum(id), identityHMACReference(key, id); got != want {
					t.Errorf("identity %d: %s, want %s", (g+i)%len(identityCases), got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// FuzzIdentityHMAC: whatever the parameters, the hash is the one the
// audit trails already hold.
func FuzzIdentityHMAC(f *testing.F) {
	for _, id := range identityCases {
		f.Add(id.NomNaissance, id.NomUsage, strings.Join(id.Prenoms, "|"), id.Sexe, id.AnneeNaissance, id.INE)
	}
	h := NewIdentityHasher([]byte("fuzz"))
	f.Fuzz(func(t *testing.T, nom, usage, prenoms, sexe string, year int, ine string) {
		id := Identity{NomNaissance: nom, NomUsage: usage, Prenoms: strings.Split(prenoms, "|"), Sexe: sexe,
			AnneeNaissance: year, MoisNaissance: year % 13, CodePaysNaissance: usage, INE: ine, IdentifiantFT: sexe}
		want := identityHMACReference([]byte("fuzz"), id)
		if got := IdentityHMAC([]byte("fuzz"), id); got != want {
			t.Fatalf("IdentityHMAC = %s, want %s", got, want)
		}
		if got := h.Sum(id); got != want {
			t.Fatalf("hasher = %s, want %s", got, want)
		}
	})
}
