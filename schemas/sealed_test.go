package schemas

import (
	"bytes"
	"strings"
	"testing"

	json "github.com/segmentio/encoding/json"
)

func TestJob_MarshalJSON(t *testing.T) {
	id := Identity{NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS"}, Sexe: "F", AnneeNaissance: 1982, CodePaysNaissance: "99100"}
	base := Job{Version: JobVersion, BatchID: "b1", Tenant: "demo", Check: CheckQuotientFamilial, LookupID: "l1",
		Rows: []RowRef{{Number: 1}}}
	sealed := &SealedIdentity{KeyID: "local:x", DataKey: []byte{1}, Nonce: []byte{2}, Ciphertext: []byte{3}}
	for _, tc := range []struct {
		name         string
		identity     Identity
		sealed       *SealedIdentity
		wantIdentity bool
	}{
		{"plain", id, nil, true},
		{"sealed", Identity{}, sealed, false},
		{"sealed, identity left in by mistake", id, sealed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := base
			j.Identity, j.Sealed = tc.identity, tc.sealed
			b, err := json.Marshal(j)
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.Contains(b, []byte(`"identity"`)); got != tc.wantIdentity {
				t.Fatalf("identity on the wire = %v, want %v: %s", got, tc.wantIdentity, b)
			}
			if !tc.wantIdentity && strings.Contains(string(b), "LEFEBVRE") {
				t.Fatalf("name in clear: %s", b)
			}
			// The pointer receiver goes through the same method.
			if b2, _ := json.Marshal(&j); !bytes.Equal(b, b2) {
				t.Fatalf("value and pointer encode differently:\n%s\n%s", b, b2)
			}
			got, err := DecodeJob(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.BatchID != "b1" || got.LookupID != "l1" || len(got.Rows) != 1 || (got.Sealed == nil) != (tc.sealed == nil) {
				t.Fatalf("decoded %+v", got)
			}
			if tc.wantIdentity && got.Identity.NomNaissance != "LEFEBVRE" {
				t.Fatalf("identity lost: %+v", got.Identity)
			}
			if tc.sealed != nil && !bytes.Equal(got.Sealed.Ciphertext, []byte{3}) {
				t.Fatalf("sealed = %+v", got.Sealed)
			}
		})
	}
}

func TestJob_Validate_Versions(t *testing.T) {
	ok := Job{BatchID: "b", Tenant: "t", LookupID: "l", Rows: []RowRef{{Number: 1}}}
	for _, tc := range []struct {
		name    string
		version int
		sealed  bool
		wantErr bool
	}{
		{"v2 sealed", 2, true, false},
		{"v2 plain", 2, false, false},
		{"v1 plain (before an upgrade)", 1, false, false},
		{"v1 cannot be sealed", 1, true, true},
		{"unknown version", 3, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := ok
			j.Version = tc.version
			if tc.sealed {
				j.Sealed = &SealedIdentity{}
			}
			if err := j.Validate(); (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestJob_IdentityAAD(t *testing.T) {
	j := Job{Tenant: "demo", BatchID: "b1", Campaign: "2026-09", Check: CheckQuotientFamilial, LookupID: "l1",
		Recipient: "13002526500013", Period: Period{Year: 2026, Month: 9}, Rows: []RowRef{{Number: 3, Reference: "F1"}, {Number: 7}}}
	base := string(j.IdentityAAD())
	for _, tc := range []struct {
		name   string
		change func(*Job)
	}{
		{"tenant", func(j *Job) { j.Tenant = "other" }},
		{"batch", func(j *Job) { j.BatchID = "b2" }},
		{"campaign", func(j *Job) { j.Campaign = "2027-09" }},
		{"check", func(j *Job) { j.Check = CheckRSA }},
		{"period", func(j *Job) { j.Period = Period{} }},
		{"lookup", func(j *Job) { j.LookupID = "l2" }},
		{"recipient", func(j *Job) { j.Recipient = "21750001600019" }},
		{"shifted", func(j *Job) { j.Tenant, j.BatchID = "demob", "1" }},
		{"row number", func(j *Job) { j.Rows = []RowRef{{Number: 4, Reference: "F1"}, {Number: 7}} }},
		{"row reference", func(j *Job) { j.Rows = []RowRef{{Number: 3, Reference: "F2"}, {Number: 7}} }},
		{"row added", func(j *Job) { j.Rows = append(append([]RowRef(nil), j.Rows...), RowRef{Number: 9}) }},
		{"row dropped", func(j *Job) { j.Rows = j.Rows[:1] }},
		{"reference moved", func(j *Job) { j.Rows = []RowRef{{Number: 3}, {Number: 7, Reference: "F1"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := j
			tc.change(&k)
			if string(k.IdentityAAD()) == base {
				t.Errorf("same AAD")
			}
		})
	}
	if k := j; string(k.IdentityAAD()) != base {
		t.Error("AAD not deterministic")
	}
}
