package pipeline

import (
	"testing"

	"github.com/apbatch/apbatch/schemas"
)

func TestParseIncomingKey(t *testing.T) {
	for _, tc := range []struct {
		key     string
		want    IncomingKey
		wantErr bool
	}{
		{key: "incoming/demo/2026-09/cantine.csv", want: IncomingKey{"demo", "2026-09", "cantine.csv"}},
		{key: "incoming/ville-de-paris/2026-09/liste 2026.csv", want: IncomingKey{"ville-de-paris", "2026-09", "liste 2026.csv"}},
		{key: "results/demo/2026-09/x.csv", wantErr: true},
		{key: "incoming/demo/cantine.csv", wantErr: true},
		{key: "incoming/demo/2026-09/sub/cantine.csv", wantErr: true},
		{key: "incoming/../2026-09/cantine.csv", wantErr: true},
		{key: "incoming/demo/../cantine.csv", wantErr: true},
		{key: "incoming/demo/2026-09/..", wantErr: true},
		{key: "incoming//2026-09/a.csv", wantErr: true},
		{key: "incoming/demo/2026-09/a\n.csv", wantErr: true},
		{key: "incoming/demo/2026-09/a\x80.csv", wantErr: true},
		{key: "incoming/demo/2026-09/", wantErr: true},
	} {
		t.Run(tc.key, func(t *testing.T) {
			got, err := ParseIncomingKey(tc.key)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if !tc.wantErr && got.String() != tc.key {
				t.Fatalf("String() = %q", got.String())
			}
		})
	}
}

func TestParsePeriod(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    schemas.Period
		wantErr bool
	}{
		{"", schemas.Period{}, false},
		{"2026-09", schemas.Period{Year: 2026, Month: 9}, false},
		{"2026-13", schemas.Period{}, true},
		{"09/2026", schemas.Period{}, true},
	} {
		got, err := ParsePeriod(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParsePeriod(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

func TestDecodeEventKey(t *testing.T) {
	got, err := DecodeEventKey("incoming/demo/2026-09/liste+2026%C3%A9.csv")
	if err != nil || got != "incoming/demo/2026-09/liste 2026é.csv" {
		t.Fatalf("DecodeEventKey = %q, %v", got, err)
	}
}
