package main

import (
	"strings"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"200MiB", 200 << 20, ""},
		{" 1GiB ", 1 << 30, ""},
		{"65536KiB", 64 << 20, ""},
		{"104857600", 100 << 20, ""},
		{"104857600B", 100 << 20, ""},
		{"off", 0, ""},
		{"0", 0, ""},
		{"16MiB", 0, "below 32MiB"},
		{"200MB", 0, "want a size"},
		{"-5MiB", 0, "want a size"},
		{"lots", 0, "want a size"},
		{"", 0, "want a size"},
		{"99999999999TiB", 0, "want a size"},
	} {
		got, err := parseMemoryLimit(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseMemoryLimit(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

// TestApplyMemoryLimit_RuntimeVariablesWin: GOMEMLIMIT or GOGC, when set,
// leave the runtime as they configured it; "off" sets nothing; a bad size
// is an error.
func TestApplyMemoryLimit_RuntimeVariablesWin(t *testing.T) {
	for _, tc := range []struct {
		spec string
		env  map[string]string
	}{
		{"200MiB", map[string]string{"GOMEMLIMIT": "1GiB"}},
		{"200MiB", map[string]string{"GOGC": "100"}},
		{"off", nil},
	} {
		n, err := applyMemoryLimit(tc.spec, func(k string) string { return tc.env[k] })
		if err != nil || n != 0 {
			t.Errorf("applyMemoryLimit(%q, %v) = %d, %v; want nothing applied", tc.spec, tc.env, n, err)
		}
	}
	if _, err := applyMemoryLimit("12 apples", func(string) string { return "" }); err == nil {
		t.Error("applyMemoryLimit(\"12 apples\") applied")
	}
}
