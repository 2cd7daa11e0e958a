package csv

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"github.com/apbatch/apbatch/schemas"
)

// Aliases lists, for every canonical column, the headers it is recognised
// by, as NormalizeHeader writes them: what town halls' software and Excel
// sheets call their columns. The canonical name is always recognised; when
// two headers name one column, the more specific wins (the canonical name,
// then this order: generic words like "nom" come last).
var Aliases = map[string][]string{
	schemas.ColReference:            {"ref", "reference_famille", "reference_dossier", "numero_dossier", "n_dossier", "no_dossier", "code_famille", "id_famille", "identifiant_famille", "n_famille", "numero_famille", "no_famille", "num_famille", "n_foyer", "numero_foyer"},
	schemas.ColNomNaissance:         {"nom_de_naissance", "nom_de_famille", "nom_famille", "nom_patronymique", "nomnaissance", "nom"},
	schemas.ColNomUsage:             {"nom_d_usage", "nom_marital", "nom_d_epouse", "nom_epouse", "nomusage"},
	schemas.ColPrenoms:              {"prenom_s", "prenoms_s", "liste_des_prenoms", "prenom", "premier_prenom"},
	schemas.ColSexe:                 {"sexe_etat_civil", "genre", "civilite"},
	schemas.ColDateNaissance:        {"date_de_naissance", "ne_le", "nee_le", "ne_e_le", "ddn", "datenaissance", "date_naiss", "naissance"},
	schemas.ColPaysNaissance:        {"code_pays_naissance", "pays_naissance", "pays_de_naissance", "code_pays_de_naissance", "code_cog_pays_naissance"},
	schemas.ColCommuneNaissance:     {"code_insee_naissance", "code_commune_naissance", "code_commune_de_naissance", "code_insee_commune_de_naissance", "code_cog_commune_naissance", "insee_naissance", "code_insee_lieu_naissance"},
	schemas.ColNomCommuneNaissance:  {"commune_de_naissance", "lieu_naissance", "lieu_de_naissance", "ville_naissance", "ville_de_naissance", "nom_commune_naissance"},
	schemas.ColDepartementNaissance: {"departement_de_naissance", "dept_naissance", "dep_naissance", "code_departement_naissance"},
	schemas.ColINE:                  {"numero_ine", "n_ine", "no_ine", "code_ine"},
	schemas.ColIdentifiantFT:        {"identifiant_ft", "id_france_travail", "identifiant_pole_emploi", "identifiant_pe"},
	schemas.ColCodeEtablissement:    {"uai", "code_uai", "rne", "code_rne", "uai_etablissement", "code_ecole"},
	schemas.ColAnneeScolaire:        {"annee_scolaire_demandee"},
}

// retiredKeys are the headers of the CAF numéro allocataire and postcode,
// the key of the call the API retired on 31/10/2025.
var retiredKeys = map[string]bool{"numero_allocataire": true, "n_allocataire": true, "no_allocataire": true,
	"num_allocataire": true, "numero_caf": true, "n_caf": true, "matricule_caf": true, "allocataire": true, "numero_d_allocataire": true}

// aliasIndex maps a normalised header to its canonical column.
var aliasIndex = func() map[string]string {
	idx := make(map[string]string)
	for col, as := range Aliases {
		idx[col] = col
		for _, a := range as {
			idx[a] = col
		}
	}
	return idx
}()

// stripMarks removes accents once letters are decomposed.
var stripMarks = runes.Remove(runes.In(unicode.Mn))

// NormalizeHeader folds a header for matching: lower case, no accents, runs
// of anything but letters and digits as one "_", none at the ends
// ("Prénom(s)" → "prenom_s", "NOM DE NAISSANCE" → "nom_de_naissance").
func NormalizeHeader(h string) string {
	s, _, err := transform.String(transform.Chain(norm.NFD, stripMarks, norm.NFC), h)
	if err != nil {
		s = h
	}
	var b strings.Builder
	sep := false
	for _, r := range strings.ToLower(s) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			sep = false
			b.WriteRune(r)
			continue
		}
		sep = true
	}
	return b.String()
}

// CheckColumns checks a tenant's column mapping (canonical column → the
// header its files use): only apbatch's columns, each to a header with a
// letter or digit, and no two on one header (which would name a column at
// random). Messages are in French, for the agents who write mappings.
func CheckColumns(m map[string]string) error {
	cols := make([]string, 0, len(m))
	for c := range m {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	named := map[string]string{} // normalised header → column
	for _, c := range cols {
		if !slices.Contains(schemas.Columns, c) {
			return fmt.Errorf("correspondance de colonnes : « %s » n'est pas une colonne d'apbatch (colonnes : %s)", c, strings.Join(schemas.Columns, ", "))
		}
		key := NormalizeHeader(m[c])
		if key == "" {
			return fmt.Errorf("correspondance de colonnes : « %s » : en-tête « %s » vide", c, m[c])
		}
		if prev, dup := named[key]; dup {
			return fmt.Errorf("correspondance de colonnes : « %s » et « %s » ont le même en-tête « %s » ; gardez-en un", prev, c, m[c])
		}
		named[key] = c
	}
	return nil
}
