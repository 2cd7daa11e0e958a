package schemas

import (
	"bytes"
	"reflect"
	"testing"

	json "github.com/segmentio/encoding/json"
)

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

// TestEncode_RoundTrip: what the encoders write, the decoders read back
// as it was, whatever the strings hold (valid UTF-8 ones; others come back
// with U+FFFD, as the library writes them); a sealed job carries no plain
// identity.
func TestEncode_RoundTrip(t *testing.T) {
	id := Identity{NomNaissance: "LEFEBVRE", NomUsage: "MARTIN", Prenoms: []string{"ALEXIS", "JEAN PIERRE"}, Sexe: "F",
		AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480",
		NomCommuneNaissance: "Charleville", CodeDepartementNaissance: "08", INE: "123456789AB", IdentifiantFT: "jdupont",
		CodeEtablissement: "0751234A", AnneeScolaire: "2026-2027"}
	for i, s := range oddStrings {
		if !utf8Valid(s) {
			continue
		}
		t.Run(string(rune('a'+i)), func(t *testing.T) {
			r := fullResult()
			r.ErrorMessage, r.Tenant = s, "t"+s
			b, err := EncodeResult(&r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeResult(b)
			if err != nil || !reflect.DeepEqual(got, r) {
				t.Fatalf("result %s: %v\n got %+v\nwant %+v", b, err, got, r)
			}
			j := sampleJob()
			j.Sealed, j.Identity = nil, id
			j.Identity.NomUsage, j.Rows = s, []RowRef{{Number: 1, Reference: s}}
			b, err = EncodeJob(&j)
			if err != nil {
				t.Fatal(err)
			}
			gj, err := DecodeJob(b)
			if err != nil || !reflect.DeepEqual(gj, j) {
				t.Fatalf("job %s: %v\n got %+v\nwant %+v", b, err, gj, j)
			}
			ib, err := EncodeIdentity(&j.Identity)
			if err != nil {
				t.Fatal(err)
			}
			if gi, err := DecodeIdentity(ib); err != nil || !reflect.DeepEqual(gi, j.Identity) {
				t.Fatalf("identity %s: %v", ib, err)
			}
		})
	}
	sealed := sampleJob()
	sealed.Identity = id
	b, err := EncodeJob(&sealed)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`"identity"`)) || bytes.Contains(b, []byte("LEFEBVRE")) {
		t.Fatalf("a sealed job carries its plain identity: %s", b)
	}
	if m, err := json.Marshal(sealed); err != nil || !bytes.Equal(m, b) {
		t.Fatalf("json.Marshal of a job differs from EncodeJob: %v", err)
	}
}

func utf8Valid(s string) bool {
	return bytes.Equal([]byte(s), bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
}
