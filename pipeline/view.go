package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

// BatchView is what a front end shows of a batch: its state in French,
// its counts, and its progress with an ETA while it runs.
type BatchView struct {
	ID, Tenant, Campaign string
	// File is the base name of the roster verified.
	File  string
	State string
	// Label is the state as agents read it (StateLabel).
	Label     string
	Error     string
	Checks    []schemas.Check
	CreatedAt time.Time
	// CompletedAt is when its results were published; nil before.
	CompletedAt *time.Time
	// RowsTotal is the roster's rows (0 until split); Results the results
	// expected (rows × checks) and Recorded those written so far.
	RowsTotal, Results, Recorded int64
	// RowsByStatus counts the results recorded by status.
	RowsByStatus map[schemas.Status]int64
	// Calls are the provider calls made so far, Lookups those the batch
	// needs (one per distinct person and check).
	Calls, Lookups int64
	// Percent is the progress, 0 to 100; ETA the time left while it runs
	// (0 when unknown or ended).
	Percent int
	ETA     time.Duration

	// cancelling: cancelled, what it has not published yet (Follower).
	cancelling bool
}

// Running tells whether the batch may still progress.
func (v BatchView) Running() bool {
	return v.State == ledger.StateCreated || v.State == ledger.StateSplit
}

// Published tells whether the batch's results can be downloaded.
func (v BatchView) Published() bool {
	return v.State == ledger.StateComplete || v.State == ledger.StateCancelled
}

// StateLabel names a batch state in French.
func StateLabel(state string) string {
	switch state {
	case ledger.StateCreated:
		return "reçu, en préparation"
	case ledger.StateSplit:
		return "vérification en cours"
	case ledger.StateComplete:
		return "terminé"
	case ledger.StateFailed:
		return "refusé"
	case ledger.StateCancelled:
		return "annulé"
	}
	return state
}

// ViewBatch reads what a front end shows of b at now: counts from the
// ledger, progress from the calls made and the results written.
func ViewBatch(ctx context.Context, store *ledger.Store, b ledger.Batch, now time.Time) (BatchView, error) {
	v := BatchView{ID: b.ID, Tenant: b.Tenant, Campaign: b.Campaign, File: path.Base(b.ObjectKey), State: b.State,
		Label: StateLabel(b.State), Error: b.Error, Checks: b.CheckList(), CreatedAt: b.CreatedAt, CompletedAt: b.CompletedAt}
	counts, err := store.Counts(ctx, b.ID)
	if err != nil {
		return v, err
	}
	v.RowsByStatus, v.Recorded = counts.ByStatus, counts.Rows
	if b.RowsTotal != nil {
		v.RowsTotal = *b.RowsTotal
		v.Results = v.RowsTotal * int64(len(v.Checks))
	}
	if b.LookupsTotal != nil {
		v.Lookups = *b.LookupsTotal
	}
	if v.Running() && v.Lookups > 0 {
		if v.Calls, err = store.CallsSince(ctx, b.ID, time.Time{}); err != nil {
			return v, err
		}
	}
	switch {
	case !v.Running():
		v.Percent = 100
	case v.Results > 0:
		f := float64(v.Recorded) / float64(v.Results)
		if v.Lookups > 0 {
			f = max(f, float64(min(v.Calls, v.Lookups))/float64(v.Lookups))
		}
		// 100 % is for published results only.
		v.Percent = min(int(f*100), 99)
	}
	if v.Running() && b.SplitAt != nil && v.Calls > 0 && v.Calls < v.Lookups {
		elapsed := now.Sub(*b.SplitAt)
		rate := float64(v.Calls) / elapsed.Seconds()
		if rate > 0 {
			v.ETA = time.Duration(float64(v.Lookups-v.Calls) / rate * float64(time.Second)).Round(time.Second)
		}
	}
	return v, nil
}

// FormatETA writes d as agents read it: "environ 3 min", "moins d'une
// minute", "" when unknown.
func FormatETA(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d < time.Minute:
		return "moins d'une minute"
	case d < time.Hour:
		return fmt.Sprintf("environ %d min", int(d.Round(time.Minute)/time.Minute))
	}
	h := int(d / time.Hour)
	m := int((d % time.Hour).Round(time.Minute) / time.Minute)
	if m == 0 {
		return fmt.Sprintf("environ %d h", h)
	}
	return fmt.Sprintf("environ %d h %02d", h, m)
}

// Correction is a roster line an agent must correct, and why.
type Correction struct {
	Line    int64
	Check   schemas.Check
	Message string
	// Column is the column to correct as the file's header names it, ""
	// when the whole line is at fault; Action what is wrong and what to
	// do, Message without its line and column.
	Column, Action string
}

// newCorrection splits a row's message, "ligne 9, colonne « Date » : …"
// or "ligne 9 : …", into its column and action.
func newCorrection(line int64, check schemas.Check, msg string) Correction {
	c := Correction{Line: line, Check: check, Message: msg, Action: msg}
	// A row's first problem names its place; the others follow it.
	first, rest, _ := strings.Cut(msg, " ; ligne ")
	prefix := "ligne " + strconv.FormatInt(line, 10)
	if after, ok := strings.CutPrefix(first, prefix+", colonne « "); ok {
		if col, action, ok := strings.Cut(after, " » : "); ok {
			c.Column, c.Action = col, action
		}
	} else if after, ok := strings.CutPrefix(first, prefix+" : "); ok {
		c.Action = after
	}
	if rest != "" {
		c.Action += " ; ligne " + rest
	}
	return c
}

// Corrections returns the lines of a published batch whose results are
// invalid input, in line order, at most limit of them, and how many there
// are in all.
func Corrections(ctx context.Context, e *Exporter, id string, limit int) ([]Correction, int, error) {
	rows, err := BatchResults(ctx, e.S3, e.Ledger, id)
	if err != nil {
		return nil, 0, err
	}
	var out []Correction
	n := 0
	seen := map[int64]bool{}
	for _, r := range rows {
		if r.Status != string(schemas.StatusInvalidInput) || seen[r.RowNumber] {
			continue
		}
		// One line to correct, whatever its number of checks.
		seen[r.RowNumber] = true
		n++
		out = append(out, newCorrection(r.RowNumber, schemas.Check(r.Check), deref(r.ErrorMessage)))
	}
	slices.SortFunc(out, func(a, b Correction) int { return cmp.Compare(a.Line, b.Line) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, n, nil
}
