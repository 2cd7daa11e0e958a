package workers

import (
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	json "github.com/segmentio/encoding/json"

	"github.com/apbatch/apbatch/schemas"
)

// adapter is how one check calls the API and reads its answers.
type adapter struct {
	// route returns the path and query of a job's call.
	route func(j schemas.Job) (string, url.Values)
	// appendQuery, set for the routes called by the thousand, appends
	// route's query, encoded, without building the url.Values; path is
	// then route's (fixed) path.
	appendQuery func(dst []byte, j schemas.Job) []byte
	path        string
	// ping names the provider behind the route for GET /api/{ping}/ping,
	// and keys its circuit breaker.
	ping func(j schemas.Job) string
	// decode reads the data object of a 200 answer into o; false when the
	// answer lacks what the check cannot do without.
	decode func(data json.RawMessage, now time.Time, o *Outcome) bool
	// maintenance is the provider's maintenance windows (Europe/Paris).
	maintenance []Window
}

// dssRoutes are the DSS benefit routes by check.
var dssRoutes = map[schemas.Check]struct{ path, ping string }{
	schemas.CheckC2S:           {"/v3/dss/complementaire_sante_solidaire/identite", "securite_sociale_complementaire_sante_solidaire"},
	schemas.CheckRSA:           {"/v3/dss/revenu_solidarite_active/identite", "cnaf_msa_revenu_solidarite_active"},
	schemas.CheckPrimeActivite: {"/v3/dss/prime_activite/identite", "cnaf_msa_prime_activite"},
	schemas.CheckAAH:           {"/v3/dss/allocation_adulte_handicape/identite", "cnaf_msa_allocation_adulte_handicape"},
	schemas.CheckASF:           {"/v3/dss/allocation_soutien_familial/identite", "cnaf_msa_allocation_soutien_familial"},
	// The ARS ping's name follows the AEEH's (cnav_allocation_enfant_handicape):
	// the operator's pings.yml entry for ARS was not among its stored sources.
	schemas.CheckARS: {"/v3/dss/allocation_rentree_scolaire/identite", "cnav_allocation_rentree_scolaire"},
}

// Paths of the routes besides the DSS ones.
const (
	CNOUSINEPath       = "/v3/cnous/etudiant_boursier/ine"
	CNOUSIdentitePath  = "/v3/cnous/etudiant_boursier/identite"
	MESRIINEPath       = "/v3/mesri/statut_etudiant/ine"
	MESRIIdentitePath  = "/v3/mesri/statut_etudiant/identite"
	FranceTravailPath  = "/v3/france_travail/statut/identifiant"
	ScolaritesPath     = "/v5/men/scolarites/identite"
	menPing            = "men_scolarite"
	franceTravailPing  = "pole_emploi_status"
	cnousPingPrefix    = "cnous_etudiant_boursier_"
	mesriPingPrefix    = "mesri_statut_etudiant_"
	byINE, byCivility  = "ine", "identite"
	menMaintenanceFrom = time.Hour + 10*time.Minute
)

// adapters holds every check's adapter, built once: a job looks its
// adapter up rather than building one.
var adapters = func() map[schemas.Check]adapter {
	m := make(map[schemas.Check]adapter, len(schemas.Checks))
	for _, c := range schemas.Checks {
		if a, ok := newAdapter(c); ok {
			m[c] = a
		}
	}
	return m
}()

// appendTarget appends job's path and encoded query (route's) to dst, and
// returns the path too.
func (a adapter) appendTarget(dst []byte, j schemas.Job) ([]byte, string) {
	if a.appendQuery != nil {
		dst = append(append(dst, a.path...), '?')
		return a.appendQuery(dst, j), a.path
	}
	path, q := a.route(j)
	dst = append(dst, path...)
	if q != nil {
		dst = append(append(dst, '?'), q.Encode()...)
	}
	return dst, path
}

// adapterFor returns the adapter of check, and false for an unknown one.
func adapterFor(check schemas.Check) (adapter, bool) {
	a, ok := adapters[check]
	return a, ok
}

// newAdapter builds the adapter of check.
func newAdapter(check schemas.Check) (adapter, bool) {
	switch check {
	case schemas.CheckQuotientFamilial:
		return adapter{
			route: func(j schemas.Job) (string, url.Values) {
				return QuotientFamilialPath, QueryQuotientFamilial(j.Recipient, j.Period, j.Identity)
			},
			path: QuotientFamilialPath,
			appendQuery: func(dst []byte, j schemas.Job) []byte {
				return appendQuotientFamilialQuery(dst, j.Recipient, j.Period, j.Identity)
			},
			ping:        func(schemas.Job) string { return QuotientFamilialPing },
			decode:      decodeQF,
			maintenance: QuotientFamilialMaintenance(),
		}, true
	case schemas.CheckEtudiantBoursier, schemas.CheckStatutEtudiant:
		ine, civ, prefix, decode := CNOUSINEPath, CNOUSIdentitePath, cnousPingPrefix, decodeCNOUS
		if check == schemas.CheckStatutEtudiant {
			ine, civ, prefix, decode = MESRIINEPath, MESRIIdentitePath, mesriPingPrefix, decodeMESRI
		}
		return adapter{
			route: func(j schemas.Job) (string, url.Values) {
				if j.Identity.INE != "" {
					return ine, url.Values{"recipient": {j.Recipient}, "ine": {j.Identity.INE}}
				}
				return civ, civilityQuery(j.Recipient, j.Identity)
			},
			ping: func(j schemas.Job) string {
				if j.Identity.INE != "" {
					return prefix + byINE
				}
				return prefix + byCivility
			},
			decode: decode,
		}, true
	case schemas.CheckFranceTravail:
		return adapter{
			route: func(j schemas.Job) (string, url.Values) {
				return FranceTravailPath, url.Values{"recipient": {j.Recipient}, "identifiant": {j.Identity.IdentifiantFT}}
			},
			ping:   func(schemas.Job) string { return franceTravailPing },
			decode: decodeFranceTravail,
		}, true
	case schemas.CheckScolarite:
		return adapter{
			route: func(j schemas.Job) (string, url.Values) {
				// The MEN route takes no birth place.
				q := civilityQuery(j.Recipient, j.Identity)
				for _, k := range []string{"codeCogInseeCommuneNaissance", "nomCommuneNaissance", "codeCogInseeDepartementNaissance"} {
					q.Del(k)
				}
				q.Set("codeEtablissement", j.Identity.CodeEtablissement)
				q.Set("anneeScolaire", j.Identity.AnneeScolaire)
				return ScolaritesPath, q
			},
			ping:        func(schemas.Job) string { return menPing },
			decode:      decodeScolarite,
			maintenance: []Window{{From: menMaintenanceFrom, To: 2*time.Hour + 30*time.Minute}},
		}, true
	}
	if r, ok := dssRoutes[check]; ok {
		decode := decodeBenefit
		if check == schemas.CheckARS {
			decode = decodeARS
		}
		return adapter{
			route: func(j schemas.Job) (string, url.Values) {
				return r.path, QueryQuotientFamilial(j.Recipient, schemas.Period{}, j.Identity)
			},
			path: r.path,
			appendQuery: func(dst []byte, j schemas.Job) []byte {
				return appendQuotientFamilialQuery(dst, j.Recipient, schemas.Period{}, j.Identity)
			},
			ping:   func(schemas.Job) string { return r.ping },
			decode: decode,
		}, true
	}
	return adapter{}, false
}

// appendQuotientFamilialQuery appends
// QueryQuotientFamilial(recipient, period, id).Encode() to dst: the same
// parameters, escaped alike, in Encode's order (by key).
func appendQuotientFamilialQuery(dst []byte, recipient string, period schemas.Period, id schemas.Identity) []byte {
	start := len(dst)
	param := func(key, value string) { // key is escaped already
		if len(dst) > start {
			dst = append(dst, '&')
		}
		dst = appendQueryEscape(append(append(dst, key...), '='), value)
	}
	number := func(key string, n int) {
		if len(dst) > start {
			dst = append(dst, '&')
		}
		dst = strconv.AppendInt(append(append(dst, key...), '='), int64(n), 10)
	}
	withPeriod := !period.IsZero()
	birthMonth := id.AnneeNaissance != 0 && id.MoisNaissance != 0
	byTownName := id.CodeCommuneNaissance == "" && id.NomCommuneNaissance != ""
	if withPeriod {
		number("annee", period.Year)
	}
	if id.AnneeNaissance != 0 {
		number("anneeDateNaissance", id.AnneeNaissance)
	}
	if id.CodeCommuneNaissance != "" {
		param("codeCogInseeCommuneNaissance", id.CodeCommuneNaissance)
	}
	if byTownName {
		param("codeCogInseeDepartementNaissance", id.CodeDepartementNaissance)
	}
	param("codeCogInseePaysNaissance", id.CodePaysNaissance)
	if birthMonth && id.JourNaissance != 0 {
		number("jourDateNaissance", id.JourNaissance)
	}
	if withPeriod {
		number("mois", period.Month)
	}
	if birthMonth {
		number("moisDateNaissance", id.MoisNaissance)
	}
	if byTownName {
		param("nomCommuneNaissance", id.NomCommuneNaissance)
	}
	param("nomNaissance", id.NomNaissance)
	if id.NomUsage != "" {
		param("nomUsage", id.NomUsage)
	}
	for _, p := range id.Prenoms {
		param("prenoms%5B%5D", p)
	}
	param("recipient", recipient)
	if id.Sexe != "" {
		param("sexeEtatCivil", id.Sexe)
	}
	return dst
}

// appendQueryEscape appends url.QueryEscape(s) to dst: unreserved bytes
// as they are, spaces as '+', any other byte %XX.
func appendQueryEscape(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			dst = append(dst, c)
		case c == ' ':
			dst = append(dst, '+')
		default:
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		}
	}
	return dst
}

// civilityQuery is the identity pivot of the CNOUS and MESRI routes: as
// the DSS one, without the usage name and the birth country those routes
// do not take (the birth town, by code or name, is optional there).
func civilityQuery(recipient string, id schemas.Identity) url.Values {
	id.NomUsage = ""
	q := QueryQuotientFamilial(recipient, schemas.Period{}, id)
	q.Del("codeCogInseePaysNaissance")
	return q
}

// decodeQF reads the quotient familial: the check has no answer without it.
func decodeQF(data json.RawMessage, _ time.Time, o *Outcome) bool {
	var d struct {
		QuotientFamilial *struct {
			Fournisseur string `json:"fournisseur"`
			Valeur      *int64 `json:"valeur"`
			Annee       *int32 `json:"annee"`
			Mois        *int32 `json:"mois"`
			AnneeCalcul *int32 `json:"annee_calcul"`
			MoisCalcul  *int32 `json:"mois_calcul"`
		} `json:"quotient_familial"`
		Enfants []json.RawMessage `json:"enfants"` // counted only
	}
	if unmarshalShared(data, &d) != nil || d.QuotientFamilial == nil {
		return false
	}
	qf := d.QuotientFamilial
	o.Provider = qf.Fournisseur
	o.QF = &QuotientFamilial{
		Fournisseur: qf.Fournisseur, Valeur: qf.Valeur, Annee: qf.Annee, Mois: qf.Mois,
		AnneeCalcul: qf.AnneeCalcul, MoisCalcul: qf.MoisCalcul, Enfants: int32(len(d.Enfants)),
	}
	return true
}

// decodeBenefit reads a DSS benefit status.
func decodeBenefit(data json.RawMessage, _ time.Time, o *Outcome) bool {
	var d struct {
		EstBeneficiaire   *bool   `json:"est_beneficiaire"`
		AvecParticipation *bool   `json:"avec_participation"`
		AvecMajoration    *bool   `json:"avec_majoration"`
		DateDebutDroit    *string `json:"date_debut_droit"`
	}
	if json.Unmarshal(data, &d) != nil {
		return false
	}
	o.Facts.Beneficiary = d.EstBeneficiaire
	o.Facts.C2SWithParticipation = d.AvecParticipation
	o.Facts.BenefitIncreased = d.AvecMajoration
	o.Facts.BenefitSince = date(d.DateDebutDroit)
	return true
}

// decodeARS reads an allocation de rentrée scolaire status: status is
// "allocataire" (the benefit is paid to the person), "ouvrant_droit" (the
// person, a child, opens the right) or "non_beneficiaire"
// (mocks/payloads/api_particulier_v3_cnav_allocation_rentree_scolaire_with_civility).
// The first two are beneficiaries; another value leaves it unknown.
func decodeARS(data json.RawMessage, _ time.Time, o *Outcome) bool {
	var d struct {
		Status         *string `json:"status"`
		DateDebutDroit *string `json:"date_debut_droit"`
	}
	if json.Unmarshal(data, &d) != nil {
		return false
	}
	if d.Status != nil {
		switch *d.Status {
		case "allocataire", "ouvrant_droit":
			o.Facts.Beneficiary = ptrBool(true)
		case "non_beneficiaire":
			o.Facts.Beneficiary = ptrBool(false)
		}
	}
	o.Facts.BenefitSince = date(d.DateDebutDroit)
	return true
}

func ptrBool(b bool) *bool { return &b }

// decodeCNOUS reads a scholarship status (v3 shape; v4's statut_boursier
// is read too).
func decodeCNOUS(data json.RawMessage, _ time.Time, o *Outcome) bool {
	var d struct {
		EstBoursier    *bool `json:"est_boursier"`
		StatutBoursier *struct {
			EstBoursier *bool `json:"est_boursier"`
		} `json:"statut_boursier"`
		EchelonBourse *struct {
			Echelon json.RawMessage `json:"echelon"`
		} `json:"echelon_bourse"`
		Periode *struct {
			DateRentree *string  `json:"date_rentree"`
			Duree       *float64 `json:"duree"`
		} `json:"periode_versement_bourse"`
	}
	if json.Unmarshal(data, &d) != nil {
		return false
	}
	o.Facts.ScholarshipHolder = d.EstBoursier
	if d.StatutBoursier != nil && d.StatutBoursier.EstBoursier != nil {
		o.Facts.ScholarshipHolder = d.StatutBoursier.EstBoursier
	}
	if d.EchelonBourse != nil {
		o.Facts.ScholarshipLevel = scalar(d.EchelonBourse.Echelon)
	}
	if p := d.Periode; p != nil {
		o.Facts.ScholarshipStart = date(p.DateRentree)
		if p.Duree != nil && *p.Duree >= math.MinInt32 && *p.Duree <= math.MaxInt32 {
			m := int32(*p.Duree)
			o.Facts.ScholarshipMonths = &m
		}
	}
	return true
}

// decodeMESRI reads a student status: enrolled when one admission is an
// enrolment; the regime and establishment are those of the latest
// enrolment (or of the latest admission when none is).
func decodeMESRI(data json.RawMessage, _ time.Time, o *Outcome) bool {
	var d struct {
		Admissions *[]struct {
			DateDebut       string `json:"date_debut"`
			EstInscrit      *bool  `json:"est_inscrit"`
			RegimeFormation *struct {
				Code string `json:"code"`
			} `json:"regime_formation"`
			Etablissement *struct {
				UAI string `json:"uai"`
			} `json:"etablissement_etudes"`
		} `json:"admissions"`
	}
	if json.Unmarshal(data, &d) != nil {
		return false
	}
	if d.Admissions == nil {
		return true // masked by the token's scopes
	}
	adm := *d.Admissions
	best, enrolled, known := -1, false, len(adm) == 0
	for i, a := range adm {
		in := a.EstInscrit != nil && *a.EstInscrit
		known = known || a.EstInscrit != nil
		if best < 0 || (in && !enrolled) || (in == enrolled && a.DateDebut > adm[best].DateDebut) {
			best, enrolled = i, enrolled || in
		}
	}
	if known {
		o.Facts.StudentEnrolled = &enrolled
	}
	if best >= 0 {
		if r := adm[best].RegimeFormation; r != nil {
			o.Facts.StudentRegime = r.Code
		}
		if e := adm[best].Etablissement; e != nil {
			o.Facts.EstablishmentUAI = e.UAI
		}
	}
	return true
}

// decodeFranceTravail reads a jobseeker status: registered when the
// registration has no end date or one not yet past.
func decodeFranceTravail(data json.RawMessage, now time.Time, o *Outcome) bool {
	var d struct {
		Inscription *struct {
			DateDebut *string `json:"date_debut"`
			DateFin   *string `json:"date_fin"`
			Categorie *struct {
				Code json.RawMessage `json:"code"`
			} `json:"categorie"`
		} `json:"inscription"`
	}
	if json.Unmarshal(data, &d) != nil {
		return false
	}
	in := d.Inscription
	if in == nil {
		return true
	}
	end := date(in.DateFin)
	registered := end == "" || end >= now.Format(time.DateOnly)
	o.Facts.JobseekerRegistered = &registered
	o.Facts.JobseekerSince = date(in.DateDebut)
	if in.Categorie != nil {
		if c, err := strconv.ParseInt(scalar(in.Categorie.Code), 10, 32); err == nil {
			c32 := int32(c)
			o.Facts.JobseekerCategory = &c32
		}
	}
	return true
}

// decodeScolarite reads a pupil's status (v3 to v5 shapes).
func decodeScolarite(data json.RawMessage, _ time.Time, o *Outcome) bool {
	var d struct {
		EstScolarise  *bool           `json:"est_scolarise"`
		AnneeScolaire string          `json:"annee_scolaire"`
		EstBoursier   *bool           `json:"est_boursier"`
		Echelon       json.RawMessage `json:"echelon_bourse"`
		StatutEleve   *struct {
			Code json.RawMessage `json:"code"`
		} `json:"statut_eleve"`
		Etablissement *struct {
			CodeUAI string `json:"code_uai"`
		} `json:"etablissement"`
		Pensionnat *struct {
			Code json.RawMessage `json:"code"`
		} `json:"regime_pensionnat"`
	}
	if json.Unmarshal(data, &d) != nil {
		return false
	}
	o.Facts.PupilEnrolled = d.EstScolarise
	o.Facts.SchoolYear = d.AnneeScolaire
	o.Facts.ScholarshipHolder = d.EstBoursier
	o.Facts.ScholarshipLevel = scalar(d.Echelon)
	if d.StatutEleve != nil {
		o.Facts.PupilStatus = scalar(d.StatutEleve.Code)
	}
	if d.Etablissement != nil {
		o.Facts.EstablishmentUAI = d.Etablissement.CodeUAI
	}
	if d.Pensionnat != nil {
		o.Facts.BoardingRegime = scalar(d.Pensionnat.Code)
	}
	return true
}

// scalar returns a JSON string or number as text; "" for null, absent,
// an object or an array (a code is never one: their text could carry
// anything into the results).
func scalar(v json.RawMessage) string {
	s := strings.TrimSpace(string(v))
	if s == "" || s == "null" || s[0] == '{' || s[0] == '[' {
		return ""
	}
	if s[0] == '"' {
		// JSON's escapes, not Go's: "\/" and surrogate pairs included.
		var text string
		if json.Unmarshal(v, &text) != nil {
			return ""
		}
		return text
	}
	return s
}

// date returns a "YYYY-MM-DD" value, or "" when absent, null or not a date
// (the providers' "0000-00-00" included).
func date(s *string) string {
	if s == nil {
		return ""
	}
	if _, err := time.Parse(time.DateOnly, *s); err != nil {
		return ""
	}
	return *s
}
