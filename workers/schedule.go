package workers

import (
	"fmt"
	"strings"
	"time"
)

// Window is a daily time range, in the Schedule's location, that may cross
// midnight (20:00-07:00), optionally on one weekday only (the day it starts).
type Window struct {
	From, To time.Duration // since midnight
	// Weekday restricts the window to one day; nil means every day.
	Weekday *time.Weekday
}

// ParseWindow parses "HH:MM-HH:MM".
func ParseWindow(s string) (Window, error) {
	from, to, ok := strings.Cut(strings.TrimSpace(s), "-")
	f, err1 := parseClock(from)
	t, err2 := parseClock(to)
	if !ok || err1 != nil || err2 != nil || f == t {
		return Window{}, fmt.Errorf("workers: window %q: want HH:MM-HH:MM, e.g. 20:00-07:00", s)
	}
	return Window{From: f, To: t}, nil
}

func parseClock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, err
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// Contains reports whether t (already in the right location) is inside.
func (w Window) Contains(t time.Time) bool {
	midnight := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location())
	since := t.Sub(midnight)
	day := t.Weekday()
	if w.From < w.To {
		return since >= w.From && since < w.To && (w.Weekday == nil || *w.Weekday == day)
	}
	// Crosses midnight: the evening part starts on the window's day, the
	// morning part belongs to the day before.
	if since >= w.From {
		return w.Weekday == nil || *w.Weekday == day
	}
	return since < w.To && (w.Weekday == nil || *w.Weekday == (day+6)%7)
}

// Schedule says when calls may be made: inside one of Run (any time when
// Run is empty) and outside every Blackout (the providers' maintenance
// windows). The zero value allows any time.
type Schedule struct {
	// Location of the windows. Default: UTC.
	Location *time.Location
	Run      []Window
	Blackout []Window
	// Maintenance adds, for each call, the maintenance windows of the
	// provider behind its check (CNAF & MSA, MEN) to Blackout.
	Maintenance bool
}

// QuotientFamilialMaintenance is the QF route's providers' maintenance, from
// the operator's settings: CNAF & MSA on Sundays 23:00–23:45, MSA daily
// 03:00–03:30 (Europe/Paris).
func QuotientFamilialMaintenance() []Window {
	sunday := time.Sunday
	return []Window{
		{From: 23 * time.Hour, To: 23*time.Hour + 45*time.Minute, Weekday: &sunday},
		{From: 3 * time.Hour, To: 3*time.Hour + 30*time.Minute},
	}
}

func (s Schedule) allowed(t time.Time) bool {
	if s.Location != nil {
		t = t.In(s.Location)
	}
	for _, b := range s.Blackout {
		if b.Contains(t) {
			return false
		}
	}
	if len(s.Run) == 0 {
		return true
	}
	for _, r := range s.Run {
		if r.Contains(t) {
			return true
		}
	}
	return false
}

// Next returns the first instant from t on when calls are allowed, to the
// minute, or t itself when they are allowed now. It looks 8 days ahead and
// returns the zero time if nothing is allowed in that span.
func (s Schedule) Next(t time.Time) time.Time {
	if s.allowed(t) {
		return t
	}
	c := t.Truncate(time.Minute)
	for i := 0; i < 8*24*60; i++ {
		c = c.Add(time.Minute)
		if s.allowed(c) {
			return c
		}
	}
	return time.Time{}
}
