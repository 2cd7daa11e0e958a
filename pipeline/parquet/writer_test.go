package parquet

import (
	"bytes"
	"io"
	"reflect"
	"testing"
	"time"

	pq "github.com/parquet-go/parquet-go"
	"github.com/xitongsys/parquet-go/marshal"
	"github.com/xitongsys/parquet-go/writer"

	"github.com/apbatch/apbatch/schemas"
)

func ptr[T any](v T) *T { return &v }

// sampleRows has every nullable column both set and unset.
func sampleRows() []schemas.ResultRow {
	at := time.Date(2026, 9, 14, 8, 30, 0, 123e6, time.UTC)
	return []schemas.ResultRow{
		{
			BatchID: "b1", Tenant: "demo", Campaign: "2026-09", RowNumber: 1, Reference: ptr("FAM-0001"),
			Check: "quotient_familial", Status: "ok", Provider: ptr("CNAF"), QFValue: ptr[int64](2550),
			QFYear: ptr[int32](2023), QFMonth: ptr[int32](6), QFCalcYear: ptr[int32](2024), QFCalcMonth: ptr[int32](12),
			ChildrenCount: ptr[int32](0), RequestID: ptr("0b7e-req"), Attempts: 1, CheckedAt: at.UnixMilli(),
			Tranche: ptr("E"), Tarif: ptr[int64](410),
		},
		{
			BatchID: "b1", Tenant: "demo", Campaign: "2026-09", RowNumber: 2, Check: "quotient_familial",
			Status: "not_found", ErrorCode: ptr("37003"), ErrorMessage: ptr("Dossier allocataire absent CNAV"),
			Attempts: 1, CheckedAt: at.UnixMilli(),
		},
		{
			BatchID: "b1", Tenant: "demo", Campaign: "2026-09", RowNumber: 3, Check: "quotient_familial",
			Status: "invalid_input", ErrorCode: ptr(schemas.CodeInvalidRow),
			ErrorMessage: ptr("ligne 4, colonne « sexe » : valeur manquante (attendu M ou F)"),
			NeedsReview:  false, CheckedAt: at.UnixMilli(),
		},
		{
			BatchID: "b1", Tenant: "demo", Campaign: "2026-09", RowNumber: 4, Check: "scolarite", Status: "ok", Attempts: 1,
			PupilEnrolled: ptr(true), SchoolYear: ptr("2026-2027"), EstablishmentUAI: ptr("0751234A"), BoardingRegime: ptr("2"),
			ScholarshipHolder: ptr(false), Beneficiary: ptr(true), BenefitSince: ptr[int32](20454), CheckedAt: at.UnixMilli(),
		},
	}
}

// readRow is the independent reader's view of a row.
type readRow struct {
	BatchID       string    `parquet:"batch_id"`
	RowNumber     int64     `parquet:"row_number"`
	Reference     *string   `parquet:"reference,optional"`
	Status        string    `parquet:"status"`
	ErrorCode     *string   `parquet:"error_code,optional"`
	ErrorMessage  *string   `parquet:"error_message,optional"`
	Provider      *string   `parquet:"provider,optional"`
	QFValue       *int64    `parquet:"qf_value,optional"`
	QFYear        *int32    `parquet:"qf_year,optional"`
	ChildrenCount *int32    `parquet:"children_count,optional"`
	NeedsReview   bool      `parquet:"needs_review"`
	Attempts      int32     `parquet:"attempts"`
	CheckedAt     time.Time `parquet:"checked_at,timestamp(millisecond)"`
}

func TestEncode_ReadByIndependentReader(t *testing.T) {
	var buf bytes.Buffer
	in := sampleRows()
	if err := Encode(&buf, in); err != nil {
		t.Fatal(err)
	}
	f, err := pq.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	// Logical types that make DuckDB read VARCHAR, TIMESTAMPTZ, BIGINT...
	want := map[string]string{
		"batch_id":      "STRING",
		"status":        "STRING",
		"reference":     "STRING",
		"error_message": "STRING",
		"checked_at":    "TIMESTAMP(isAdjustedToUTC=true,unit=MILLIS)",
	}
	for _, field := range f.Schema().Fields() {
		lt := ""
		if l := field.Type().LogicalType(); l != nil {
			lt = l.String()
		}
		if w, ok := want[field.Name()]; ok && lt != w {
			t.Errorf("column %s: logical type %q, want %q", field.Name(), lt, w)
		}
		switch field.Name() {
		case "reference", "error_code", "qf_value", "children_count", "request_id":
			if !field.Optional() {
				t.Errorf("column %s should be optional", field.Name())
			}
		case "row_number", "status", "needs_review", "checked_at":
			if !field.Required() {
				t.Errorf("column %s should be required", field.Name())
			}
		}
	}

	rows, err := pq.Read[readRow](bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(in) {
		t.Fatalf("read %d rows, wrote %d", len(rows), len(in))
	}
	r0, r1, r2 := rows[0], rows[1], rows[2]
	if *r0.Reference != "FAM-0001" || *r0.QFValue != 2550 || *r0.Provider != "CNAF" || *r0.QFYear != 2023 || *r0.ChildrenCount != 0 {
		t.Errorf("row 1 = %+v", r0)
	}
	if !r0.CheckedAt.Equal(time.Date(2026, 9, 14, 8, 30, 0, 123e6, time.UTC)) {
		t.Errorf("checked_at = %v", r0.CheckedAt)
	}
	if r1.Reference != nil || r1.QFValue != nil || r1.Provider != nil || r1.ChildrenCount != nil {
		t.Errorf("row 2 nulls came back as values: %+v", r1)
	}
	if *r1.ErrorCode != "37003" || *r1.ErrorMessage != "Dossier allocataire absent CNAV" {
		t.Errorf("row 2 = %+v", r1)
	}
	if *r2.ErrorMessage != "ligne 4, colonne « sexe » : valeur manquante (attendu M ou F)" || r2.Attempts != 0 {
		t.Errorf("row 3 = %+v", r2)
	}
}

func TestWriter_CloseIdempotentAndWriteAfterClose(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(sampleRows()[0]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := w.Write(sampleRows()[0]); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if w.Rows() != 1 {
		t.Fatalf("Rows = %d", w.Rows())
	}
}

func BenchmarkWriter(b *testing.B) {
	rows := sampleRows()
	b.ReportAllocs()
	const n = 100000
	for i := 0; i < b.N; i++ {
		var buf bytes.Buffer
		w, err := NewWriter(&buf)
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < n; j++ {
			r := rows[j%len(rows)]
			r.RowNumber = int64(j + 1)
			if err := w.Write(r); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
}

func TestDecode_RoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := sampleRows()
	if err := Encode(&buf, in); err != nil {
		t.Fatal(err)
	}
	out, err := Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) || *out[0].Tranche != "E" || *out[0].Tarif != 410 || out[1].QFValue != nil || *out[3].PupilEnrolled != true {
		t.Fatalf("%+v", out)
	}
}

// TestMarshalRows_SameTables: the hand-written column encoders build the
// very tables parquet-go's reflection marshaller builds, for rows with
// every optional column set and unset.
func TestMarshalRows_SameTables(t *testing.T) {
	rows := sampleRows()
	full := rows[0]
	s, i32, i64, b := ptr("x"), ptr[int32](7), ptr[int64](9), ptr(true)
	full.ErrorCode, full.ErrorMessage, full.Beneficiary, full.BenefitSince, full.C2SWithParticipation = s, s, b, i32, b
	full.BenefitIncreased, full.ScholarshipHolder, full.ScholarshipLevel, full.ScholarshipStart, full.ScholarshipMonths = b, b, s, i32, i32
	full.StudentEnrolled, full.StudentRegime, full.EstablishmentUAI, full.JobseekerRegistered, full.JobseekerCategory = b, s, s, b, i32
	full.JobseekerSince, full.PupilEnrolled, full.SchoolYear, full.PupilStatus, full.BoardingRegime, full.Tarif = i32, b, s, s, s, i64
	full.NeedsReview = true
	rows = append(rows, full, schemas.ResultRow{}, rows[1], rows[1])

	pw, err := writer.NewParquetWriterFromWriter(io.Discard, new(schemas.ResultRow), 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newRowMarshaller(pw.SchemaHandler)
	if err != nil {
		t.Fatal(err)
	}
	var plain, refs []any
	for i := range rows {
		plain = append(plain, rows[i])
		refs = append(refs, rowRef{&rows[i]})
	}
	want, err := marshal.Marshal(plain, pw.SchemaHandler)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.marshal(refs, pw.SchemaHandler)
	if err != nil {
		t.Fatal(err)
	}
	if len(*got) != len(*want) {
		t.Fatalf("%d tables, want %d", len(*got), len(*want))
	}
	for path, w := range *want {
		g := (*got)[path]
		if g == nil {
			t.Fatalf("no table %q", path)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("table %q:\n got %+v\nwant %+v", path, *g, *w)
		}
	}
}
