package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

// Follower follows batches in the ledger until each has ended, as a
// scheduler does with the batches it submitted to role processes
// (apbatch refresh --wait). It only reads the ledger; the zero value
// with Ledger set is ready to use.
type Follower struct {
	Ledger *ledger.Store
	// Interval is the time between two reads of the ledger.
	// Default: 10 s.
	Interval time.Duration
	// Timeout bounds the wait; the batches still running then are
	// reported as unfinished. Default: none (until ctx ends).
	Timeout time.Duration
	// Progress, when set, receives the view of a batch when its state
	// changes, when its progress passes a tenth, at least every
	// ProgressEvery while it runs, and when it ends.
	Progress func(BatchView)
	// ProgressEvery is the longest time between two progress reports of a
	// running batch. Default: 5 min.
	ProgressEvery time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// StatePending is the state of a batch view whose batch the ledger does not
// hold yet: its upload event is not consumed by the ingest role.
const StatePending = "pending"

func (f *Follower) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Follow reads batches ids in the ledger every Interval until each has
// ended (complete, refused, or cancelled and published), and returns their
// last views in the order of ids. A batch the ledger does not hold yet is
// waited for (StatePending). Follow blocks until then, until Timeout, or
// until ctx ends (ctx's error, wrapped). When every batch completed, the
// error is nil; when one was refused or cancelled, or still runs at the
// deadline, it is a *FollowError.
func (f *Follower) Follow(ctx context.Context, ids []string) ([]BatchView, error) {
	interval := f.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	every := f.ProgressEvery
	if every <= 0 {
		every = 5 * time.Minute
	}
	var deadline time.Time
	if f.Timeout > 0 {
		deadline = f.now().Add(f.Timeout)
	}
	type shown struct {
		state  string
		tenths int
		at     time.Time
	}
	last := make([]*shown, len(ids))
	views := make([]BatchView, len(ids))
	ended := make([]bool, len(ids))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		running := 0
		for i, id := range ids {
			if ended[i] {
				continue
			}
			v, err := f.view(ctx, id)
			if err != nil {
				return views, err
			}
			views[i] = v
			ended[i] = v.ended()
			if !ended[i] {
				running++
			}
			now := f.now()
			if s := last[i]; f.Progress != nil && (s == nil || s.state != v.State || s.tenths != v.Percent/10 || ended[i] || now.Sub(s.at) >= every) {
				f.Progress(v)
				last[i] = &shown{state: v.State, tenths: v.Percent / 10, at: now}
			}
		}
		if running == 0 {
			return views, followError(views, 0)
		}
		if !deadline.IsZero() && !f.now().Before(deadline) {
			return views, followError(views, f.Timeout)
		}
		select {
		case <-ctx.Done():
			return views, fmt.Errorf("follow: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// view reads batch id's view; a batch not recorded yet is pending.
func (f *Follower) view(ctx context.Context, id string) (BatchView, error) {
	b, err := f.Ledger.Batch(ctx, id)
	if errors.Is(err, ledger.ErrNotFound) {
		return BatchView{ID: id, State: StatePending, Label: "pas encore reçu par le rôle ingest"}, nil
	}
	if err != nil {
		return BatchView{ID: id}, fmt.Errorf("follow %s: %w", id, err)
	}
	v, err := ViewBatch(ctx, f.Ledger, b, f.now())
	if err != nil {
		return v, fmt.Errorf("follow %s: %w", id, err)
	}
	// A cancelled batch ends once what it has is published.
	v.cancelling = b.State == ledger.StateCancelled && !b.Published()
	return v, nil
}

// ended reports whether nothing more happens to the batch viewed.
func (v BatchView) ended() bool {
	return !v.Running() && v.State != StatePending && !v.cancelling
}

// FormatProgress writes, in French, where a followed batch is: "ville-a :
// lot b12… vérification en cours, 45 %, environ 3 min".
func FormatProgress(v BatchView) string {
	who := "lot " + v.ID
	if v.Tenant != "" {
		who = v.Tenant + " : lot " + v.ID
	}
	switch {
	case v.State == StatePending || v.cancelling:
		if v.cancelling {
			return who + " : annulé, publication de ce qu'il a"
		}
		return who + " : " + v.Label
	case v.Running():
		s := fmt.Sprintf("%s : %s, %d %%", who, v.Label, v.Percent)
		if eta := FormatETA(v.ETA); eta != "" {
			s += ", " + eta
		}
		return s
	}
	return fmt.Sprintf("%s : %s, %d résultat(s)%s", who, v.Label, v.Recorded, formatByStatus(v))
}

// formatByStatus writes a view's results by status, in French: " (trouvé
// 28, non trouvé 2)".
func formatByStatus(v BatchView) string {
	var parts []string
	for _, st := range schemas.Statuses {
		if n := v.RowsByStatus[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st.Label(), n))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// FollowError is Follow's error when a batch did not complete.
type FollowError struct {
	// Failed are the batches refused (at split), Cancelled those
	// cancelled, Unfinished those still running (or not recorded) at the
	// deadline.
	Failed, Cancelled, Unfinished []BatchView
	// Total is the number of batches followed; Timeout the wait, when
	// some are unfinished.
	Total   int
	Timeout time.Duration
}

// followError returns the *FollowError of views, nil when every batch
// completed.
func followError(views []BatchView, timeout time.Duration) error {
	e := &FollowError{Total: len(views), Timeout: timeout}
	for _, v := range views {
		switch {
		case v.State == ledger.StateComplete:
		case v.State == ledger.StateFailed:
			e.Failed = append(e.Failed, v)
		case v.State == ledger.StateCancelled && !v.cancelling:
			e.Cancelled = append(e.Cancelled, v)
		default:
			e.Unfinished = append(e.Unfinished, v)
		}
	}
	if len(e.Failed)+len(e.Cancelled)+len(e.Unfinished) == 0 {
		return nil
	}
	return e
}

// Error says, in French, how many batches did not complete and which.
func (e *FollowError) Error() string {
	n := len(e.Failed) + len(e.Cancelled) + len(e.Unfinished)
	var which []string
	for _, g := range []struct {
		vs    []BatchView
		label string
	}{{e.Failed, "refusé"}, {e.Cancelled, "annulé"}, {e.Unfinished, "pas terminé"}} {
		for _, v := range g.vs {
			which = append(which, fmt.Sprintf("%s %s", who(v), g.label))
		}
	}
	s := fmt.Sprintf("%d lot(s) sur %d sans résultat complet : %s", n, e.Total, strings.Join(which, ", "))
	if len(e.Unfinished) > 0 && e.Timeout > 0 {
		s += fmt.Sprintf(" (après %s d'attente)", e.Timeout)
	}
	return s
}

// who names a batch in a message: "ville-a (lot b12…)".
func who(v BatchView) string {
	if v.Tenant == "" {
		return "lot " + v.ID
	}
	return v.Tenant + " (lot " + v.ID + ")"
}

// Advice says, in French, what to do next for each batch that did not
// complete, one line each. statusCmd is how the operator reads the ledger
// ("apbatch status --db ..."), campaign the campaign of the batches.
func (e *FollowError) Advice(statusCmd string) []string {
	var out []string
	for _, v := range e.Failed {
		reason := v.Error
		if reason == "" {
			reason = "raison inconnue"
		}
		out = append(out, fmt.Sprintf("%s : refusé : %s. Corrigez le fichier (ou la configuration de la collectivité), puis déposez-le à nouveau pour la campagne %s (portail, ou apbatch run --tenant %s --campaign %s FICHIER) : la campagne est déjà rafraîchie, apbatch refresh ne la relance pas.",
			who(v), strings.TrimSuffix(reason, "."), v.Campaign, v.Tenant, v.Campaign))
	}
	for _, v := range e.Cancelled {
		out = append(out, fmt.Sprintf("%s : annulé ; les lignes vérifiées avant l'annulation sont publiées (apbatch results %s). Pour tout vérifier, déposez le fichier à nouveau pour la campagne %s.",
			who(v), v.ID, v.Campaign))
	}
	for _, v := range e.Unfinished {
		if v.State == StatePending {
			out = append(out, fmt.Sprintf("%s : pas encore reçu par le rôle ingest ; vérifiez qu'il tourne et lit le sujet des dépôts, puis suivez le lot avec %s %s.", who(v), statusCmd, v.ID))
			continue
		}
		out = append(out, fmt.Sprintf("%s : toujours en cours dans les rôles (%d %%) ; suivez-le avec %s %s, ou relancez la même commande avec --wait : elle reprend le suivi sans rien relancer.",
			who(v), v.Percent, statusCmd, v.ID))
	}
	return out
}
