package schemas

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
)

// Columns lists the canonical input columns in documentation order.
var Columns = []string{
	ColReference, ColNomNaissance, ColNomUsage, ColPrenoms, ColSexe, ColDateNaissance,
	ColPaysNaissance, ColCommuneNaissance, ColNomCommuneNaissance, ColDepartementNaissance,
}

// CodePaysFrance is the COG code of France, the default birth country.
const CodePaysFrance = "99100"
