package pipeline

import (
	"strings"
	"testing"
	"time"
)

func TestFormatOf(t *testing.T) {
	for name, want := range map[string]string{"r.xlsx": FormatXLSX, "R.XLSX": FormatXLSX, "a/r.csv": FormatCSV, "r.parquet": FormatParquet} {
		if got, err := FormatOf(name); got != want || err != nil {
			t.Errorf("FormatOf(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"r.ods", "r.xls", "r"} {
		if _, err := FormatOf(name); err == nil || !strings.Contains(err.Error(), "inconnu") {
			t.Errorf("FormatOf(%q): %v, want a refusal", name, err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{8 * time.Second: "8 s", 125 * time.Second: "2 min 05 s", 63 * time.Minute: "1 h 03 min"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
