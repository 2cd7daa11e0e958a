package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path"
	"sort"
	"time"
)

// Refresh records that a tenant's latest accepted roster was submitted
// again for a campaign: one per (tenant, campaign), so that firing the same
// refresh twice starts nothing new.
type Refresh struct {
	Tenant   string `db:"tenant"`
	Campaign string `db:"campaign"`
	// SourceBatch is the complete batch whose roster was submitted again.
	SourceBatch string `db:"source_batch"`
	// ObjectKey is where the roster was copied, under the campaign.
	ObjectKey string `db:"object_key"`
	// Period is the QF month the new batch asks for ("" the current one).
	Period string `db:"period"`
	// BatchID is the new batch, once the roster is copied ("" before).
	BatchID   string    `db:"batch_id"`
	CreatedAt time.Time `db:"created_at"`
}

// RecordRefresh records r unless a refresh of the same tenant and campaign
// exists. It returns the stored refresh and whether this call recorded it.
func (s *Store) RecordRefresh(ctx context.Context, r Refresh) (Refresh, bool, error) {
	r.CreatedAt = s.now().UTC()
	res, err := s.db.NamedExecContext(ctx, `INSERT INTO refreshes (tenant, campaign, source_batch, object_key, period, batch_id, created_at)
		VALUES (:tenant, :campaign, :source_batch, :object_key, :period, :batch_id, :created_at) ON CONFLICT DO NOTHING`, r)
	if err != nil {
		return Refresh{}, false, fmt.Errorf("ledger: record refresh of %s for %s: %w", r.Tenant, r.Campaign, err)
	}
	n, _ := res.RowsAffected()
	stored, err := s.Refresh(ctx, r.Tenant, r.Campaign)
	return stored, n == 1, err
}

// Refresh returns the refresh of tenant for campaign, or ErrNotFound.
func (s *Store) Refresh(ctx context.Context, tenant, campaign string) (Refresh, error) {
	var r Refresh
	err := s.db.GetContext(ctx, &r, s.db.Rebind(`SELECT * FROM refreshes WHERE tenant = ? AND campaign = ?`), tenant, campaign)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("ledger: refresh of %s for %s: %w", tenant, campaign, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("ledger: refresh of %s for %s: %w", tenant, campaign, err)
	}
	return r, nil
}

// SetRefreshBatch records the batch a refresh started.
func (s *Store) SetRefreshBatch(ctx context.Context, tenant, campaign, batchID string) error {
	if _, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE refreshes SET batch_id = ? WHERE tenant = ? AND campaign = ?`),
		batchID, tenant, campaign); err != nil {
		return fmt.Errorf("ledger: refresh of %s for %s: %w", tenant, campaign, err)
	}
	return nil
}

// LatestComplete returns the tenant's last completed batch of any campaign
// but except (its latest accepted roster), or ErrNotFound.
func (s *Store) LatestComplete(ctx context.Context, tenant, except string) (Batch, error) {
	bs, err := s.TenantBatches(ctx, tenant, "")
	if err != nil {
		return Batch{}, err
	}
	return latestComplete(bs, func(b Batch) bool { return b.Campaign != except }, tenant)
}

// PreviousBatch returns the batch b's results are compared with: the
// batch whose roster a refresh copied into b's campaign, or else the
// tenant's last batch of another campaign, completed before b was created,
// that verified a file of the same name. ErrNotFound when there is none.
func (s *Store) PreviousBatch(ctx context.Context, b Batch) (Batch, error) {
	r, err := s.Refresh(ctx, b.Tenant, b.Campaign)
	switch {
	case err == nil && r.ObjectKey == b.ObjectKey && r.SourceBatch != b.ID:
		src, err := s.Batch(ctx, r.SourceBatch)
		if err != nil {
			return Batch{}, err
		}
		if src.State == StateComplete {
			return src, nil
		}
	case err != nil && !errors.Is(err, ErrNotFound):
		return Batch{}, err
	}
	bs, err := s.TenantBatches(ctx, b.Tenant, "")
	if err != nil {
		return Batch{}, err
	}
	return latestComplete(bs, func(p Batch) bool {
		return p.Campaign != b.Campaign && p.CompletedAt.Before(b.CreatedAt) && path.Base(p.ObjectKey) == path.Base(b.ObjectKey)
	}, b.Tenant)
}

// latestComplete returns the complete batch of bs accepted by keep that
// completed last.
func latestComplete(bs []Batch, keep func(Batch) bool, tenant string) (Batch, error) {
	var out []Batch
	for _, b := range bs {
		if b.State == StateComplete && b.CompletedAt != nil && keep(b) {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return Batch{}, fmt.Errorf("ledger: no complete batch of %s: %w", tenant, ErrNotFound)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CompletedAt.Before(*out[j].CompletedAt) })
	return out[len(out)-1], nil
}
