package sandbox

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// Population is a synthetic population generated deterministically from a
// seed: person i is the same for every run with the same seed, so an input
// file written by WriteCSV and a sandbox serving the same population agree.
// Proportions follow what a town's roster meets: mostly CNAF, some MSA,
// families with 0 to 5 children, people without a dossier (404), people the
// provider cannot identify (422 00355), QF 0 or null, partial birth dates.
type Population struct {
	n     int
	seed  uint64
	index map[uint64]int32
}

// Synthetic outcomes.
const (
	OutcomeCNAF    = "cnaf"
	OutcomeMSA     = "msa"
	OutcomeNoFile  = "404"
	OutcomeUnknown = "422"
	OutcomeQFZero  = "qf0"
	OutcomeQFNull  = "qfnull"
)

// outcomeWeights are per thousand people.
var outcomeWeights = []struct {
	outcome string
	weight  int
}{{OutcomeCNAF, 780}, {OutcomeMSA, 90}, {OutcomeNoFile, 80}, {OutcomeUnknown, 25}, {OutcomeQFZero, 15}, {OutcomeQFNull, 10}}

var (
	surnames = []string{"MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU", "LAURENT",
		"SIMON", "MICHEL", "LEFÈVRE", "LEROY", "ROUX", "DAVID", "BERTRAND", "MOREL", "FOURNIER", "GIRARD", "BONNET", "DUPONT",
		"LAMBERT", "FONTAINE", "ROUSSEAU", "VINCENT", "MULLER", "LEFEBVRE", "FAURE", "ANDRÉ", "MERCIER", "BLANC", "GUÉRIN",
		"BOYER", "GARNIER", "CHEVALIER", "FRANÇOIS", "LEGRAND", "GAUTHIER", "GARCIA", "PERRIN", "ROBIN", "CLÉMENT", "MORIN",
		"NICOLAS", "HENRY", "ROUSSEL", "MATHIEU", "GAUTIER", "MASSON", "MARCHAND", "DUVAL", "DENIS", "DUMONT", "MARIE",
		"LEMAIRE", "NOËL", "MEYER", "DUFOUR", "MEUNIER", "BRUN", "BLANCHARD", "GIRAUD", "JOLY", "RIVIÈRE", "LUCAS", "BRUNET",
		"GAILLARD", "BARBIER", "ARNAUD", "MARTINEZ", "GÉRARD", "ROCHE", "RENARD", "SCHMITT", "ROY", "LEROUX", "COLIN", "VIDAL",
		"CARON", "PICARD", "ROGER", "FABRE", "AUBERT", "LEMOINE", "RENAUD", "DUMAS", "LACROIX", "OLIVIER", "PHILIPPE",
		"BOURGEOIS", "PIERRE", "BENOÎT", "REY", "LECLERC", "PAYET", "ROLLAND", "LECLERCQ", "GUILLAUME", "LECOMTE", "D'ALMEIDA",
		"BEN AMOR", "N'DIAYE", "LE GALL", "DA SILVA"}
	womenNames = []string{"MARIE", "NATHALIE", "ISABELLE", "SYLVIE", "CATHERINE", "SANDRINE", "CÉLINE", "AURÉLIE", "JULIE",
		"CAROLINE", "ÉMILIE", "STÉPHANIE", "CHRISTINE", "LAURE", "CLAIRE", "AMÉLIE", "SOPHIE", "ANNE", "CAMILLE", "ÉLODIE",
		"FATIMA", "AMINATA", "LÉA", "CHLOÉ", "INÈS", "MANON", "JEANNE", "LOUISE", "HÉLÈNE", "AÏCHA"}
	menNames = []string{"JEAN", "PHILIPPE", "MICHEL", "ALAIN", "PATRICK", "NICOLAS", "CHRISTOPHE", "PIERRE", "STÉPHANE",
		"FRÉDÉRIC", "SÉBASTIEN", "DAVID", "JULIEN", "LAURENT", "OLIVIER", "THOMAS", "ÉRIC", "JÉRÔME", "FRANÇOIS", "MAXIME",
		"KARIM", "MAMADOU", "LUCAS", "HUGO", "LOUIS", "GABRIEL", "JEAN-PIERRE", "JEAN-MARC", "MOHAMED", "YANNICK"}
	communes = []string{"75056", "75111", "75118", "13055", "69123", "31555", "06088", "44109", "67482", "34172", "33063",
		"59350", "35238", "51454", "08105", "08480", "2A004", "2B033", "97411", "97105", "76351", "42218", "83137", "38185",
		"21231", "49007", "30189", "63113", "72181", "29019", "37261", "80021", "87085", "57463", "54395", "45234", "14118"}
	foreign = []string{"99350", "99352", "99351", "99139", "99109", "99134", "99127", "99404", "99341", "99336"}
)

// NewPopulation indexes n synthetic people generated from seed.
func NewPopulation(n int, seed uint64) *Population {
	p := &Population{n: n, seed: seed, index: make(map[uint64]int32, n)}
	for i := 0; i < n; i++ {
		k := paramsKey(p.Person(i).Params())
		if _, dup := p.index[k]; !dup {
			p.index[k] = int32(i)
		}
	}
	return p
}

// Len is the number of people.
func (p *Population) Len() int { return p.n }

// Child is a child of a synthetic household.
type Child struct {
	Prenom string
	Sexe   string
	Birth  time.Time
}

// Person is one synthetic person and what the API knows of them.
type Person struct {
	Index        int
	NomNaissance string
	Prenoms      []string
	Sexe         string
	Birth        time.Time
	// DateParts is how much of the birth date the roster carries:
	// 3 (full), 2 (month and year) or 1 (year).
	DateParts int
	Pays      string
	Commune   string // "" when born abroad
	Outcome   string
	QF        int
	Spouse    bool
	Children  []Child
}

// Person returns person i (0 <= i < Len()).
func (p *Population) Person(i int) Person {
	r := rand.New(rand.NewPCG(p.seed, uint64(i)*0x9e3779b97f4a7c15+1))
	pick := func(l []string) string { return l[r.IntN(len(l))] }
	per := Person{Index: i, NomNaissance: pick(surnames)}
	if r.IntN(2) == 0 {
		per.Sexe, per.Prenoms = "F", []string{pick(womenNames)}
	} else {
		per.Sexe, per.Prenoms = "M", []string{pick(menNames)}
	}
	names := womenNames
	if per.Sexe == "M" {
		names = menNames
	}
	for extra := r.IntN(3); extra > 0; extra-- {
		per.Prenoms = append(per.Prenoms, pick(names))
	}
	per.Birth = time.Date(1966+r.IntN(36), time.Month(1+r.IntN(12)), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, r.IntN(28))
	switch d := r.IntN(100); {
	case d < 85:
		per.DateParts = 3
	case d < 95:
		per.DateParts = 2
	default:
		per.DateParts = 1
	}
	if r.IntN(100) < 7 {
		per.Pays = pick(foreign)
	} else {
		per.Pays, per.Commune = "99100", pick(communes)
	}
	w := r.IntN(1000)
	for _, ow := range outcomeWeights {
		if w < ow.weight {
			per.Outcome = ow.outcome
			break
		}
		w -= ow.weight
	}
	// QF: log-normal around 850, from 50 to 4500.
	per.QF = int(math.Min(4500, math.Max(50, 850*math.Exp(0.55*r.NormFloat64()))))
	per.Spouse = r.IntN(100) < 60
	kids := []int{25, 25, 28, 14, 5, 3}
	k := r.IntN(100)
	n := 0
	for n < len(kids)-1 && k >= kids[n] {
		k -= kids[n]
		n++
	}
	for c := 0; c < n; c++ {
		ch := Child{Sexe: "F", Prenom: pick(womenNames)}
		if r.IntN(2) == 0 {
			ch.Sexe, ch.Prenom = "M", pick(menNames)
		}
		ch.Birth = time.Date(2008+r.IntN(18), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
		per.Children = append(per.Children, ch)
	}
	return per
}

// Identity is the person as apbatch reads them from the roster WriteCSV
// writes.
func (per Person) Identity() schemas.Identity {
	id := schemas.Identity{NomNaissance: per.NomNaissance, Prenoms: per.Prenoms, Sexe: per.Sexe,
		AnneeNaissance: per.Birth.Year(), CodePaysNaissance: per.Pays, CodeCommuneNaissance: per.Commune}
	if per.DateParts >= 2 {
		id.MoisNaissance = int(per.Birth.Month())
	}
	if per.DateParts == 3 {
		id.JourNaissance = per.Birth.Day()
	}
	return id
}

// Params is the provider-side parameter set of a request for this person
// built from the roster WriteCSV writes (lower-cased, as matching uses).
func (per Person) Params() map[string][]string {
	q := map[string][]string{
		"nomNaissance":              {strings.ToLower(per.NomNaissance)},
		"sexeEtatCivil":             {strings.ToLower(per.Sexe)},
		"codeCogInseePaysNaissance": {per.Pays},
		"anneeDateNaissance":        {strconv.Itoa(per.Birth.Year())},
	}
	for _, p := range per.Prenoms {
		q["prenoms"] = append(q["prenoms"], strings.ToLower(p))
	}
	if per.DateParts >= 2 {
		q["moisDateNaissance"] = []string{strconv.Itoa(int(per.Birth.Month()))}
	}
	if per.DateParts == 3 {
		q["jourDateNaissance"] = []string{strconv.Itoa(per.Birth.Day())}
	}
	if per.Commune != "" {
		q["codeCogInseeCommuneNaissance"] = []string{strings.ToLower(per.Commune)}
	}
	return q
}

// paramsKey hashes a parameter set, ignoring the QF period.
func paramsKey(q map[string][]string) uint64 {
	keys := make([]string, 0, len(q))
	for k := range q {
		if k != "annee" && k != "mois" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	h := fnv.New64a()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s;", k, strings.Join(q[k], ","))
	}
	return h.Sum64()
}

// Lookup finds the person a request's parameter set designates.
func (p *Population) Lookup(params map[string][]string) (Person, bool) {
	if p == nil {
		return Person{}, false
	}
	i, ok := p.index[paramsKey(params)]
	if !ok {
		return Person{}, false
	}
	return p.Person(int(i)), true
}

// WriteCSV writes the population as an input roster with apbatch's
// canonical columns, one row per person.
func (p *Population) WriteCSV(w io.Writer) error { return p.WriteCSVRange(w, 0, p.n) }

// WriteCSVRange writes people from (included) to to (excluded) as a roster.
func (p *Population) WriteCSVRange(w io.Writer, from, to int) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprintln(bw, "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance")
	for i := max(from, 0); i < min(to, p.n); i++ {
		per := p.Person(i)
		date := per.Birth.Format("2006-01-02")
		switch per.DateParts {
		case 2:
			date = per.Birth.Format("01/2006")
		case 1:
			date = per.Birth.Format("2006")
		}
		fmt.Fprintf(bw, "SYN-%07d;%s;%s;%s;%s;%s;%s\n", i+1, per.NomNaissance, strings.Join(per.Prenoms, " "), per.Sexe, date, per.Pays, per.Commune)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sandbox: write population: %w", err)
	}
	return nil
}

// answerQF builds the QF route's answer for a person, for the period asked
// (annee/mois, default the current month).
func (per Person) answerQF(q map[string][]string, now time.Time) (int, []byte) {
	switch per.Outcome {
	case OutcomeNoFile:
		return http.StatusNotFound, []byte(`{"errors":[{"code":"37003","title":"Dossier allocataire absent CNAV","detail":"Le dossier allocataire n'a pas été trouvé auprès de la CNAV.","meta":{"provider":"CNAV"}}]}`)
	case OutcomeUnknown:
		return http.StatusUnprocessableEntity, []byte(`{"errors":[{"code":"00355","title":"Impossible d'identifier l'allocataire","detail":"Les paramètres fournis ne permettent pas d'identifier un allocataire.","meta":{}}]}`)
	}
	year, month := now.Year(), int(now.Month())
	if v := first(q, "annee"); v != "" {
		year, _ = strconv.Atoi(v)
	}
	if v := first(q, "mois"); v != "" {
		month, _ = strconv.Atoi(v)
	}
	type member struct {
		NomNaissance string  `json:"nom_naissance"`
		NomUsage     *string `json:"nom_usage"`
		Prenoms      string  `json:"prenoms"`
		DateNaiss    string  `json:"date_naissance"`
		Sexe         string  `json:"sexe"`
	}
	allocs := []member{{NomNaissance: per.NomNaissance, Prenoms: strings.Join(per.Prenoms, " "), DateNaiss: per.Birth.Format("2006-01-02"), Sexe: per.Sexe}}
	enfants := []member{}
	for _, c := range per.Children {
		enfants = append(enfants, member{NomNaissance: per.NomNaissance, Prenoms: c.Prenom, DateNaiss: c.Birth.Format("2006-01-02"), Sexe: c.Sexe})
	}
	fournisseur := "CNAF"
	if per.Outcome == OutcomeMSA {
		fournisseur = "MSA"
	}
	var valeur *int
	switch per.Outcome {
	case OutcomeQFZero:
		zero := 0
		valeur = &zero
	case OutcomeQFNull:
	default:
		v := per.QF
		valeur = &v
	}
	civ := "Madame"
	if per.Sexe == "M" {
		civ = "Monsieur"
	}
	body := map[string]any{
		"data": map[string]any{
			"allocataires": allocs,
			"enfants":      enfants,
			"adresse": map[string]any{
				"destinataire": civ + " " + per.NomNaissance + " " + strings.Join(per.Prenoms, " "), "complement_information": nil,
				"complement_information_geographique": nil, "numero_libelle_voie": "1 RUE DE LA MAIRIE", "lieu_dit": nil,
				"code_postal_ville": "08000 CHARLEVILLE-MEZIERES", "pays": "FRANCE",
			},
			"quotient_familial": map[string]any{
				"fournisseur": fournisseur, "valeur": valeur, "annee": year, "mois": month,
				"annee_calcul": now.Year(), "mois_calcul": int(now.Month()),
			},
		},
		"links": map[string]any{},
		"meta":  map[string]any{},
	}
	b, err := json.Marshal(body)
	if err != nil {
		return http.StatusInternalServerError, []byte(`{"errors":[]}`)
	}
	return http.StatusOK, b
}

// dssNotFound is the 404 of DSS routes, as the sandbox cases write it.
const dssNotFound = `{"errors":[{"code":"37003","title":"Dossier allocataire absent CNAV","detail":"Le dossier allocataire n'a pas été trouvé auprès de la CNAV.","meta":{"provider":"CNAV"}}]}`

// benefitRates are, per thousand people with a dossier, how many receive
// each benefit.
var benefitRates = map[string]int{
	"complementaire_sante_solidaire": 150, "revenu_solidarite_active": 80, "prime_activite": 120,
	"allocation_adulte_handicape": 30, "allocation_soutien_familial": 40,
}

// answerStatus builds a DSS benefit route's answer for a person.
func (per Person) answerStatus(route string, now time.Time) (int, []byte) {
	switch per.Outcome {
	case OutcomeNoFile:
		return http.StatusNotFound, []byte(dssNotFound)
	case OutcomeUnknown:
		return http.StatusUnprocessableEntity, []byte(`{"errors":[{"code":"00355","title":"Impossible d'identifier l'allocataire","detail":"Les paramètres fournis ne permettent pas d'identifier un allocataire.","meta":{}}]}`)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", route, per.Index)
	v := h.Sum64()
	beneficiary := int(v%1000) < benefitRates[route]
	data := map[string]any{"est_beneficiaire": beneficiary, "date_debut_droit": nil}
	if beneficiary {
		data["date_debut_droit"] = now.AddDate(0, -int(v>>10%60)-1, 0).Format("2006-01") + "-01"
	}
	flag := func(name string) {
		if beneficiary {
			data[name] = v>>20%3 == 0
		} else {
			data[name] = nil
		}
	}
	switch route {
	case "complementaire_sante_solidaire":
		flag("avec_participation")
	case "revenu_solidarite_active", "prime_activite":
		flag("avec_majoration")
	}
	b, err := json.Marshal(map[string]any{"data": data, "links": map[string]any{}, "meta": map[string]any{}})
	if err != nil {
		return http.StatusInternalServerError, []byte(`{"errors":[]}`)
	}
	return http.StatusOK, b
}
