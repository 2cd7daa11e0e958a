package schemas

import (
	"strings"
	"testing"
	"time"
)

func TestParseRetention(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    RetentionPolicy
		wantErr string
	}{
		{name: "empty inherits everything", yaml: ""},
		{name: "full", yaml: "inputs: {after_publish: quarantine, days: 7, unprocessed_days: 3}\nresults: {months: 12}\naudit: {months: 48}\n",
			want: RetentionPolicy{Inputs: InputsRetention{AfterPublish: InputsQuarantine, Days: 7, UnprocessedDays: 3},
				Results: MonthsRetention{Months: 12}, Audit: MonthsRetention{Months: 48}}},
		{name: "partial", yaml: "inputs:\n  after_publish: delete\n", want: RetentionPolicy{Inputs: InputsRetention{AfterPublish: InputsDelete}}},
		{name: "unknown mode", yaml: "inputs: {after_publish: shred}", wantErr: "after_publish"},
		{name: "unknown field", yaml: "results: {years: 3}", wantErr: "years"},
		{name: "negative days", yaml: "inputs: {days: -1}", wantErr: "inputs.days"},
		{name: "audit below the terms", yaml: "audit: {months: 12}", wantErr: "36 months"},
		{name: "not YAML", yaml: "{", wantErr: "retention policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRetention([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRetentionPolicy_Override(t *testing.T) {
	bucket, _ := ParseRetention([]byte("inputs: {after_publish: quarantine, days: 10}\nresults: {months: 24}"))
	tenant, _ := ParseRetention([]byte("inputs: {days: 2}\naudit: {months: 60}"))
	got := DefaultRetention().Override(bucket).Override(tenant)
	want := RetentionPolicy{Inputs: InputsRetention{AfterPublish: InputsQuarantine, Days: 2, UnprocessedDays: DefaultUnprocessedDays},
		Results: MonthsRetention{Months: 24}, Audit: MonthsRetention{Months: 60}}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestRetentionPolicy_Validate(t *testing.T) {
	if err := DefaultRetention().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name string
		edit func(*RetentionPolicy)
		want string
	}{
		{"no mode", func(p *RetentionPolicy) { p.Inputs.AfterPublish = "" }, "after_publish"},
		{"zero results", func(p *RetentionPolicy) { p.Results.Months = 0 }, "results.months"},
		{"zero audit", func(p *RetentionPolicy) { p.Audit.Months = 0 }, "audit.months"},
		{"short audit", func(p *RetentionPolicy) { p.Audit.Months = 35 }, "terms of use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultRetention()
			tt.edit(&p)
			if err := p.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestRetentionPolicy_Cutoffs(t *testing.T) {
	now := time.Date(2029, 3, 31, 12, 0, 0, 0, time.UTC)
	p := DefaultRetention()
	p.Inputs.Days, p.Inputs.UnprocessedDays, p.Results.Months = 7, 3, 12
	for name, c := range map[string]struct{ got, want time.Time }{
		"results":     {p.ResultsCutoff(now), time.Date(2028, 3, 31, 12, 0, 0, 0, time.UTC)},
		"audit":       {p.AuditCutoff(now), time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)},
		"inputs":      {p.InputsCutoff(now), time.Date(2029, 3, 24, 12, 0, 0, 0, time.UTC)},
		"unprocessed": {p.UnprocessedCutoff(now), time.Date(2029, 3, 28, 12, 0, 0, 0, time.UTC)},
	} {
		if !c.got.Equal(c.want) {
			t.Errorf("%s cutoff = %s, want %s", name, c.got, c.want)
		}
	}
}
