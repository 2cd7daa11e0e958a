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
