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
