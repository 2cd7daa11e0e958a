package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Identity is the normalised identity pivot of one person, as the v3
// "/identite" routes expect it, plus the other keys some routes search by
// (INE, France Travail username, school). Zero values mean "not given". It is personal
// data: it travels only inside job messages, never in keys, headers, logs or
// metrics.
type Identity struct {
	// NomNaissance is the birth name (API: nomNaissance), accents kept.
	NomNaissance string `json:"nom_naissance"`
	// NomUsage is the usage name (API: nomUsage), optional.
	NomUsage string `json:"nom_usage,omitempty"`
	// Prenoms are the first names, 1 to 3 (API: prenoms[] repeated).
	Prenoms []string `json:"prenoms"`
	// Sexe is "M" or "F" (API: sexeEtatCivil).
	Sexe string `json:"sexe"`
	// AnneeNaissance, MoisNaissance and JourNaissance are the birth date
	// parts (API: anneeDateNaissance, moisDateNaissance, jourDateNaissance);
	// a part is only meaningful when the parts before it are set.
	AnneeNaissance int `json:"annee_naissance,omitempty"`
	MoisNaissance  int `json:"mois_naissance,omitempty"`
	JourNaissance  int `json:"jour_naissance,omitempty"`
	// CodePaysNaissance is the COG code of the birth country, "99100" for
	// France (API: codeCogInseePaysNaissance).
	CodePaysNaissance string `json:"code_pays_naissance"`
	// CodeCommuneNaissance is the COG code of the birth town for people born
	// in France (API: codeCogInseeCommuneNaissance).
	CodeCommuneNaissance string `json:"code_commune_naissance,omitempty"`
	// NomCommuneNaissance and CodeDepartementNaissance are the alternative
	// to CodeCommuneNaissance (API: nomCommuneNaissance,
	// codeCogInseeDepartementNaissance).
	NomCommuneNaissance      string `json:"nom_commune_naissance,omitempty"`
	CodeDepartementNaissance string `json:"code_departement_naissance,omitempty"`

	// INE is the student's national identifier; when set, the student
	// checks search by it alone (API: ine).
	INE string `json:"ine,omitempty"`
	// IdentifiantFT is the France Travail username (API: identifiant).
	IdentifiantFT string `json:"identifiant_france_travail,omitempty"`
	// CodeEtablissement (UAI) and AnneeScolaire ("2026-2027") are the
	// scolarite check's search perimeter (API: codeEtablissement,
	// anneeScolaire).
	CodeEtablissement string `json:"code_etablissement,omitempty"`
	AnneeScolaire     string `json:"annee_scolaire,omitempty"`
}

// Period is the month a quotient familial is asked for. The zero value means
// "not given": the API then answers for the current month.
type Period struct {
	Year  int `json:"annee,omitempty"`
	Month int `json:"mois,omitempty"`
}

// IsZero reports whether no period was given.
func (p Period) IsZero() bool { return p.Year == 0 && p.Month == 0 }

// String returns "YYYY-MM", or "" for the zero period.
func (p Period) String() string {
	if p.IsZero() {
		return ""
	}
	var arr [24]byte
	return string(p.appendTo(arr[:0]))
}

// appendTo appends "YYYY-MM" (the month on two digits at least).
func (p Period) appendTo(b []byte) []byte {
	b = strconv.AppendInt(b, int64(p.Year), 10)
	b = append(b, '-')
	if p.Month < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, int64(p.Month), 10)
}

// LookupID is the identity of one provider call: a hash of the check, the
// period and the normalised parameters. Rows with the same LookupID share one
// call. The hash reveals nothing usable about the person without the inputs,
// but it is still treated as internal (never logged with a tenant's roster).
func LookupID(check Check, period Period, id Identity) string {
	k := LookupKey(check, period, &id)
	return hex.EncodeToString(k[:])
}

// LookupKey is LookupID before its hex encoding: 16 bytes, the key a map of
// lookups holds for less than the string.
func LookupKey(check Check, period Period, id *Identity) [16]byte {
	// The hashed text: for each parameter, its name, NUL, its value trimmed
	// and upper-cased, NUL.
	var arr [512]byte
	b := arr[:0]
	w := func(k, v string) {
		b = append(b, k...)
		b = append(b, 0)
		b = appendUpper(b, strings.TrimSpace(v))
		b = append(b, 0)
	}
	w("check", string(check))
	b = append(b, "period\x00"...)
	if !period.IsZero() {
		b = period.appendTo(b)
	}
	b = append(b, 0)
	w("nomNaissance", id.NomNaissance)
	w("nomUsage", id.NomUsage)
	for _, p := range id.Prenoms {
		w("prenoms[]", p)
	}
	w("sexe", id.Sexe)
	for _, kv := range [3]struct {
		k string
		v int
	}{{"annee", id.AnneeNaissance}, {"mois", id.MoisNaissance}, {"jour", id.JourNaissance}} {
		b = append(b, kv.k...)
		b = append(b, 0)
		b = strconv.AppendInt(b, int64(kv.v), 10)
		b = append(b, 0)
	}
	w("pays", id.CodePaysNaissance)
	w("commune", id.CodeCommuneNaissance)
	w("nomCommune", id.NomCommuneNaissance)
	w("departement", id.CodeDepartementNaissance)
	// Keys added with the checks beyond the quotient familial are hashed
	// only when set, so that quotient familial lookups keep their ids.
	for _, kv := range [4][2]string{{"ine", id.INE}, {"identifiant", id.IdentifiantFT},
		{"codeEtablissement", id.CodeEtablissement}, {"anneeScolaire", id.AnneeScolaire}} {
		if kv[1] != "" {
			w(kv[0], kv[1])
		}
	}
	sum := sha256.Sum256(b)
	return [16]byte(sum[:16])
}

// appendUpper appends strings.ToUpper(s), without its allocation when s is
// ASCII.
func appendUpper(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return append(b, strings.ToUpper(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}
