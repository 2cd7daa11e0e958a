package schemas

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// InputsMode says what becomes of an uploaded roster once its batch is
// published (complete, manifest written).
type InputsMode string

// Input retention modes.
const (
	// InputsDelete deletes the roster as soon as its batch is published.
	InputsDelete InputsMode = "delete"
	// InputsQuarantine moves the roster to quarantine/<tenant>/<campaign>/<batch>/<file>
	// once its batch is published, and deletes it Days after publication.
	InputsQuarantine InputsMode = "quarantine"
	// InputsKeepLatest keeps, for each campaign, the roster of the latest
	// published batch (what "apbatch refresh" re-reads) and deletes the
	// others once a newer roster of the campaign is published. The latest
	// roster goes with its results when they expire.
	InputsKeepLatest InputsMode = "keep-latest"
	// InputsKeep keeps every roster Days after its batch is published.
	InputsKeep InputsMode = "keep"
)

// Retention defaults and floors.
const (
	// DefaultResultsMonths is how long results (part files, manifests,
	// diffs) and their ledger rows are kept after a batch ends.
	DefaultResultsMonths = 36
	// MinAuditMonths is the traceability the API's terms of use require:
	// every call is kept at least this long.
	MinAuditMonths = 36
	// DefaultInputDays is the Days of the quarantine and keep modes.
	DefaultInputDays = 30
	// DefaultUnprocessedDays is how long an input that never got a
	// published batch (a refused file, an upload never ingested) is kept
	// after its upload.
	DefaultUnprocessedDays = 30
)

// RetentionPolicy is how long apbatch keeps a tenant's data; "apbatch purge"
// applies it. It is written in YAML, in config/<tenant>/retention.yaml (one
// tenant) or config/retention.yaml (every tenant without its own value);
// absent fields take the value of the level above, then the defaults:
//
//	inputs:
//	  after_publish: keep-latest   # delete | quarantine | keep-latest | keep
//	  days: 30                     # quarantine, keep: days after publication
//	  unprocessed_days: 30         # refused or never-ingested uploads
//	results:
//	  months: 36                   # part files, manifests, diffs, ledger rows
//	audit:
//	  months: 36                   # provider calls; at least 36
type RetentionPolicy struct {
	Inputs  InputsRetention `yaml:"inputs"`
	Results MonthsRetention `yaml:"results"`
	Audit   MonthsRetention `yaml:"audit"`
}

// InputsRetention is the retention of uploaded rosters under incoming/ and
// quarantine/.
type InputsRetention struct {
	// AfterPublish is the mode. Default: InputsKeepLatest.
	AfterPublish InputsMode `yaml:"after_publish"`
	// Days is how long a roster stays after its batch is published, in
	// the quarantine and keep modes (ignored by the others).
	// Default: DefaultInputDays.
	Days int `yaml:"days"`
	// UnprocessedDays is how long an upload without a published batch
	// (refused, or never ingested) stays after its upload; uploads whose
	// batch is still running are never removed. Default:
	// DefaultUnprocessedDays.
	UnprocessedDays int `yaml:"unprocessed_days"`
}

// MonthsRetention is a retention in months.
type MonthsRetention struct {
	// Months kept. Default: 36.
	Months int `yaml:"months"`
}

// DefaultRetention returns the policy of a tenant without any retention
// file: latest roster kept, results and audit 36 months.
func DefaultRetention() RetentionPolicy {
	return RetentionPolicy{
		Inputs:  InputsRetention{AfterPublish: InputsKeepLatest, Days: DefaultInputDays, UnprocessedDays: DefaultUnprocessedDays},
		Results: MonthsRetention{Months: DefaultResultsMonths},
		Audit:   MonthsRetention{Months: MinAuditMonths},
	}
}

// ParseRetention reads a retention file. Fields left out are zero (they
// inherit, see Override); what is given is checked.
func ParseRetention(b []byte) (RetentionPolicy, error) {
	var p RetentionPolicy
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	// An empty file (io.EOF) inherits everything.
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return RetentionPolicy{}, fmt.Errorf("retention policy: %w", err)
	}
	if err := p.check(false); err != nil {
		return RetentionPolicy{}, err
	}
	return p, nil
}

// Override returns p with the fields set in o (non-zero) replacing its own.
func (p RetentionPolicy) Override(o RetentionPolicy) RetentionPolicy {
	if o.Inputs.AfterPublish != "" {
		p.Inputs.AfterPublish = o.Inputs.AfterPublish
	}
	if o.Inputs.Days != 0 {
		p.Inputs.Days = o.Inputs.Days
	}
	if o.Inputs.UnprocessedDays != 0 {
		p.Inputs.UnprocessedDays = o.Inputs.UnprocessedDays
	}
	if o.Results.Months != 0 {
		p.Results.Months = o.Results.Months
	}
	if o.Audit.Months != 0 {
		p.Audit.Months = o.Audit.Months
	}
	return p
}

// Validate checks a complete policy (defaults applied): a known mode,
// positive durations, and an audit retention of at least MinAuditMonths.
func (p RetentionPolicy) Validate() error { return p.check(true) }

func (p RetentionPolicy) check(complete bool) error {
	switch p.Inputs.AfterPublish {
	case InputsDelete, InputsQuarantine, InputsKeepLatest, InputsKeep:
	case "":
		if complete {
			return errors.New("retention policy: inputs.after_publish is required (delete, quarantine, keep-latest or keep)")
		}
	default:
		return fmt.Errorf("retention policy: inputs.after_publish %q: want delete, quarantine, keep-latest or keep", p.Inputs.AfterPublish)
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"inputs.days", p.Inputs.Days}, {"inputs.unprocessed_days", p.Inputs.UnprocessedDays},
		{"results.months", p.Results.Months}, {"audit.months", p.Audit.Months},
	} {
		if f.v < 0 || (complete && f.v == 0) {
			return fmt.Errorf("retention policy: %s must be positive (got %d)", f.name, f.v)
		}
	}
	if p.Audit.Months != 0 && p.Audit.Months < MinAuditMonths {
		return fmt.Errorf("retention policy: audit.months %d is below the %d months of traceability API Particulier's terms of use require; "+
			"the audit trail holds no identity (a keyed hash), keep it at least %d months", p.Audit.Months, MinAuditMonths, MinAuditMonths)
	}
	return nil
}

// ResultsCutoff returns the instant before which a batch's end puts its
// results past retention.
func (p RetentionPolicy) ResultsCutoff(now time.Time) time.Time {
	return now.AddDate(0, -p.Results.Months, 0)
}

// AuditCutoff returns the instant before which provider calls are past
// retention.
func (p RetentionPolicy) AuditCutoff(now time.Time) time.Time {
	return now.AddDate(0, -p.Audit.Months, 0)
}

// InputsCutoff returns the instant before which a publication puts a roster
// kept for Days (quarantine and keep modes) past retention.
func (p RetentionPolicy) InputsCutoff(now time.Time) time.Time {
	return now.AddDate(0, 0, -p.Inputs.Days)
}

// UnprocessedCutoff returns the instant before which an upload without a
// published batch is past retention.
func (p RetentionPolicy) UnprocessedCutoff(now time.Time) time.Time {
	return now.AddDate(0, 0, -p.Inputs.UnprocessedDays)
}
