package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
)

// lookupIDReference is LookupID as first written (a hash.Hash fed field by
// field): the ids of past batches, which the faster LookupID must keep.
func lookupIDReference(check Check, period Period, id Identity) string {
	h := sha256.New()
	w := func(k, v string) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(strings.ToUpper(strings.TrimSpace(v))))
		h.Write([]byte{0})
	}
	w("check", string(check))
	w("period", period.String())
	w("nomNaissance", id.NomNaissance)
	w("nomUsage", id.NomUsage)
	for _, p := range id.Prenoms {
		w("prenoms[]", p)
	}
	w("sexe", id.Sexe)
	w("annee", strconv.Itoa(id.AnneeNaissance))
	w("mois", strconv.Itoa(id.MoisNaissance))
	w("jour", strconv.Itoa(id.JourNaissance))
	w("pays", id.CodePaysNaissance)
	w("commune", id.CodeCommuneNaissance)
	w("nomCommune", id.NomCommuneNaissance)
	w("departement", id.CodeDepartementNaissance)
	for _, kv := range [][2]string{{"ine", id.INE}, {"identifiant", id.IdentifiantFT},
		{"codeEtablissement", id.CodeEtablissement}, {"anneeScolaire", id.AnneeScolaire}} {
		if kv[1] != "" {
			w(kv[0], kv[1])
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func TestLookupID_SameAsReference(t *testing.T) {
	long := strings.Repeat("Dupont-Lajoie ", 60) // beyond the stack buffer
	ids := []Identity{
		{},
		{NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS"}, Sexe: "F", AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"},
		{NomNaissance: " lefebvre ", NomUsage: "Martin", Prenoms: []string{"léa", "Chloé", "ß"}, Sexe: "f", AnneeNaissance: -3, CodePaysNaissance: "99350",
			NomCommuneNaissance: "Charleville-Mézières", CodeDepartementNaissance: "08"},
		{INE: "123456789ab", IdentifiantFT: "jdupont", CodeEtablissement: "0751234a", AnneeScolaire: "2026-2027", NomNaissance: long, Prenoms: []string{long}},
		{NomNaissance: "\xff\xfe", Prenoms: []string{"\u00a0x\u00a0"}},
	}
	periods := []Period{{}, {Year: 2026, Month: 9}, {Year: 2026, Month: 12}, {Year: 5, Month: -1}}
	for _, c := range []Check{CheckQuotientFamilial, CheckScolarite, ""} {
		for _, p := range periods {
			for i, id := range ids {
				if got, want := LookupID(c, p, id), lookupIDReference(c, p, id); got != want {
					t.Errorf("%s %v identity %d: %s, want %s", c, p, i, got, want)
				}
			}
		}
	}
}

func FuzzLookupID(f *testing.F) {
	f.Add("LEFEBVRE", "alexis", "F", 1982, 2026, 9)
	f.Fuzz(func(t *testing.T, nom, prenom, sexe string, annee, y, m int) {
		id := Identity{NomNaissance: nom, Prenoms: []string{prenom, nom}, Sexe: sexe, AnneeNaissance: annee, INE: prenom}
		p := Period{Year: y, Month: m}
		if got, want := LookupID(CheckQuotientFamilial, p, id), lookupIDReference(CheckQuotientFamilial, p, id); got != want {
			t.Fatalf("%s, want %s", got, want)
		}
	})
}

func BenchmarkLookupID(b *testing.B) {
	id := Identity{NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS", "MARIE"}, Sexe: "F", AnneeNaissance: 1982, MoisNaissance: 12,
		JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}
	b.ReportAllocs()
	for b.Loop() {
		LookupID(CheckQuotientFamilial, Period{Year: 2026, Month: 9}, id)
	}
}

// periodStringRef is how Period.String was written before appendTo.
func periodStringRef(p Period) string {
	if p.IsZero() {
		return ""
	}
	pad2 := func(n int) string {
		if n < 10 {
			return "0" + strconv.Itoa(n)
		}
		return strconv.Itoa(n)
	}
	return strconv.Itoa(p.Year) + "-" + pad2(p.Month)
}

func FuzzPeriodString(f *testing.F) {
	for _, p := range []Period{{}, {Year: 2026, Month: 9}, {Year: 2026, Month: 12}, {Year: 5, Month: -1}, {Month: 3}, {Year: -2026, Month: -12}} {
		f.Add(p.Year, p.Month)
	}
	f.Fuzz(func(t *testing.T, y, m int) {
		p := Period{Year: y, Month: m}
		if got, want := p.String(), periodStringRef(p); got != want {
			t.Fatalf("Period%+v.String() = %q, want %q", p, got, want)
		}
	})
}
