package workers

import (
	"testing"
	"time"
)

func TestSchedule_Next(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no time zone data")
	}
	night, err := ParseWindow("20:00-07:00")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tt, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	qf := Schedule{Location: paris, Blackout: QuotientFamilialMaintenance()}
	nightly := Schedule{Location: paris, Run: []Window{night}, Blackout: QuotientFamilialMaintenance()}
	for _, tc := range []struct {
		name     string
		s        Schedule
		at, want string
	}{
		{"weekday noon, no window", qf, "2026-09-16 12:00", "2026-09-16 12:00"},
		{"Sunday CNAF maintenance", qf, "2026-09-13 23:10", "2026-09-13 23:45"},
		{"Monday 23:10 is fine", qf, "2026-09-14 23:10", "2026-09-14 23:10"},
		{"daily MSA maintenance", qf, "2026-09-16 03:05", "2026-09-16 03:30"},
		{"night window, afternoon", nightly, "2026-09-16 14:00", "2026-09-16 20:00"},
		{"night window, after midnight", nightly, "2026-09-17 01:00", "2026-09-17 01:00"},
		{"night window, maintenance inside", nightly, "2026-09-17 03:10", "2026-09-17 03:30"},
		{"night window, morning end", nightly, "2026-09-17 07:00", "2026-09-17 20:00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Next(at(tc.at)); !got.Equal(at(tc.want)) {
				t.Fatalf("Next(%s) = %s, want %s", tc.at, got.In(paris).Format("2006-01-02 15:04"), tc.want)
			}
		})
	}
	for _, bad := range []string{"", "20:00", "25:00-07:00", "08:00-08:00"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q) accepted", bad)
		}
	}
}
