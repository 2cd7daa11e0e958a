package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
)

// SubmitFiles stores each file under incoming/ and publishes its S3 event
// notification, as a bucket configured to notify Kafka would.
// With force, each upload is a new version (a new batch) even when the same
// file was verified before; otherwise the same content reuses its batch,
// unless it was read from another header row (headerRow: its line, 0 when
// the reader finds it, stored as the upload's metadata).
func (st *Runner) SubmitFiles(ctx context.Context, tenant, campaign string, files []string, headerRow int, force bool) ([]Submitted, error) {
	var out []Submitted
	for _, f := range files {
		key := IncomingKey{Tenant: tenant, Campaign: campaign, File: filepath.Base(f)}.String()
		force := force
		if !force {
			// The same content read from another header row is another
			// batch: its version must not name the one verified before.
			prev, err := st.S3.Head(ctx, key)
			switch {
			case errors.Is(err, s3.ErrNotFound):
			case err != nil:
				return nil, err
			default:
				if was, _ := HeaderRow(prev.Metadata); was != headerRow {
					force = true
				}
			}
		}
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", f, err)
		}
		info, err := fh.Stat()
		if err != nil {
			fh.Close()
			return nil, fmt.Errorf("stat %s: %w", f, err)
		}
		if !force {
			sub, err := Submit(ctx, st.S3, st.Uploads, Submission{Tenant: tenant, Campaign: campaign, File: f, Body: fh, Size: info.Size(), HeaderRow: headerRow})
			fh.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			out = append(out, Submitted{File: f, Key: sub.Key, BatchID: sub.BatchID})
			continue
		}
		contentType := "text/csv"
		if IsWorkbook(f) {
			contentType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
		}
		obj, err := st.S3.PutMeta(ctx, key, fh, info.Size(), contentType, UploadMetadata(nil, headerRow))
		fh.Close()
		if err != nil {
			return nil, err
		}
		// A version of our own: unversioned buckets give the same ETag to
		// the same content. The ingest refuses such versions from
		// notifications (anyone producing one could run a roster again),
		// so this process starts the batch itself.
		version := fmt.Sprintf("%s%d", ForcedVersionPrefix, time.Now().UnixNano())
		ik, err := ParseIncomingKey(key)
		if err != nil {
			return nil, err
		}
		if err := st.Ingest.Start(ctx, Upload{Bucket: st.S3.Bucket(), Key: ik, Version: version, ETag: obj.ETag}); err != nil {
			return nil, err
		}
		out = append(out, Submitted{File: f, Key: key,
			BatchID: ledger.BatchID(st.S3.Bucket(), key, ObjectVersion(version, obj.ETag, ""))})
	}
	return out, nil
}

// Progress is what WaitBatches knows of the batches it waits for.
type Progress struct {
	Done                            bool
	Lookups, Calls, Rows, Published int64
	// Left is the lookups not answered yet, by tenant; ETA when each
	// tenant's will be (none before the first answers).
	Left map[string]int64
	ETA  map[string]time.Duration
}

// PollInterval is the time between two polls of n batches by WaitBatches,
// elapsed after it started: 25 ms a batch (two indexed reads each), and at
// least a thousandth of the time elapsed, at most a second. One short
// batch is seen complete within 25 ms, a long one within 0.1 % of its time
// (bench's wall times include it); a refresh of hundreds of towns, or a
// batch of hours, does not keep the ledger busy answering polls.
func PollInterval(n int, elapsed time.Duration) time.Duration {
	return min(max(time.Duration(max(n, 1))*25*time.Millisecond, elapsed/1000), time.Second)
}

// WaitBatches polls the ledger until every batch is complete or failed,
// calling report at each poll.
func (st *Runner) WaitBatches(ctx context.Context, subs []Submitted, roleErr <-chan error, report func(Progress)) ([]ledger.Batch, error) {
	start := time.Now()
	tick := time.NewTimer(PollInterval(len(subs), 0))
	defer tick.Stop()
	for {
		var (
			final   []ledger.Batch
			pr      Progress
			pending bool
		)
		for _, s := range subs {
			b, err := st.Ledger.Batch(ctx, s.BatchID)
			if errors.Is(err, ledger.ErrNotFound) {
				pending = true
				continue
			}
			if err != nil {
				return nil, err
			}
			final = append(final, b)
			if !b.Ended() {
				pending = true
			}
			if b.LookupsTotal != nil {
				pr.Lookups += *b.LookupsTotal
				pr.Rows += *b.RowsTotal * int64(len(b.CheckList()))
				if pr.Left == nil {
					pr.Left = map[string]int64{}
				}
				left := int64(0)
				if b.State == ledger.StateSplit {
					left = max(*b.LookupsTotal-st.Pool.Answered(b.ID), 0)
				}
				pr.Left[b.Tenant] += left
			}
			n, err := st.Ledger.Published(ctx, b.ID)
			if err != nil {
				return nil, err
			}
			pr.Published += n
		}
		pr.Calls = st.Pool.Calls()
		pr.ETA = st.Pool.ETAs(pr.Left)
		pr.Done = !pending
		report(pr)
		if !pending {
			return final, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf(ErrFmtInterrupted, ctx.Err())
		case err := <-roleErr:
			if err == nil {
				err = errors.New(ErrRoleStopped)
			}
			return nil, fmt.Errorf(ErrFmtStopped, err)
		case <-tick.C:
			tick.Reset(PollInterval(len(subs), time.Since(start)))
		}
	}
}
