package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// More of the bucket's layout.
const (
	// QuarantinePrefix holds rosters moved out of incoming/ after their
	// batch was published (retention mode "quarantine"):
	// quarantine/<tenant>/<campaign>/<batch>/<file>.
	QuarantinePrefix = "quarantine/"
	// ConfigPrefix holds configuration: config/<tenant>/... per tenant,
	// config/retention.yaml for every tenant.
	ConfigPrefix = "config/"
	// DefaultRetentionKey is the retention policy of tenants without
	// their own (schemas.RetentionPolicy; absent fields take the defaults).
	DefaultRetentionKey = ConfigPrefix + "retention.yaml"
	// StagingGrace is how long a purge leaves a staged object whose batch
	// the ledger does not know.
	StagingGrace = 24 * time.Hour
)

// RetentionKey is where a tenant's retention policy lives in the bucket.
func RetentionKey(tenant string) string { return ConfigPrefix + tenant + "/retention.yaml" }

// QuarantineKey is where the roster of a published batch goes in the
// quarantine mode.
func QuarantineKey(k IncomingKey, batchID string) string {
	return QuarantinePrefix + k.Tenant + "/" + k.Campaign + "/" + batchID + "/" + k.File
}

// Removed counts objects removed (or moved) and their bytes.
type Removed struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

func (r *Removed) add(o s3.ObjectInfo) {
	r.Objects++
	r.Bytes += o.Size
}

// PurgeReport is what a purge removed for one tenant (or would remove, in a
// dry run).
type PurgeReport struct {
	Tenant string                  `json:"tenant"`
	Policy schemas.RetentionPolicy `json:"policy"`
	// Inputs are rosters deleted from incoming/.
	Inputs Removed `json:"inputs_deleted"`
	// Quarantined are rosters moved from incoming/ to quarantine/.
	Quarantined Removed `json:"inputs_quarantined"`
	// Quarantine are rosters deleted from quarantine/.
	Quarantine Removed `json:"quarantine_deleted"`
	// Results are part files, manifests, diffs and any other object of
	// expired batches' folders (results/, staging/, diffs/), and what a
	// batch published, or failed, left under staging/.
	Results Removed `json:"results_deleted"`
	// InputsKept counts the rosters left in incoming/ (latest of a
	// campaign, kept for days, batch running, or uploaded recently).
	InputsKept int64 `json:"inputs_kept"`
	// Ledger counts the ledger rows removed: expired batches with their
	// parts and result rows, and audit records.
	Ledger ledger.PurgeCounts `json:"ledger"`
	DryRun bool               `json:"dry_run"`
}

// Purger applies tenants' retention policies (schemas.RetentionPolicy) to
// the bucket and the ledger. For each tenant it deletes results (objects
// of results/<tenant>/, staging/<tenant>/ and diffs/<tenant>/, and the
// ledger's batches, parts and result rows) whose batch ended before the
// results retention, what is left under staging/ of a batch published or
// failed (or unknown to the ledger for StagingGrace), the audit records older
// than the audit retention, and the rosters of incoming/<tenant>/ and
// quarantine/<tenant>/ that the inputs retention no longer keeps. A
// batch's age is its end (completed_at, or created_at for a batch that
// never ended) in the ledger; an object the ledger knows nothing of ages
// from its LastModified. Only a tenant's own prefixes and ledger rows are
// touched; objects are deleted before the ledger rows that name them, so a
// purge interrupted halfway is finished by the next one.
type Purger struct {
	S3     *s3.Client
	Ledger *ledger.Store
	Log    zerolog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// DryRun reports what would be removed and removes nothing.
	// Default: false.
	DryRun bool
}

func (p *Purger) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Tenants returns every tenant with something in the bucket (incoming/,
// quarantine/, results/, config/) or the ledger, sorted. Folders that
// cannot name a tenant are skipped.
func (p *Purger) Tenants(ctx context.Context) ([]string, error) {
	set := map[string]bool{}
	for _, prefix := range []string{IncomingPrefix, QuarantinePrefix, ResultsPrefix, StagingPrefix, DiffsPrefix, ConfigPrefix} {
		names, err := p.S3.Folders(ctx, prefix)
		if err != nil {
			return nil, fmt.Errorf("purge: %w", err)
		}
		for _, n := range names {
			set[n] = true
		}
	}
	known, err := p.Ledger.Tenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("purge: %w", err)
	}
	for _, t := range known {
		set[t] = true
	}
	out := make([]string, 0, len(set))
	for t := range set {
		if ValidTenant(t) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Policy returns tenant's retention policy: the defaults, overridden by
// config/retention.yaml, overridden by config/<tenant>/retention.yaml.
func (p *Purger) Policy(ctx context.Context, tenant string) (schemas.RetentionPolicy, error) {
	pol := schemas.DefaultRetention()
	for _, key := range []string{DefaultRetentionKey, RetentionKey(tenant)} {
		raw, err := ReadConfig(ctx, p.S3, key)
		if err != nil {
			return pol, fmt.Errorf("purge: %w", err)
		}
		if raw == nil {
			continue
		}
		o, err := schemas.ParseRetention(raw)
		if err != nil {
			return pol, fmt.Errorf("purge: %s: %w", key, err)
		}
		pol = pol.Override(o)
	}
	if err := pol.Validate(); err != nil {
		return pol, fmt.Errorf("purge: policy of %s: %w", tenant, err)
	}
	return pol, nil
}

// batchEnd is when a batch ended: completed (or failed), else created.
func batchEnd(b ledger.Batch) time.Time {
	if b.CompletedAt != nil {
		return *b.CompletedAt
	}
	return b.CreatedAt
}

// Purge applies tenant's policy and reports what it removed. A policy that
// does not parse or validate stops the tenant's purge before anything is
// removed.
func (p *Purger) Purge(ctx context.Context, tenant string) (PurgeReport, error) {
	rep := PurgeReport{Tenant: tenant, DryRun: p.DryRun}
	if !ValidTenant(tenant) {
		return rep, fmt.Errorf("purge: %q cannot name a tenant (lower-case letters, digits, '-')", tenant)
	}
	pol, err := p.Policy(ctx, tenant)
	if err != nil {
		return rep, err
	}
	rep.Policy = pol
	now := p.now().UTC()
	resultsCutoff := pol.ResultsCutoff(now)
	log := p.Log.With().Str("component", "purge").Str("tenant", tenant).Bool("dry_run", p.DryRun).Logger()

	batches, err := p.Ledger.TenantBatches(ctx, tenant, "")
	if err != nil {
		return rep, fmt.Errorf("purge: %w", err)
	}
	byID := make(map[string]ledger.Batch, len(batches))
	byKey := map[string][]ledger.Batch{}
	expired := map[string]bool{}
	// latest is the latest published batch of each campaign whose results
	// are kept: its roster is what keep-latest keeps.
	latest := map[string]ledger.Batch{}
	for _, b := range batches {
		byID[b.ID] = b
		byKey[b.ObjectKey] = append(byKey[b.ObjectKey], b)
		if batchEnd(b).Before(resultsCutoff) {
			expired[b.ID] = true
			continue
		}
		if b.State == ledger.StateComplete {
			if l, ok := latest[b.Campaign]; !ok || batchEnd(l).Before(batchEnd(b)) {
				latest[b.Campaign] = b
			}
		}
	}

	// Results (published, staged, diffs): a batch's folder goes with its
	// batch; a folder the ledger does not know goes object by object.
	var objs []s3.ObjectInfo
	for _, prefix := range []string{ResultsPrefix, StagingPrefix, DiffsPrefix} {
		some, err := p.S3.List(ctx, prefix+tenant+"/")
		if err != nil {
			return rep, fmt.Errorf("purge: %w", err)
		}
		objs = append(objs, some...)
	}
	for _, o := range objs {
		top, rest, _ := strings.Cut(o.Key, "/")
		parts := strings.SplitN(strings.TrimPrefix(rest, tenant+"/"), "/", 3)
		staged := top+"/" == StagingPrefix
		gone := o.LastModified.Before(resultsCutoff)
		if staged {
			// Staged parts of a batch the ledger no longer knows will
			// never be published.
			gone = o.LastModified.Before(now.Add(-StagingGrace))
		}
		if len(parts) == 3 {
			if b, ok := byID[parts[1]]; ok {
				gone = expired[b.ID]
				if staged && (b.Published() || b.State == ledger.StateFailed) {
					// Left behind: a published batch's parts are
					// under results/, a failed one publishes none.
					gone = true
				}
			}
		}
		if gone {
			if err := p.delete(ctx, o.Key); err != nil {
				return rep, err
			}
			rep.Results.add(o)
		}
	}

	// Inputs under incoming/.
	objs, err = p.S3.List(ctx, IncomingPrefix+tenant+"/")
	if err != nil {
		return rep, fmt.Errorf("purge: %w", err)
	}
	for _, o := range objs {
		b, ok, err := p.batchOf(ctx, o, byKey)
		if err != nil {
			return rep, err
		}
		ik, kerr := ParseIncomingKey(o.Key)
		action := "keep"
		switch {
		case !ok || kerr != nil || b.State == ledger.StateFailed:
			// Never ingested, refused at the key, or refused at split.
			if o.LastModified.Before(pol.UnprocessedCutoff(now)) {
				action = "delete"
			}
		case expired[b.ID]:
			action = "delete"
		case b.State != ledger.StateComplete:
			// Still running: kept.
		default:
			action = inputAction(pol, b, latest[b.Campaign].ID == b.ID, now)
		}
		switch action {
		case "delete":
			if err := p.delete(ctx, o.Key); err != nil {
				return rep, err
			}
			rep.Inputs.add(o)
		case "quarantine":
			if !p.DryRun {
				if _, err := p.S3.Copy(ctx, o.Key, QuarantineKey(ik, b.ID)); err != nil {
					return rep, fmt.Errorf("purge: quarantine an upload (key_sha256 %s): %w", KeyDigest(o.Key), withoutKey(err))
				}
				if err := p.delete(ctx, o.Key); err != nil {
					return rep, err
				}
			}
			rep.Quarantined.add(o)
		default:
			rep.InputsKept++
		}
	}

	// Rosters in quarantine/: Days after their batch's publication (or,
	// for a batch the ledger no longer knows, after the move).
	objs, err = p.S3.List(ctx, QuarantinePrefix+tenant+"/")
	if err != nil {
		return rep, fmt.Errorf("purge: %w", err)
	}
	inputsCutoff := pol.InputsCutoff(now)
	for _, o := range objs {
		parts := strings.SplitN(strings.TrimPrefix(o.Key, QuarantinePrefix+tenant+"/"), "/", 3)
		since := o.LastModified
		if len(parts) == 3 {
			if b, ok := byID[parts[1]]; ok {
				since = batchEnd(b)
				if expired[b.ID] {
					since = time.Time{}
				}
			}
		}
		if since.Before(inputsCutoff) {
			if err := p.delete(ctx, o.Key); err != nil {
				return rep, err
			}
			rep.Quarantine.add(o)
		}
	}

	// The ledger: expired batches, then audit records.
	req := ledger.PurgeRequest{Tenant: tenant, CallsBefore: pol.AuditCutoff(now), DryRun: p.DryRun}
	for _, b := range batches {
		if expired[b.ID] {
			req.Batches = append(req.Batches, b.ID)
		}
	}
	if rep.Ledger, err = p.Ledger.Purge(ctx, req); err != nil {
		return rep, fmt.Errorf("purge: %w", err)
	}
	log.Info().Int64("inputs", rep.Inputs.Objects).Int64("quarantined", rep.Quarantined.Objects).
		Int64("quarantine", rep.Quarantine.Objects).Int64("results", rep.Results.Objects).
		Int64("batches", rep.Ledger.Batches).Int64("calls", rep.Ledger.Calls).Msg("tenant purged")
	return rep, nil
}

// PurgeStray deletes the uploads of incoming/ that no tenant owns (a folder
// that cannot name a tenant, or no folder at all): refused at ingest, they
// are never processed, and go once older than the bucket-wide policy's
// unprocessed_days (config/retention.yaml, else the default). Their report
// has an empty Tenant.
func (p *Purger) PurgeStray(ctx context.Context) (PurgeReport, error) {
	rep := PurgeReport{DryRun: p.DryRun}
	pol := schemas.DefaultRetention()
	raw, err := ReadConfig(ctx, p.S3, DefaultRetentionKey)
	if err != nil {
		return rep, fmt.Errorf("purge: %w", err)
	}
	if raw != nil {
		o, err := schemas.ParseRetention(raw)
		if err != nil {
			return rep, fmt.Errorf("purge: %s: %w", DefaultRetentionKey, err)
		}
		pol = pol.Override(o)
	}
	rep.Policy = pol
	cutoff := pol.UnprocessedCutoff(p.now().UTC())
	objs, err := p.S3.List(ctx, IncomingPrefix)
	if err != nil {
		return rep, fmt.Errorf("purge: %w", err)
	}
	for _, o := range objs {
		folder, _, nested := strings.Cut(strings.TrimPrefix(o.Key, IncomingPrefix), "/")
		if nested && ValidTenant(folder) {
			continue // the tenant's own purge handles it
		}
		if o.LastModified.Before(cutoff) {
			if err := p.delete(ctx, o.Key); err != nil {
				return rep, err
			}
			rep.Inputs.add(o)
		} else {
			rep.InputsKept++
		}
	}
	return rep, nil
}

// inputAction says what becomes of the roster of b, a published batch
// whose results are kept: "delete", "quarantine" or "keep".
func inputAction(pol schemas.RetentionPolicy, b ledger.Batch, latest bool, now time.Time) string {
	pastDays := batchEnd(b).Before(pol.InputsCutoff(now))
	switch pol.Inputs.AfterPublish {
	case schemas.InputsDelete:
		return "delete"
	case schemas.InputsQuarantine:
		if pastDays {
			return "delete"
		}
		return "quarantine"
	case schemas.InputsKeep:
		if pastDays {
			return "delete"
		}
	case schemas.InputsKeepLatest:
		if !latest {
			return "delete"
		}
	}
	return "keep"
}

// batchOf returns the batch that verified the object version o, among the
// batches of its key: matched on the ETag, else on the version id (a
// versioned bucket names batches by version id).
func (p *Purger) batchOf(ctx context.Context, o s3.ObjectInfo, byKey map[string][]ledger.Batch) (ledger.Batch, bool, error) {
	cands := byKey[o.Key]
	if len(cands) == 0 {
		return ledger.Batch{}, false, nil
	}
	for _, b := range cands {
		if b.ObjectVersion == o.ETag {
			return b, true, nil
		}
	}
	head, err := p.S3.Head(ctx, o.Key)
	if errors.Is(err, s3.ErrNotFound) {
		return ledger.Batch{}, false, nil
	}
	if err != nil {
		return ledger.Batch{}, false, fmt.Errorf("purge: version of an upload (key_sha256 %s): %w", KeyDigest(o.Key), withoutKey(err))
	}
	v := ObjectVersion(head.VersionID, head.ETag, "")
	for _, b := range cands {
		if b.ObjectVersion == v {
			return b, true, nil
		}
	}
	return ledger.Batch{}, false, nil
}

// delete removes key unless this is a dry run.
func (p *Purger) delete(ctx context.Context, key string) error {
	if p.DryRun {
		return nil
	}
	if err := p.S3.Delete(ctx, key); err != nil {
		return fmt.Errorf("purge: delete an object (key_sha256 %s): %w", KeyDigest(key), withoutKey(err))
	}
	return nil
}
