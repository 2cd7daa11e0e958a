package sandbox

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// Population is a synthetic population generated deterministically from a
// seed: person i is the same for every run with the same seed, so an input
// file written by WriteCSV and a sandbox serving the same population agree.
// Proportions follow what a town's roster meets: mostly CNAF, some MSA,
// families with 0 to 5 children, people without a dossier (404), people the
// provider cannot identify (422 XX560, as the API answers since 2026-08-26:
// 35560 on the QF route, 36560 on the other DSS routes), QF 0 or null,
// partial birth dates.
type Population struct {
	n    int
	seed uint64
	// index maps an identity key to 8×person + 0 for the person, or
	// + 1 to 5 for one of their children.
	index map[uint64]int64

	mu      sync.RWMutex
	changes map[int]Change // by person
}

// Change is what the sources say of a person now, in place of what the seed
// generated: data moving between two campaigns, to rehearse a refresh. The
// person's identity does not change.
type Change struct {
	// QF, when set, is the person's quotient familial now.
	QF *int `json:"qf,omitempty"`
	// Outcome, when set, is the person's outcome now, e.g. OutcomeNoFile
	// for a dossier closed since.
	Outcome string `json:"outcome,omitempty"`
}

// Amend records a change of person i; later answers about them follow it.
// A second change of the same person replaces the first. Safe for
// concurrent use with the server's answers.
func (p *Population) Amend(i int, c Change) error {
	if i < 0 || i >= p.n {
		return fmt.Errorf("sandbox: person %d: the population has %d people", i, p.n)
	}
	known := c.Outcome == ""
	for _, ow := range outcomeWeights {
		known = known || ow.outcome == c.Outcome
	}
	if !known {
		return fmt.Errorf("sandbox: outcome %q: want cnaf, msa, 404, 422, qf0 or qfnull", c.Outcome)
	}
	if c.QF != nil && *c.QF < 0 {
		return fmt.Errorf("sandbox: QF %d must not be negative", *c.QF)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changes == nil {
		p.changes = make(map[int]Change)
	}
	p.changes[i] = c
	return nil
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
	p := &Population{n: n, seed: seed, index: make(map[uint64]int64, 2*n)}
	add := func(k uint64, v int64) {
		if _, dup := p.index[k]; !dup {
			p.index[k] = v
		}
	}
	for i := 0; i < n; i++ {
		per := p.Person(i)
		add(per.key(), int64(i)*8)
		for c := range per.Children {
			add(per.childKey(c), int64(i)*8+int64(c)+1)
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
	per.Prenoms = make([]string, 1, 3)
	if r.IntN(2) == 0 {
		per.Sexe, per.Prenoms[0] = "F", pick(womenNames)
	} else {
		per.Sexe, per.Prenoms[0] = "M", pick(menNames)
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
	if n > 0 {
		per.Children = make([]Child, 0, n)
	}
	for c := 0; c < n; c++ {
		ch := Child{Sexe: "F", Prenom: pick(womenNames)}
		if r.IntN(2) == 0 {
			ch.Sexe, ch.Prenom = "M", pick(menNames)
		}
		ch.Birth = time.Date(2008+r.IntN(18), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
		per.Children = append(per.Children, ch)
	}
	p.mu.RLock()
	c, changed := p.changes[i]
	p.mu.RUnlock()
	if changed {
		if c.QF != nil {
			per.QF = *c.QF
		}
		if c.Outcome != "" {
			per.Outcome = c.Outcome
		}
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

// keyParams are the parameters that designate a synthetic person: every
// route takes them (the birth place and the other search keys are not
// taken by every route), the first first name only (MESRI takes one).
var keyParams = []string{"nomNaissance", "sexeEtatCivil", "anneeDateNaissance", "moisDateNaissance", "jourDateNaissance"}

// key is paramsKey(per.Params()).
func (per Person) key() uint64 {
	return identityKey(per.NomNaissance, per.Sexe, per.Prenoms[0], per.Birth, per.DateParts)
}

// childKey is paramsKey(per.ChildParams(c)).
func (per Person) childKey(c int) uint64 {
	ch := per.Children[c]
	return identityKey(per.NomNaissance, ch.Sexe, ch.Prenom, ch.Birth, 3)
}

// Lookup finds the person a request's parameter set designates. Children
// are found by Pupil, not here: they have no benefits file of their own.
func (p *Population) Lookup(params map[string][]string) (Person, bool) {
	if p == nil {
		return Person{}, false
	}
	v, ok := p.index[paramsKey(params)]
	if !ok || v%8 != 0 {
		return Person{}, false
	}
	return p.Person(int(v / 8)), true
}

// Pupil finds the child a request's parameter set designates, with their
// parent.
func (p *Population) Pupil(params map[string][]string) (Person, int, bool) {
	if p == nil {
		return Person{}, 0, false
	}
	v, ok := p.index[paramsKey(params)]
	if !ok || v%8 == 0 {
		return Person{}, 0, false
	}
	return p.Person(int(v / 8)), int(v%8) - 1, true
}

// ChildParams is the parameter set of a request for child c of per, as a
// pupils roster written by WriteChildrenCSV makes it.
func (per Person) ChildParams(c int) map[string][]string {
	ch := per.Children[c]
	return map[string][]string{
		"nomNaissance":       {strings.ToLower(per.NomNaissance)},
		"prenoms":            {strings.ToLower(ch.Prenom)},
		"sexeEtatCivil":      {strings.ToLower(ch.Sexe)},
		"anneeDateNaissance": {strconv.Itoa(ch.Birth.Year())},
		"moisDateNaissance":  {strconv.Itoa(int(ch.Birth.Month()))},
		"jourDateNaissance":  {strconv.Itoa(ch.Birth.Day())},
	}
}

// School is the UAI of the school child c of per attends in the synthetic
// world (a town's few schools).
func (per Person) School(c int) string {
	return schools[(per.Index+c)%len(schools)]
}

var schools = []string{"0080001A", "0080002B", "0080003C", "0080004D", "0751234A"}

// WriteCSV writes the population as an input roster with apbatch's
// canonical columns, one row per person.
func (p *Population) WriteCSV(w io.Writer) error { return p.WriteCSVRange(w, 0, p.n) }

// WriteCSVRange writes people from (included) to to (excluded) as a roster.
func (p *Population) WriteCSVRange(w io.Writer, from, to int) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprintln(bw, "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance")
	line := make([]byte, 0, 256)
	for i := max(from, 0); i < min(to, p.n); i++ {
		per := p.Person(i)
		layout := "2006-01-02"
		switch per.DateParts {
		case 2:
			layout = "01/2006"
		case 1:
			layout = "2006"
		}
		line = appendReference(line[:0], i+1)
		line = append(append(line, ';'), per.NomNaissance...)
		line = append(line, ';')
		for j, prenom := range per.Prenoms {
			if j > 0 {
				line = append(line, ' ')
			}
			line = append(line, prenom...)
		}
		line = append(append(line, ';'), per.Sexe...)
		line = per.Birth.AppendFormat(append(line, ';'), layout)
		line = append(append(line, ';'), per.Pays...)
		line = append(append(line, ';'), per.Commune...)
		bw.Write(append(line, '\n'))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sandbox: write population: %w", err)
	}
	return nil
}

// appendReference appends a synthetic roster reference: "SYN-" and n on
// at least 7 digits, zero-padded.
func appendReference(b []byte, n int) []byte {
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], int64(n), 10)
	b = append(b, "SYN-"...)
	for pad := 7 - len(d); pad > 0; pad-- {
		b = append(b, '0')
	}
	return append(b, d...)
}

// answerQF builds the QF route's answer for a person, for the period asked
// (annee/mois, default the current month).
func (per Person) answerQF(q map[string][]string, now time.Time) (int, []byte) {
	switch per.Outcome {
	case OutcomeNoFile:
		return http.StatusNotFound, []byte(`{"errors":[{"code":"37003","title":"Dossier allocataire absent CNAV","detail":"Le dossier allocataire n'a pas été trouvé auprès de la CNAV.","meta":{"provider":"CNAV"}}]}`)
	case OutcomeUnknown:
		return http.StatusUnprocessableEntity, []byte(`{"errors":[{"code":"35560","title":"Identité non reconnue par le fournisseur de données","detail":"Les paramètres d'identité fournis ne correspondent à aucune personne connue du fournisseur de données.","meta":{"provider":"CNAF & MSA"}}]}`)
	}
	year, month := now.Year(), int(now.Month())
	if v := first(q, "annee"); v != "" {
		year, _ = strconv.Atoi(v)
	}
	if v := first(q, "mois"); v != "" {
		month, _ = strconv.Atoi(v)
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
	// Keys in sorted order, as json.Marshal writes a map's. The answer
	// takes about 600 bytes and 110 more per child.
	b := make([]byte, 0, 640+128*len(per.Children))
	b = append(b, `{"data":{"adresse":{"code_postal_ville":"08000 CHARLEVILLE-MEZIERES","complement_information":null,`+
		`"complement_information_geographique":null,"destinataire":"`...)
	b = append(b, civ...)
	b = append(b, ' ')
	b = appendJSONText(b, per.NomNaissance)
	b = append(b, ' ')
	b = appendJSONNames(b, per.Prenoms)
	b = append(b, `","lieu_dit":null,"numero_libelle_voie":"1 RUE DE LA MAIRIE","pays":"FRANCE"},"allocataires":[`...)
	b = appendQFMember(b, per.NomNaissance, per.Prenoms, per.Birth, per.Sexe)
	b = append(b, `],"enfants":[`...)
	for i, c := range per.Children {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendQFMember(b, per.NomNaissance, []string{c.Prenom}, c.Birth, c.Sexe)
	}
	b = append(b, `],"quotient_familial":{"annee":`...)
	b = strconv.AppendInt(b, int64(year), 10)
	b = append(b, `,"annee_calcul":`...)
	b = strconv.AppendInt(b, int64(now.Year()), 10)
	b = append(b, `,"fournisseur":"`...)
	b = append(b, fournisseur...)
	b = append(b, `","mois":`...)
	b = strconv.AppendInt(b, int64(month), 10)
	b = append(b, `,"mois_calcul":`...)
	b = strconv.AppendInt(b, int64(now.Month()), 10)
	b = append(b, `,"valeur":`...)
	b = appendJSONNullableInt(b, valeur)
	return http.StatusOK, append(b, `}},"links":{},"meta":{}}`...)
}

// appendQFMember appends one allocataire or enfant of a QF answer, its
// fields in the order of the API's serializer.
func appendQFMember(b []byte, nom string, prenoms []string, birth time.Time, sexe string) []byte {
	b = append(b, `{"nom_naissance":`...)
	b = appendJSONString(b, nom)
	b = append(b, `,"nom_usage":null,"prenoms":"`...)
	b = appendJSONNames(b, prenoms)
	b = append(b, `","date_naissance":`...)
	b = appendJSONDate(b, birth)
	b = append(b, `,"sexe":`...)
	b = appendJSONString(b, sexe)
	return append(b, '}')
}

// appendJSONNames appends first names joined by spaces, escaped.
func appendJSONNames(b []byte, names []string) []byte {
	for i, n := range names {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendJSONText(b, n)
	}
	return b
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
		return http.StatusUnprocessableEntity, []byte(`{"errors":[{"code":"36560","title":"Identité non reconnue par le fournisseur de données","detail":"Les paramètres d'identité fournis ne correspondent à aucune personne connue du fournisseur de données.","meta":{"provider":"Sécurité sociale"}}]}`)
	}
	h := newFNV64a()
	h.writeString(route)
	h.writeString("/")
	h.writeInt(per.Index)
	v := uint64(h)
	beneficiary := int(v%1000) < benefitRates[route]
	// Keys in sorted order, as json.Marshal writes a map's.
	b := make([]byte, 0, 160)
	b = append(b, `{"data":{`...)
	switch route {
	case "complementaire_sante_solidaire":
		b = appendBenefitFlag(b, "avec_participation", beneficiary, v)
	case "revenu_solidarite_active", "prime_activite":
		b = appendBenefitFlag(b, "avec_majoration", beneficiary, v)
	}
	b = append(b, `"date_debut_droit":`...)
	if beneficiary {
		b = append(b, '"')
		b = now.AddDate(0, -int(v>>10%60)-1, 0).AppendFormat(b, "2006-01")
		b = append(b, `-01"`...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"est_beneficiaire":`...)
	b = strconv.AppendBool(b, beneficiary)
	return http.StatusOK, append(b, `},"links":{},"meta":{}}`...)
}

// appendBenefitFlag appends a benefit's flag key and value, and a comma:
// null for a person who does not receive it.
func appendBenefitFlag(b []byte, name string, beneficiary bool, v uint64) []byte {
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `":`...)
	if beneficiary {
		b = strconv.AppendBool(b, v>>20%3 == 0)
	} else {
		b = append(b, "null"...)
	}
	return append(b, ',')
}

// WriteChildrenCSV writes the children of people from (included) to to
// (excluded) as a pupils roster for the scolarite check: one row per child,
// with the school they attend.
func (p *Population) WriteChildrenCSV(w io.Writer, from, to int) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprintln(bw, "reference;nom_naissance;prenoms;sexe;date_naissance;code_etablissement")
	line := make([]byte, 0, 128)
	for i := max(from, 0); i < min(to, p.n); i++ {
		per := p.Person(i)
		for c, ch := range per.Children {
			line = appendReference(line[:0], i+1)
			line = strconv.AppendInt(append(line, '-'), int64(c+1), 10)
			line = append(append(line, ';'), per.NomNaissance...)
			line = append(append(line, ';'), ch.Prenom...)
			line = append(append(line, ';'), ch.Sexe...)
			line = ch.Birth.AppendFormat(append(line, ';'), "2006-01-02")
			line = append(append(line, ';'), per.School(c)...)
			bw.Write(append(line, '\n'))
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sandbox: write pupils: %w", err)
	}
	return nil
}

// Pupil outcomes, per thousand children of school age.
const (
	pupilUnknownRate     = 40 // 404 30003: not in the schools' base
	pupilNotEnrolledRate = 20 // 404 30004: known, not enrolled this year
	pupilBoursierRate    = 120
)

// menNotEnrolled is the MEN answer for a pupil known but not enrolled.
const menNotEnrolled = `{"errors":[{"code":"30004","title":"Scolarité non trouvée","detail":"Aucune scolarité n'a pu être trouvée pour l'élève avec les critères de recherche fournis.","meta":{"provider":"MEN"}}]}`

// answerScolarite builds the MEN scolarités answer (API version v) for
// child c of per: children outside school age (3 to 18 at the start of the
// school year asked) are unknown, as a few others are.
func (per Person) answerScolarite(c, v int, q map[string][]string) (int, []byte) {
	ch := per.Children[c]
	year := first(q, "anneeScolaire")
	start, _ := strconv.Atoi(year[:4])
	age := start - ch.Birth.Year()
	h := newFNV64a()
	h.writeString("men/")
	h.writeInt(per.Index)
	h.writeString("/")
	h.writeInt(c)
	x := uint64(h)
	switch r := int(x % 1000); {
	case age < 3 || age > 18 || r < pupilUnknownRate:
		return http.StatusNotFound, []byte(menNotFound)
	case r < pupilUnknownRate+pupilNotEnrolledRate:
		return http.StatusNotFound, []byte(menNotEnrolled)
	}
	if len(year) == 4 {
		year += "-" + strconv.Itoa(start+1)
	}
	boursier := int(x>>10%1000) < pupilBoursierRate
	// Keys in sorted order, as json.Marshal writes a map's.
	b := make([]byte, 0, 640)
	b = append(b, `{"data":{"annee_scolaire":`...)
	b = appendJSONString(b, year)
	b = append(b, `,"echelon_bourse":`...)
	if boursier {
		b = strconv.AppendInt(b, int64(x>>20%6)+1, 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"est_boursier":`...)
	b = strconv.AppendBool(b, boursier)
	b = append(b, `,"est_scolarise":true,"etablissement":{"code_ministere_tutelle":"06","code_uai":`...)
	b = appendJSONString(b, strings.ToUpper(first(q, "codeEtablissement")))
	b = append(b, `},"identite":{"date_naissance":`...)
	b = appendJSONDate(b, ch.Birth)
	b = append(b, `,"nom":`...)
	b = appendJSONString(b, per.NomNaissance)
	b = append(b, `,"prenom":`...)
	b = appendJSONString(b, ch.Prenom)
	b = append(b, `,"sexe":`...)
	b = appendJSONString(b, ch.Sexe)
	b = append(b, `},"module_elementaire_formation":{"code_mef_stat":null,"libelle":null},`...)
	if v >= 5 {
		regimes := []struct{ code, label string }{{"2", "Demi-pensionnaire dans l'établissement"}, {"2", "Demi-pensionnaire dans l'établissement"},
			{"0", "Externe libre"}, {"1", "Externe surveillé"}, {"3", "Interne dans l'établissement"}}
		rg := regimes[x>>30%uint64(len(regimes))]
		b = append(b, `"regime_pensionnat":{"code":`...)
		b = appendJSONString(b, rg.code)
		b = append(b, `,"libelle":`...)
		b = appendJSONString(b, rg.label)
		b = append(b, "},"...)
	}
	return http.StatusOK, append(b, `"statut_eleve":{"code":"ST","libelle":"SCOLAIRE"}},"links":{},"meta":{}}`...)
}
