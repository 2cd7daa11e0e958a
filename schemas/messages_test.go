package schemas

import (
	"testing"
	"time"

	json "github.com/segmentio/encoding/json"
)

func ptrTo[T any](v T) *T { return &v }

// sampleResult is a quotient familial answer as workers produce it.
func sampleResult() Result {
	return Result{
		Version: ResultVersion, BatchID: "0193b0c4-6f1e-7d2a-9c1b-2f9e8d7c6b5a", Tenant: "ville-a", Campaign: "2026-09",
		RowNumber: 12345, Reference: "SYN-0012345", Check: CheckQuotientFamilial, Status: StatusOK, Provider: "CNAF",
		QFValue: ptrTo[int64](850), QFYear: ptrTo[int32](2026), QFMonth: ptrTo[int32](8), QFCalcYear: ptrTo[int32](2026),
		QFCalcMonth: ptrTo[int32](6), ChildrenCount: ptrTo[int32](2), RequestID: "0b7e5c1a-3f4d-4e2b-9a8c-1d2e3f4a5b6c",
		Attempts: 1, Primary: true, CheckedAt: time.Date(2026, 9, 14, 8, 30, 0, 123456789, time.UTC),
	}
}

// sampleJob is a sealed job as the splitter produces it.
func sampleJob() Job {
	return Job{
		Version: JobVersion, BatchID: "0193b0c4-6f1e-7d2a-9c1b-2f9e8d7c6b5a", Tenant: "ville-a", Campaign: "2026-09",
		Check: CheckQuotientFamilial, LookupID: "3f2a9c1b2f9e8d7c6b5a0193b0c46f1e", Recipient: "21750001600019",
		Period: Period{Year: 2026, Month: 9},
		Sealed: &SealedIdentity{KeyID: "local:3f2a9c1b2f9e8d7c", DataKey: make([]byte, 60), Nonce: make([]byte, 12), Ciphertext: make([]byte, 180)},
		Rows:   []RowRef{{Number: 12345, Reference: "SYN-0012345"}},
	}
}

func BenchmarkEncodeResult(b *testing.B) {
	r := sampleResult()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeJob(b *testing.B) {
	j := sampleJob()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(j); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeResult and BenchmarkDecodeJob measure the decoding of
// the hot messages.
func BenchmarkDecodeResult(b *testing.B) { benchDecode(b, sampleResult(), DecodeResult) }
func BenchmarkDecodeJob(b *testing.B)    { benchDecode(b, sampleJob(), DecodeJob) }

// BenchmarkDecodeIdentity measures the decoding of an opened identity.
func BenchmarkDecodeIdentity(b *testing.B) {
	id := Identity{NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS", "JEAN PIERRE"}, Sexe: "F", AnneeNaissance: 1982,
		MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08105"}
	benchDecode(b, id, DecodeIdentity)
}

func benchDecode[T any](b *testing.B, msg T, decode func([]byte) (T, error)) {
	v, err := json.Marshal(msg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decode(v); err != nil {
			b.Fatal(err)
		}
	}
}
