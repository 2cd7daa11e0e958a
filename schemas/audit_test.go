package schemas

import "testing"

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
