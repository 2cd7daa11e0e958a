package workers

import (
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/apbatch/apbatch/schemas"
)

// fuzzNow is the clock of the fuzz targets.
var fuzzNow = time.Date(2026, 9, 15, 10, 0, 0, 0, time.UTC)

// caseBody is one official case of the sandbox: an answer of the real API.
type caseBody struct {
	Status  int    `yaml:"status"`
	Payload string `yaml:"payload"`
}

// officialCases returns the sandbox's official answers whose folder name
// contains one of parts (every answer when parts is empty).
func officialCases(tb testing.TB, parts ...string) []caseBody {
	tb.Helper()
	files, err := filepath.Glob("sandbox/cases/*/*.y*ml")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no official case found: %v", err)
	}
	var out []caseBody
	for _, f := range files {
		dir := filepath.Base(filepath.Dir(f))
		if len(parts) > 0 && !containsAny(dir, parts) {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var c caseBody
		if err := yaml.Unmarshal(raw, &c); err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		out = append(out, c)
	}
	return out
}

func containsAny(s string, parts []string) bool {
	for _, p := range parts {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// checkCases are the folders of each check's official answers; the DSS and
// MEN checks have none (the sandbox answers them from its population), so
// they get the shapes of the API's documentation.
var checkCases = map[schemas.Check][]string{
	schemas.CheckQuotientFamilial: {"quotient_familial"},
	schemas.CheckEtudiantBoursier: {"cnous"},
	schemas.CheckStatutEtudiant:   {"mesri"},
	schemas.CheckFranceTravail:    {"france_travail", "pole_emploi"},
}

var documentedBodies = map[schemas.Check][]string{
	schemas.CheckAAH: {`{"data":{"est_beneficiaire":true,"date_debut_droit":"2022-11-29"},"links":{},"meta":{}}`},
	schemas.CheckC2S: {`{"data":{"est_beneficiaire":true,"avec_participation":false,"date_debut_droit":"2025-01-01"},"links":{},"meta":{}}`},
	schemas.CheckRSA: {`{"data":{"est_beneficiaire":false,"avec_majoration":null,"date_debut_droit":null}}`},
	schemas.CheckScolarite: {`{"data":{"identite":{"nom":"X"},"est_scolarise":true,"annee_scolaire":"2026-2027","statut_eleve":{"code":"ST","libelle":"Scolaire"},` +
		`"est_boursier":true,"echelon_bourse":3,"etablissement":{"code_uai":"0751234A","nom":"Lycée"},"regime_pensionnat":{"code":"2"}}}`},
	schemas.CheckFranceTravail: {`{"data":{"inscription":{"date_debut":"2024-03-01","date_fin":null,"categorie":{"code":1,"libelle":"PERSONNE SANS EMPLOI"}}}}`},
}

// FuzzDecoders: whatever a provider puts in a 200 answer, each check's
// decoder yields ok (with no error code or message) or a bad response,
// never a panic; dates are real dates or absent, every text is UTF-8 (the
// Parquet columns are), and decoding is deterministic.
func FuzzDecoders(f *testing.F) {
	for i, c := range schemas.Checks {
		if len(checkCases[c]) > 0 {
			for _, cs := range officialCases(f, checkCases[c]...) {
				if cs.Status == http.StatusOK {
					f.Add(uint8(i), []byte(cs.Payload))
				}
			}
		}
		for _, b := range documentedBodies[c] {
			f.Add(uint8(i), []byte(b))
		}
		f.Add(uint8(i), []byte(`{"data":{}}`))
		f.Add(uint8(i), []byte(`{"data":null}`))
		f.Add(uint8(i), []byte(`{"data":{"x":1},"errors":[{"code":"37003","title":"t","detail":"d"}]}`))
	}
	f.Fuzz(func(t *testing.T, check uint8, raw []byte) {
		c := schemas.Checks[int(check)%len(schemas.Checks)]
		a, ok := adapterFor(c)
		if !ok {
			t.Fatalf("no adapter for %s", c)
		}
		o := classify(http.StatusOK, http.Header{}, raw, fuzzNow, a.decode)
		switch o.Status {
		case schemas.StatusOK:
			if o.Code != "" || o.Message != "" || o.Retryable {
				t.Fatalf("%s: ok with code %q, message %q, retryable %v", c, o.Code, o.Message, o.Retryable)
			}
			if c == schemas.CheckQuotientFamilial && o.QF == nil {
				t.Fatalf("ok without a quotient familial")
			}
		case schemas.StatusProviderError:
			if o.Code != schemas.CodeBadResponse || o.Retryable {
				t.Fatalf("%s: 200 classified %s %q retryable %v", c, o.Status, o.Code, o.Retryable)
			}
		default:
			t.Fatalf("%s: 200 classified %s", c, o.Status)
		}
		checkOutcomeText(t, o)
		for name, d := range map[string]string{"benefit since": o.Facts.BenefitSince, "scholarship start": o.Facts.ScholarshipStart, "jobseeker since": o.Facts.JobseekerSince} {
			if _, err := time.Parse(time.DateOnly, d); d != "" && err != nil {
				t.Fatalf("%s: %s %q is not a date", c, name, d)
			}
		}
		if again := classify(http.StatusOK, http.Header{}, raw, fuzzNow, a.decode); !reflect.DeepEqual(again, o) {
			t.Fatalf("%s: decoded twice differently:\n%+v\n%+v", c, o, again)
		}
	})
}

// checkOutcomeText fails when a text of o is not valid UTF-8.
func checkOutcomeText(t *testing.T, o Outcome) {
	t.Helper()
	texts := map[string]string{
		"code": o.Code, "message": o.Message, "provider": o.Provider,
		"scholarship level": o.Facts.ScholarshipLevel, "student regime": o.Facts.StudentRegime,
		"establishment": o.Facts.EstablishmentUAI, "school year": o.Facts.SchoolYear,
		"pupil status": o.Facts.PupilStatus, "boarding regime": o.Facts.BoardingRegime,
	}
	if o.QF != nil {
		texts["QF provider"] = o.QF.Fournisseur
	}
	for name, s := range texts {
		if !utf8.ValidString(s) {
			t.Fatalf("%s %q is not valid UTF-8", name, s)
		}
	}
}

// FuzzClassify: whatever status, error body and rate-limit headers the API
// sends, the outcome has one known status, ok only on a 200 and then with
// no error, an error code and message otherwise, retries only for provider
// errors, and a wait that is never negative nor sooner than Retry-After.
func FuzzClassify(f *testing.F) {
	for _, cs := range officialCases(f) {
		if cs.Status != http.StatusOK {
			f.Add(cs.Status, []byte(cs.Payload), "", "")
		}
	}
	f.Add(429, []byte(`{"errors":[{"code":"00429","title":"Trop de requêtes","detail":"Vous avez effectué trop de requêtes","meta":{}}]}`), "12", "1789466400")
	f.Add(502, []byte(`{"errors":[{"code":"04501","title":"Analyse en cours","detail":"2 jours","meta":{"provider":"ACOSS","retry_in":172800}}]}`), "", "")
	f.Add(503, []byte(`{"errors":[{"code":"37002","title":"Maintenance","meta":{"provider":"CNAF","retry_in":"3600"}}]}`), "Tue, 15 Sep 2026 11:00:00 GMT", "")
	f.Add(422, []byte(`{"errors":[{"code":"00355","title":"Impossible d'identifier l'allocataire","detail":"Les paramètres fournis ne permettent pas d'identifier un allocataire.","meta":{}}]}`), "", "")
	f.Add(404, []byte(`{"error":"not_found","reason":"Dossier allocataire inexistant.","message":"Dossier allocataire inexistant."}`), "", "")
	f.Add(401, []byte(`Unauthorized`), "", "")
	f.Add(200, []byte(`{"data":{"quotient_familial":{"fournisseur":"CNAF","valeur":700}}}`), "", "")
	f.Add(418, []byte{}, "-5", "-1")
	f.Add(503, []byte(`{"errors":[{"code":"37002","meta":{"retry_in":1e300}}]}`), "9227000000", "")
	f.Fuzz(func(t *testing.T, status int, raw []byte, retryAfter, reset string) {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		if reset != "" {
			h.Set("RateLimit-Reset", reset)
		}
		a, _ := adapterFor(schemas.CheckQuotientFamilial)
		o := classify(status, h, raw, fuzzNow, a.decode)
		if !o.Status.Valid() {
			t.Fatalf("status %q", o.Status)
		}
		if o.Status == schemas.StatusOK {
			if status != http.StatusOK || o.Code != "" || o.Message != "" || o.Retryable {
				t.Fatalf("HTTP %d classified ok with code %q, message %q, retryable %v", status, o.Code, o.Message, o.Retryable)
			}
		} else if o.Code == "" || o.Message == "" {
			t.Fatalf("HTTP %d classified %s without a code (%q) or message (%q)", status, o.Status, o.Code, o.Message)
		}
		if o.Retryable && o.Status != schemas.StatusProviderError {
			t.Fatalf("retryable %s", o.Status)
		}
		if o.RetryAfter < 0 {
			t.Fatalf("negative wait %v", o.RetryAfter)
		}
		// (net/http trims a header's value as it reads it.)
		if s, err := strconv.Atoi(retryAfter); err == nil && s >= 0 && s <= 1<<20 && o.RetryAfter < time.Duration(s)*time.Second {
			t.Fatalf("Retry-After %q but a wait of %v", retryAfter, o.RetryAfter)
		}
		checkOutcomeText(t, o)
	})
}

// FuzzRateLimitHeaders: whatever RateLimit-* and Retry-After headers come,
// the parsed times never lie before now for a delay, and the budget never
// raises its ceiling nor drops it to zero, and a 429 always pauses it.
func FuzzRateLimitHeaders(f *testing.F) {
	f.Add(200, "20", "19", "1", "")
	f.Add(200, "250", "0", "1789466460", "")
	f.Add(429, "20", "0", "1", "")
	f.Add(429, "", "", "", "30")
	f.Add(429, "", "", "", "Tue, 15 Sep 2026 10:01:00 GMT")
	f.Add(429, "50", "0", "60", "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add(200, "0", "-1", "-1", "-1")
	f.Add(429, "x", "y", "9999999999999999999", "99999999999")
	f.Fuzz(func(t *testing.T, status int, limit, remaining, reset, retryAfter string) {
		h := http.Header{}
		for k, v := range map[string]string{"RateLimit-Limit": limit, "RateLimit-Remaining": remaining, "RateLimit-Reset": reset, "Retry-After": retryAfter} {
			if v != "" {
				h.Set(k, v)
			}
		}
		if ra := RetryAfter(h, fuzzNow); !ra.IsZero() {
			if _, err := strconv.Atoi(retryAfter); err == nil && ra.Before(fuzzNow) {
				t.Fatalf("Retry-After %q: %v, before now", retryAfter, ra)
			}
		}
		if rt := ResetTime(h, fuzzNow); !rt.IsZero() {
			if v, err := strconv.ParseInt(reset, 10, 64); err == nil && v < 1e9 && rt.Before(fuzzNow) {
				t.Fatalf("RateLimit-Reset %q: %v, before now", reset, rt)
			}
		}
		const ceiling = 20
		b := NewBudget(ceiling, time.Second, func() time.Time { return fuzzNow })
		b.Observe(status, h, time.Time{})
		if l := b.Limit(); l <= 0 || l > ceiling {
			t.Fatalf("limit %d after %q, ceiling %d", l, limit, ceiling)
		}
		for per, l := range b.Limits() {
			if l <= 0 {
				t.Fatalf("window %v has limit %d", per, l)
			}
		}
		if status == http.StatusTooManyRequests {
			// A 429 pauses until the later time it asks (none when that
			// time is past), a full window when it asks nothing.
			ra, rt, until := RetryAfter(h, fuzzNow), ResetTime(h, fuzzNow), b.PausedUntil()
			late := func(t time.Time) bool { return t.After(fuzzNow) && until.Before(t) }
			if late(ra) || late(rt) || (ra.IsZero() && rt.IsZero() && !until.After(fuzzNow)) {
				t.Fatalf("a 429 (reset %q, retry-after %q) paused only until %v", reset, retryAfter, until)
			}
		}
	})
}
