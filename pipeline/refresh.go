package pipeline

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// Outcomes of a tenant's refresh.
const (
	// RefreshStarted: the roster was submitted again as a new batch.
	RefreshStarted = "started"
	// RefreshAlready: a refresh of this campaign was submitted before.
	RefreshAlready = "already"
	// RefreshHasBatch: the tenant uploaded a roster in this campaign.
	RefreshHasBatch = "has_batch"
	// RefreshNoRoster: the tenant has no complete batch to refresh.
	RefreshNoRoster = "no_roster"
	// RefreshRosterGone: the accepted roster is no longer in the bucket,
	// or was replaced there by another file.
	RefreshRosterGone = "roster_gone"
)

// Refresher submits each tenant's latest accepted roster (the file of its
// last complete batch, any campaign) again as a batch of a new campaign: it
// copies the file under incoming/<tenant>/<campaign>/ in the bucket and
// publishes its upload event, as an upload does. A refresh is recorded in
// the ledger once per tenant and campaign, before the copy: firing it again
// starts nothing new. The ingest gives the new batch the checks and the
// recipient of the batch it copies (see Ingester).
type Refresher struct {
	S3      *s3.Client
	Ledger  *ledger.Store
	Uploads MessageWriter // topic apbatch.uploads
	Log     zerolog.Logger
}

// RefreshResult is what a refresh did for one tenant.
type RefreshResult struct {
	Tenant string
	// Outcome is one of the Refresh* outcomes.
	Outcome string
	// BatchID is the campaign's batch: the one started, or the one found.
	BatchID string
	// Source is the batch whose roster was submitted again (zero when
	// there is none).
	Source ledger.Batch
	// Checks are the checks of the new batch (those of Source).
	Checks []schemas.Check
}

// Refresh refreshes tenant for campaign, asking the QF of period
// ("YYYY-MM", "" for the API's current month).
func (r *Refresher) Refresh(ctx context.Context, tenant, campaign, period string) (RefreshResult, error) {
	res := RefreshResult{Tenant: tenant}
	log := r.Log.With().Str("component", "refresh").Str("tenant", tenant).Str("campaign", campaign).Logger()
	rf, err := r.Ledger.Refresh(ctx, tenant, campaign)
	if err == nil && rf.BatchID != "" {
		_, err := r.Ledger.Batch(ctx, rf.BatchID)
		if err == nil {
			return r.found(ctx, res, RefreshAlready, rf.BatchID, rf.SourceBatch)
		}
		if !errors.Is(err, ledger.ErrNotFound) {
			return res, err
		}
		// Submitted, but no batch yet: the event may have been lost
		// (stopped before publishing it) or not consumed yet; it is
		// published again (the ingest starts one batch per version).
	}
	switch {
	case err == nil:
		// Recorded, not submitted (stopped in between): go on.
	case !errors.Is(err, ledger.ErrNotFound):
		return res, err
	default:
		bs, err := r.Ledger.TenantBatches(ctx, tenant, campaign)
		if err != nil {
			return res, err
		}
		for _, b := range bs {
			if b.State != ledger.StateFailed {
				res.Outcome, res.BatchID = RefreshHasBatch, b.ID
				return res, nil
			}
		}
		src, err := r.Ledger.LatestComplete(ctx, tenant, campaign)
		if errors.Is(err, ledger.ErrNotFound) {
			res.Outcome = RefreshNoRoster
			return res, nil
		}
		if err != nil {
			return res, err
		}
		res.Source, res.Checks = src, src.CheckList()
		ok, err := r.sourceIntact(ctx, src)
		if err != nil {
			return res, err
		}
		if !ok {
			res.Outcome = RefreshRosterGone
			return res, nil
		}
		key := IncomingKey{Tenant: tenant, Campaign: campaign, File: path.Base(src.ObjectKey)}.String()
		var created bool
		rf, created, err = r.Ledger.RecordRefresh(ctx, ledger.Refresh{Tenant: tenant, Campaign: campaign,
			SourceBatch: src.ID, ObjectKey: key, Period: period})
		if err != nil {
			return res, err
		}
		if !created && rf.BatchID != "" {
			// Fired twice at once: the other one submitted it.
			return r.found(ctx, res, RefreshAlready, rf.BatchID, rf.SourceBatch)
		}
	}
	src, err := r.Ledger.Batch(ctx, rf.SourceBatch)
	if err != nil {
		return res, err
	}
	res.Source, res.Checks = src, src.CheckList()
	// A copy left by a refresh stopped before its event is reused.
	obj, err := r.S3.Head(ctx, rf.ObjectKey)
	if errors.Is(err, s3.ErrNotFound) {
		pin := PinnedVersion(src)
		if !Pinned(pin) {
			res.Outcome = RefreshRosterGone
			return res, nil
		}
		// The very version the source batch verified, whatever the key
		// holds now.
		obj, err = r.S3.CopyVersion(ctx, src.ObjectKey, pin, rf.ObjectKey)
		if errors.Is(err, s3.ErrNotFound) {
			res.Outcome = RefreshRosterGone
			return res, nil
		}
	}
	if err != nil {
		return res, fmt.Errorf("refresh %s: %w", tenant, err)
	}
	version := ObjectVersion(obj.VersionID, obj.ETag, "")
	id := ledger.BatchID(r.S3.Bucket(), rf.ObjectKey, version)
	if err := r.Ledger.SetRefreshBatch(ctx, tenant, campaign, id); err != nil {
		return res, err
	}
	if err := PublishUpload(ctx, r.Uploads, r.S3.Bucket(), rf.ObjectKey, obj, obj.VersionID); err != nil {
		return res, fmt.Errorf("refresh %s: %w", tenant, err)
	}
	log.Info().Str("batch_id", id).Str("source_batch_id", src.ID).Msg("roster submitted again")
	res.Outcome, res.BatchID = RefreshStarted, id
	return res, nil
}

// found fills res for a campaign that has its batch already.
func (r *Refresher) found(ctx context.Context, res RefreshResult, outcome, id, source string) (RefreshResult, error) {
	res.Outcome, res.BatchID = outcome, id
	src, err := r.Ledger.Batch(ctx, source)
	if err != nil {
		return res, err
	}
	res.Source, res.Checks = src, src.CheckList()
	return res, nil
}

// sourceIntact reports whether the bucket still holds the version of the
// file src verified (its version id, or its content by ETag in an
// unversioned bucket). A version made up by "run --force" before ETags were
// recorded cannot be checked: it does not pass.
func (r *Refresher) sourceIntact(ctx context.Context, src ledger.Batch) (bool, error) {
	pin := PinnedVersion(src)
	if !Pinned(pin) {
		return false, nil
	}
	_, err := r.S3.HeadVersion(ctx, src.ObjectKey, pin)
	if errors.Is(err, s3.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("refresh %s: %w", src.Tenant, err)
	}
	return true, nil
}

// CampaignAuto, given as a campaign, stands for SchoolYearCampaign of the
// run's date (apbatch refresh --campaign auto).
const CampaignAuto = "auto"

// SchoolYearCampaign returns the campaign of the school year t falls in,
// "YYYY-09" for the year starting on September 1st: "2027-09" from
// 2027-09-01 to 2028-08-31. The date is t's in its own location: give
// Europe/Paris time, where French school years turn.
func SchoolYearCampaign(t time.Time) string {
	y := t.Year()
	if t.Month() < time.September {
		y--
	}
	return fmt.Sprintf("%04d-09", y)
}

// ForcedVersionPrefix starts the object versions "run --force" makes up so
// that the same content becomes a new batch.
const ForcedVersionPrefix = "forced-"

// FreshnessWarnings says, for the checks of a batch started at now, which
// sources have not published this period's data yet (API Particulier
// reference, §3): the CAF updates quotients familiaux after the first
// weekend of each month; the CNOUS scholarship holders are complete only at
// the end of November; the MEN non-boursier status is reliable only from
// mid-October (the bursary base is purged every August). period is the QF
// month asked ("" for now's month). now should be in Europe/Paris time.
func FreshnessWarnings(checks []schemas.Check, period string, now time.Time) []string {
	var out []string
	if slices.Contains(checks, schemas.CheckQuotientFamilial) {
		y, m := now.Year(), now.Month()
		if p, err := ParsePeriod(period); err == nil && period != "" {
			y, m = p.Year, time.Month(p.Month)
		}
		first := time.Date(y, m, 1, 0, 0, 0, 0, now.Location())
		sat := first.AddDate(0, 0, (int(time.Saturday)-int(first.Weekday())+7)%7)
		fresh := sat.AddDate(0, 0, 2) // the Monday after the first full weekend
		switch {
		case first.After(now):
			out = append(out, fmt.Sprintf("quotient_familial: --period %s is a month to come; the CAF has no quotient for it yet", first.Format("2006-01")))
		case now.Before(fresh):
			out = append(out, fmt.Sprintf("quotient_familial: the CAF updates quotients after the first weekend of the month; before %s the %s quotients of CAF families are not out yet (refresh from that day, or ask --period %s)",
				fresh.Format("Monday 2 January"), first.Format("2006-01"), first.AddDate(0, -1, 0).Format("2006-01")))
		}
	}
	if slices.Contains(checks, schemas.CheckEtudiantBoursier) && now.Month() >= time.September && now.Month() <= time.November {
		out = append(out, "etudiant_boursier: the CNOUS knows about 85 % of scholarship holders in October and all of them only at the end of November; students not found yet may be holders (refresh again in December)")
	}
	if slices.Contains(checks, schemas.CheckScolarite) && (now.Month() == time.August || now.Month() == time.September ||
		(now.Month() == time.October && now.Day() < 15)) {
		out = append(out, "scolarite: the MEN bursary base is purged every August; the non-boursier status is reliable only from mid-October (refresh again after 15 October)")
	}
	return out
}
