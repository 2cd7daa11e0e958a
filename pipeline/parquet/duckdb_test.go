package parquet

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDuckDB reads a result file with DuckDB, the engine data teams use, and
// checks the types it infers: strings as VARCHAR, nulls as NULL, checked_at
// as TIMESTAMP WITH TIME ZONE.
func TestDuckDB(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed: DuckDB check skipped")
	}
	if _, err := os.Stat("testdata/duckdb/node_modules/@duckdb/node-api"); err != nil {
		t.Skip("DuckDB checker not installed: run npm ci --prefix pipeline/parquet/testdata/duckdb")
	}
	path := filepath.Join(t.TempDir(), "part-00001.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := Encode(f, sampleRows()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("node", "testdata/duckdb/check.mjs", path).CombinedOutput()
	if err != nil {
		t.Fatalf("duckdb: %v\n%s", err, out)
	}
	var got struct {
		Types map[string]string `json:"types"`
		Rows  []map[string]any  `json:"rows"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	wantTypes := map[string]string{
		"batch_id": "VARCHAR", "tenant": "VARCHAR", "campaign": "VARCHAR", "row_number": "BIGINT",
		"reference": "VARCHAR", "check_name": "VARCHAR", "status": "VARCHAR", "error_code": "VARCHAR",
		"error_message": "VARCHAR", "provider": "VARCHAR", "qf_value": "BIGINT", "qf_year": "INTEGER",
		"qf_month": "INTEGER", "qf_calc_year": "INTEGER", "qf_calc_month": "INTEGER", "children_count": "INTEGER",
		"needs_review": "BOOLEAN", "request_id": "VARCHAR", "attempts": "INTEGER", "checked_at": "TIMESTAMP WITH TIME ZONE",
		// Schema 2: the other checks' columns.
		"beneficiary": "BOOLEAN", "benefit_since": "DATE", "c2s_with_participation": "BOOLEAN", "benefit_increased": "BOOLEAN",
		"scholarship_holder": "BOOLEAN", "scholarship_level": "VARCHAR", "scholarship_start": "DATE", "scholarship_months": "INTEGER",
		"student_enrolled": "BOOLEAN", "student_regime": "VARCHAR", "establishment_uai": "VARCHAR", "jobseeker_registered": "BOOLEAN",
		"jobseeker_category": "INTEGER", "jobseeker_since": "DATE", "pupil_enrolled": "BOOLEAN", "school_year": "VARCHAR",
		"pupil_status": "VARCHAR", "boarding_regime": "VARCHAR",
		"tranche": "VARCHAR", "tarif": "DECIMAL(18,2)",
	}
	for col, typ := range wantTypes {
		if got.Types[col] != typ {
			t.Errorf("DuckDB reads %s as %q, want %q", col, got.Types[col], typ)
		}
	}
	if len(got.Types) != len(wantTypes) {
		t.Errorf("DuckDB sees columns %v", got.Types)
	}
	if len(got.Rows) != 4 {
		t.Fatalf("DuckDB reads %d rows", len(got.Rows))
	}
	if r3 := got.Rows[3]; r3["pupil_enrolled"] != true || r3["benefit_since"] != "2026-01-01" || r3["boarding_regime"] != "2" ||
		r3["scholarship_holder"] != false || r3["qf_value"] != nil || r3["jobseeker_since"] != nil {
		t.Errorf("row 4 = %v", r3)
	}
	r0, r1, r2 := got.Rows[0], got.Rows[1], got.Rows[2]
	if r0["reference"] != "FAM-0001" || r0["qf_value"] != "2550" || r0["provider"] != "CNAF" || r0["checked_at"] != "2026-09-14T08:30:00.123" ||
		r0["tranche"] != "E" || r0["tarif"] != "4.10" {
		t.Errorf("row 1 = %v", r0)
	}
	for _, col := range []string{"reference", "qf_value", "provider", "children_count", "request_id"} {
		if r1[col] != nil {
			t.Errorf("row 2 %s = %v, want NULL", col, r1[col])
		}
	}
	if r2["error_message"] != "ligne 4, colonne « sexe » : valeur manquante (attendu M ou F)" || r2["needs_review"] != false {
		t.Errorf("row 3 = %v", r2)
	}
}
