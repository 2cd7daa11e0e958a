package schemas

import (
	"bytes"
	"testing"
	"time"

	json "github.com/segmentio/encoding/json"
)

// reflectResult is the reflection encoding of a result, the reference the
// hand-written encoder must match.
func reflectResult(r Result) ([]byte, error) { return json.Marshal(r) }

// reflectJob is the reflection encoding of a job, as Job.MarshalJSON wrote
// it before AppendJob: a sealed job's identity left out.
func reflectJob(j Job) ([]byte, error) {
	type wire Job
	if j.Sealed == nil {
		return json.Marshal(wire(j))
	}
	return json.Marshal(struct {
		wire
		Identity *Identity `json:"identity,omitempty"`
	}{wire: wire(j)})
}

func reflectIdentity(id Identity) ([]byte, error) {
	type wire Identity
	return json.Marshal(wire(id))
}

// oddStrings need escaping, or are not UTF-8.
var oddStrings = []string{"", "a\"b", `back\slash`, "tab\tnew\nline\r", "\x00\x01\x1f\x7f", "<script>&amp;</script>",
	"\u2028\u2029", "\xff\xfe invalid", "é à « » ’ 💶", "\b\f", "caf\xc3"}

func fullResult() Result {
	r := sampleResult()
	b, i := true, int32(4)
	r.ErrorCode, r.ErrorMessage, r.NeedsReview, r.Tranche, r.TarifCents = "37003", "ligne 4, colonne « sexe » : valeur manquante", true, "E", ptrTo[int64](410)
	r.Facts = Facts{Beneficiary: &b, BenefitSince: "2026-01-01", C2SWithParticipation: &b, BenefitIncreased: &b,
		ScholarshipHolder: &b, ScholarshipLevel: "0bis", ScholarshipStart: "2026-09-01", ScholarshipMonths: &i,
		StudentEnrolled: &b, StudentRegime: "RF1", EstablishmentUAI: "0751234A", JobseekerRegistered: &b,
		JobseekerCategory: &i, JobseekerSince: "2025-02-03", PupilEnrolled: &b, SchoolYear: "2026-2027",
		PupilStatus: "ST", BoardingRegime: "2"}
	return r
}

func TestAppendResult_SameAsReflection(t *testing.T) {
	cases := map[string]Result{
		"sample": sampleResult(),
		"full":   fullResult(),
		"zero":   {},
		"false and zero pointers": {Facts: Facts{Beneficiary: new(bool), ScholarshipMonths: new(int32)},
			QFValue: new(int64), Primary: false, CheckedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600))},
		"negative": {Version: -1, RowNumber: -5, Attempts: -2, QFValue: ptrTo[int64](-1 << 62)},
		"year 0":   {CheckedAt: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for i, s := range oddStrings {
		r := fullResult()
		r.Reference, r.ErrorMessage, r.BatchID, r.SchoolYear = s, s, s, s
		cases["odd "+string(rune('a'+i))] = r
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) { sameResult(t, r) })
	}
	// Beyond RFC 3339 years, the error is json.Marshal's.
	r := sampleResult()
	r.CheckedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	_, werr := reflectResult(r)
	_, gerr := AppendResult(nil, &r)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("year 10000: error %v, want %v", gerr, werr)
	}
}

func sameResult(t *testing.T, r Result) {
	t.Helper()
	want, err := reflectResult(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := AppendResult([]byte("prefix"), &r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[6:], want) {
		t.Fatalf("AppendResult:\n got %s\nwant %s", got[6:], want)
	}
	back, err := DecodeResult(want)
	if err == nil && back.RowNumber != r.RowNumber {
		t.Fatalf("decoded row %d, want %d", back.RowNumber, r.RowNumber)
	}
}

func TestAppendJob_SameAsReflection(t *testing.T) {
	id := Identity{NomNaissance: "LEFEBVRE", NomUsage: "MARTIN", Prenoms: []string{"ALEXIS", "JEAN PIERRE"}, Sexe: "F",
		AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480",
		NomCommuneNaissance: "Charleville", CodeDepartementNaissance: "08", INE: "123456789AB", IdentifiantFT: "jdupont",
		CodeEtablissement: "0751234A", AnneeScolaire: "2026-2027"}
	plain := sampleJob()
	plain.Sealed, plain.Identity = nil, id
	cases := map[string]Job{
		"sealed":                  sampleJob(),
		"plain":                   plain,
		"zero":                    {},
		"sealed, identity left":   func() Job { j := sampleJob(); j.Identity = id; return j }(),
		"month only":              func() Job { j := plain; j.Period = Period{Month: 3}; return j }(),
		"year only, no rows":      func() Job { j := plain; j.Period, j.Rows = Period{Year: 2026}, nil; return j }(),
		"empty rows and prenoms":  func() Job { j := plain; j.Rows, j.Identity.Prenoms = []RowRef{}, []string{}; return j }(),
		"nil and empty sealed":    func() Job { j := sampleJob(); j.Sealed = &SealedIdentity{Nonce: []byte{}}; return j }(),
		"several rows, some refs": func() Job { j := plain; j.Rows = []RowRef{{Number: 1}, {Number: 2, Reference: "R2"}}; return j }(),
	}
	for i, s := range oddStrings {
		j := plain
		j.Identity.NomNaissance, j.Identity.Prenoms, j.Tenant = s, []string{s, s}, s
		j.Rows = []RowRef{{Number: 1, Reference: s}}
		cases["odd "+string(rune('a'+i))] = j
	}
	for name, j := range cases {
		t.Run(name, func(t *testing.T) { sameJob(t, j) })
	}
}

func sameJob(t *testing.T, j Job) {
	t.Helper()
	want, err := reflectJob(j)
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendJob([]byte("prefix"), &j); !bytes.Equal(got[6:], want) {
		t.Fatalf("AppendJob:\n got %s\nwant %s", got[6:], want)
	}
	// json.Marshal goes through Job.MarshalJSON, now AppendJob.
	if m, err := json.Marshal(j); err != nil || !bytes.Equal(m, want) {
		t.Fatalf("json.Marshal: %v\n got %s\nwant %s", err, m, want)
	}
	wantID, err := reflectIdentity(j.Identity)
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendIdentity(nil, &j.Identity); !bytes.Equal(got, wantID) {
		t.Fatalf("AppendIdentity:\n got %s\nwant %s", got, wantID)
	}
}

// FuzzAppendResult: whatever a result's strings and numbers, the
// hand-written encoding is the reflection one.
func FuzzAppendResult(f *testing.F) {
	for _, s := range oddStrings {
		f.Add(s, s, int64(1), int32(2), int64(1790000000123456789), true)
	}
	f.Fuzz(func(t *testing.T, s1, s2 string, n int64, m int32, nanos int64, flag bool) {
		r := fullResult()
		r.BatchID, r.Reference, r.ErrorMessage, r.RequestID, r.BenefitSince = s1, s2, s1+s2, s2, s1
		r.RowNumber, r.Attempts, r.QFValue, r.ChildrenCount, r.Primary, r.NeedsReview = n, m, &n, &m, flag, !flag
		r.CheckedAt = time.Unix(0, nanos).In(time.FixedZone("", int(m%50000)))
		if !flag {
			r.Facts, r.QFYear, r.ErrorCode = Facts{}, nil, ""
		}
		want, werr := reflectResult(r)
		got, gerr := AppendResult(nil, &r)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("error %v, want %v", gerr, werr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

// FuzzAppendJob: the same for jobs and the identities they seal.
func FuzzAppendJob(f *testing.F) {
	for _, s := range oddStrings {
		f.Add(s, s, 2026, 9, []byte(s), true)
	}
	f.Fuzz(func(t *testing.T, s1, s2 string, y, m int, raw []byte, sealed bool) {
		j := sampleJob()
		j.BatchID, j.Recipient, j.Period = s1, s2, Period{Year: y, Month: m}
		j.Identity = Identity{NomNaissance: s1, Prenoms: []string{s2, s1}, Sexe: s2, AnneeNaissance: y, JourNaissance: m, INE: s2}
		j.Rows = []RowRef{{Number: int64(y), Reference: s2}, {Number: int64(m)}}
		j.Sealed.Ciphertext, j.Sealed.KeyID = raw, s2
		if !sealed {
			j.Sealed = nil
		}
		sameJob(t, j)
	})
}

func BenchmarkAppendResult(b *testing.B) {
	r := sampleResult()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendResult(buf[:0], &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJob(b *testing.B) {
	j := sampleJob()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJob(buf[:0], &j)
	}
}
