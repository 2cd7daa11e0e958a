package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

func TestFreshnessWarnings(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	qf := []schemas.Check{schemas.CheckQuotientFamilial}
	for _, tc := range []struct {
		name   string
		checks []schemas.Check
		period string
		now    time.Time
		want   []string // substrings, one per warning
	}{
		// September 2027: Saturday 4, Sunday 5, fresh on Monday 6.
		{"qf before the CAF switch", qf, "", at("2027-09-03 10:00"), []string{"before Monday 6 September the 2027-09 quotients"}},
		{"qf on the first Sunday", qf, "", at("2027-09-05 23:00"), []string{"--period 2027-08"}},
		{"qf after the CAF switch", qf, "", at("2027-09-06 00:30"), nil},
		{"qf of last month", qf, "2027-08", at("2027-09-02 10:00"), nil},
		{"qf of a month to come", qf, "2027-10", at("2027-09-20 10:00"), []string{"--period 2027-10 is a month to come"}},
		// The 1st a Sunday: the first full weekend is the 7th and 8th.
		{"qf month starting on a Sunday", qf, "", at("2026-11-08 12:00"), []string{"before Monday 9 November"}},
		{"boursier in October", []schemas.Check{schemas.CheckEtudiantBoursier}, "", at("2027-10-20 10:00"), []string{"end of November"}},
		{"boursier in December", []schemas.Check{schemas.CheckEtudiantBoursier}, "", at("2027-12-01 10:00"), nil},
		{"scolarite in September", []schemas.Check{schemas.CheckScolarite}, "", at("2027-09-20 10:00"), []string{"mid-October"}},
		{"scolarite on 15 October", []schemas.Check{schemas.CheckScolarite}, "", at("2027-10-15 10:00"), nil},
		{"other checks", []schemas.Check{schemas.CheckRSA}, "", at("2027-09-01 10:00"), nil},
		{"all at once", []schemas.Check{schemas.CheckQuotientFamilial, schemas.CheckEtudiantBoursier, schemas.CheckScolarite}, "",
			at("2027-09-01 10:00"), []string{"quotient_familial", "etudiant_boursier", "scolarite"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FreshnessWarnings(tc.checks, tc.period, tc.now)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q lacks %q", got[i], w)
				}
			}
		})
	}
}

func TestDiffBatches(t *testing.T) {
	prev := ledger.Batch{ID: "bold", Tenant: "ville", Campaign: "2026-09"}
	cur := ledger.Batch{ID: "bnew", Tenant: "ville", Campaign: "2027-09"}
	s := func(v string) *string { return &v }
	n := func(v int64) *int64 { return &v }
	row := func(num int64, ref, status string, qf *int64, tranche *string, tarif *int64) schemas.ResultRow {
		r := schemas.ResultRow{RowNumber: num, Check: "quotient_familial", Status: status, QFValue: qf, Tranche: tranche, Tarif: tarif}
		if ref != "" {
			r.Reference = &ref
		}
		return r
	}
	type want struct {
		row, prevRow int64 // 0: null
		kind         string
	}
	for _, tc := range []struct {
		name      string
		old, next []schemas.ResultRow
		want      []want
	}{
		{"unchanged", []schemas.ResultRow{row(1, "", "ok", n(500), s("B"), n(160))},
			[]schemas.ResultRow{row(1, "", "ok", n(520), s("B"), n(160))}, nil},
		{"by row number", []schemas.ResultRow{
			row(1, "", "ok", n(500), s("B"), n(160)), row(2, "", "ok", n(300), s("A"), n(80)),
			row(3, "", "ok", n(900), s("C"), n(240)), row(4, "", "invalid_input", nil, nil, nil)},
			[]schemas.ResultRow{
				row(1, "", "ok", n(800), s("C"), n(240)), row(2, "", "not_found", nil, s("E"), n(410)),
				row(3, "", "ok", n(900), s("C"), n(250)), row(4, "", "invalid_input", nil, nil, nil), row(5, "", "ok", n(1), s("A"), n(80))},
			[]want{{1, 1, schemas.ChangeTranche}, {2, 2, schemas.ChangeStatus}, {3, 3, schemas.ChangeTarif}, {5, 0, schemas.ChangeAdded}}},
		{"no grid: the QF", []schemas.ResultRow{row(1, "", "ok", n(500), nil, nil), row(2, "", "ok", n(300), nil, nil)},
			[]schemas.ResultRow{row(1, "", "ok", n(501), nil, nil), row(2, "", "ok", n(300), nil, nil)},
			[]want{{1, 1, schemas.ChangeQF}}},
		// A family left, the others moved up a row; siblings pair in order.
		{"by reference", []schemas.ResultRow{
			row(1, "F001", "ok", n(500), s("B"), n(160)), row(2, "F002", "ok", n(300), s("A"), n(80)),
			row(3, "F002", "ok", n(300), s("A"), n(80)), row(4, "F003", "ok", n(900), s("C"), n(240))},
			[]schemas.ResultRow{
				row(1, "F002", "ok", n(300), s("A"), n(80)), row(2, "F002", "ok", n(300), s("A"), n(80)),
				row(3, "F003", "ok", n(1200), s("D"), n(320)), row(4, "F004", "ok", n(100), s("A"), n(80))},
			[]want{{0, 1, schemas.ChangeRemoved}, {3, 4, schemas.ChangeTranche}, {4, 0, schemas.ChangeAdded}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DiffBatches(prev, cur, tc.old, tc.next)
			if len(got) != len(tc.want) {
				t.Fatalf("%d rows, want %d: %+v", len(got), len(tc.want), got)
			}
			val := func(p *int64) int64 {
				if p == nil {
					return 0
				}
				return *p
			}
			for i, w := range tc.want {
				g := got[i]
				if val(g.RowNumber) != w.row || val(g.PreviousRowNumber) != w.prevRow || g.Change != w.kind ||
					g.BatchID != "bnew" || g.PreviousBatchID != "bold" || g.PreviousCampaign != "2026-09" {
					t.Errorf("row %d: %+v, want %+v", i, g, w)
				}
				if (g.OldStatus == nil) != (w.prevRow == 0) || (g.NewStatus == nil) != (w.row == 0) {
					t.Errorf("row %d: old %v new %v", i, g.OldStatus, g.NewStatus)
				}
			}
			if c := CountChanges(got); int(c[schemas.ChangeAdded]+c[schemas.ChangeRemoved]+c[schemas.ChangeStatus]+
				c[schemas.ChangeTranche]+c[schemas.ChangeTarif]+c[schemas.ChangeQF]) != len(got) {
				t.Errorf("counts %v", c)
			}
		})
	}
}

func TestSchoolYearCampaign(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   string
		loc  *time.Location
		want string
	}{
		{"2027-09-01 00:00", paris, "2027-09"},
		{"2027-09-10 20:00", paris, "2027-09"},
		{"2027-12-31 23:59", paris, "2027-09"},
		{"2028-01-01 00:00", paris, "2027-09"},
		{"2028-08-31 23:59", paris, "2027-09"},
		{"2027-08-31 23:59", paris, "2026-09"},
		{"2026-12-07 12:00", paris, "2026-09"},
		// The date in t's location: 22:30 UTC on August 31st is already
		// September 1st in Paris.
		{"2027-08-31 22:30", time.UTC, "2026-09"},
		{"0999-10-01 00:00", time.UTC, "0999-09"},
	} {
		at, err := time.ParseInLocation("2006-01-02 15:04", tc.at, tc.loc)
		if err != nil {
			t.Fatal(err)
		}
		if got := SchoolYearCampaign(at); got != tc.want {
			t.Errorf("SchoolYearCampaign(%s %s) = %s, want %s", tc.at, tc.loc, got, tc.want)
		}
	}
	utc, _ := time.ParseInLocation("2006-01-02 15:04", "2027-08-31 22:30", time.UTC)
	if got := SchoolYearCampaign(utc.In(paris)); got != "2027-09" {
		t.Errorf("22:30 UTC on 2027-08-31, in Paris: %s, want 2027-09", got)
	}
}
