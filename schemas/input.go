package schemas

import "slices"

// Canonical input columns. An input file names them in its header row (in any
// order); unknown columns are ignored.
const (
	ColReference            = "reference"
	ColNomNaissance         = "nom_naissance"
	ColNomUsage             = "nom_usage"
	ColPrenoms              = "prenoms"
	ColSexe                 = "sexe"
	ColDateNaissance        = "date_naissance"
	ColPaysNaissance        = "code_insee_pays_naissance"
	ColCommuneNaissance     = "code_insee_commune_naissance"
	ColNomCommuneNaissance  = "commune_naissance"
	ColDepartementNaissance = "departement_naissance"
	// ColINE is the student's national identifier (INE), which the
	// student checks use instead of the civil identity when given.
	ColINE = "ine"
	// ColIdentifiantFT is the France Travail online-account username.
	ColIdentifiantFT = "identifiant_france_travail"
	// ColCodeEtablissement is the pupil's school (UAI), for scolarite.
	ColCodeEtablissement = "code_etablissement"
	// ColAnneeScolaire is the school year (AAAA-AAAA) for scolarite;
	// default: the school year of the day the batch runs.
	ColAnneeScolaire = "annee_scolaire"
)

// Columns lists the canonical input columns in documentation order.
var Columns = []string{
	ColReference, ColNomNaissance, ColNomUsage, ColPrenoms, ColSexe, ColDateNaissance,
	ColPaysNaissance, ColCommuneNaissance, ColNomCommuneNaissance, ColDepartementNaissance,
	ColINE, ColIdentifiantFT, ColCodeEtablissement, ColAnneeScolaire,
}

// CodePaysFrance is the COG code of France, the default birth country.
const CodePaysFrance = "99100"

// Fields holds one row's raw values by canonical column, each at its
// column's place in Columns (FieldIndex); a column the file lacks is "".
// Parsing a row from it costs no map lookup.
type Fields [numColumns]string

// Places of the canonical columns in Columns, and so in Fields.
const (
	iReference = iota
	iNomNaissance
	iNomUsage
	iPrenoms
	iSexe
	iDateNaissance
	iPaysNaissance
	iCommuneNaissance
	iNomCommuneNaissance
	iDepartementNaissance
	iINE
	iIdentifiantFT
	iCodeEtablissement
	iAnneeScolaire
	numColumns
)

// FieldIndex returns column's place in Fields, or -1 when column is not a
// canonical column.
func FieldIndex(column string) int { return slices.Index(Columns, column) }

// fieldsOf places the canonical columns of m in Fields (the other keys are
// ignored).
func fieldsOf(m map[string]string) *Fields {
	var f Fields
	for i, c := range Columns {
		f[i] = m[c]
	}
	return &f
}
