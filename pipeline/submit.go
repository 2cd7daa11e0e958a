package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apbatch/apbatch/pipeline/csv"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// MaxFileSize is the largest roster the splitter reads (Splitter.MaxSize's
// default); a workbook may be csv.MaxXLSXSize at most.
const MaxFileSize = 200 << 20

// Submission is one roster a front end (the CLI, the portal) hands to the
// pipeline.
type Submission struct {
	Tenant, Campaign string
	// File is the file's name as the agent gave it (its base name is kept).
	File string
	// Body is the file's content, Size its length in bytes.
	Body io.Reader
	Size int64
	// Checks, when set, are the checks of this file's batch (stored as
	// the object's MetaChecks metadata); nil: the ingest role's default.
	Checks []schemas.Check
	// HeaderRow, when set, is the line of the file holding its header
	// (stored as the object's MetaHeaderRow metadata). Default: 0, the
	// reader finds it (see csv.Options.HeaderRow).
	HeaderRow int
}

// ErrTooLarge is returned (wrapped, in French) by Submit and SpoolUpload
// for a file over the limits.
var ErrTooLarge = errors.New("fichier trop volumineux")

// Submitted is a file stored under incoming/ and announced, and its batch.
type Submitted struct {
	// File is the file as the front end named it (Runner.SubmitFiles).
	File    string
	Key     string
	BatchID string
	// Resumed is set for an unfinished batch of an earlier run.
	Resumed bool
}

// IsWorkbook tells whether name is an Excel workbook, by its extension.
func IsWorkbook(name string) bool { return strings.EqualFold(filepath.Ext(name), ".xlsx") }

// SizeLimit returns the largest size allowed for a file named name.
func SizeLimit(name string) int64 {
	if IsWorkbook(name) {
		return csv.MaxXLSXSize
	}
	return MaxFileSize
}

// TooLarge says, in French, that a file is over its limit.
func TooLarge(name string) error {
	if IsWorkbook(name) {
		return fmt.Errorf("%w : un classeur Excel peut faire %d Mo au plus ; enregistrez-le en CSV (jusqu'à %d Mo) ou découpez-le en plusieurs fichiers",
			ErrTooLarge, csv.MaxXLSXSize>>20, MaxFileSize>>20)
	}
	return fmt.Errorf("%w : un fichier peut faire %d Mo au plus ; découpez-le en plusieurs fichiers", ErrTooLarge, MaxFileSize>>20)
}

// Submit stores a roster under incoming/<tenant>/<campaign>/<file> and
// publishes its S3 event notification on events, as a bucket configured to
// notify Kafka does: the ingest role starts its batch. The same content
// under the same name reuses its batch (the id returned is that batch's).
func Submit(ctx context.Context, client *s3.Client, events MessageWriter, sub Submission) (Submitted, error) {
	name := filepath.Base(strings.ReplaceAll(sub.File, `\`, "/"))
	if sub.Size > SizeLimit(name) {
		return Submitted{}, TooLarge(name)
	}
	key := IncomingKey{Tenant: sub.Tenant, Campaign: sub.Campaign, File: name}.String()
	if _, err := ParseIncomingKey(key); err != nil {
		return Submitted{}, fmt.Errorf("nom de fichier, collectivité ou campagne refusé : %w", err)
	}
	contentType := "text/csv"
	if IsWorkbook(name) {
		contentType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	}
	meta := UploadMetadata(sub.Checks, sub.HeaderRow)
	obj, err := client.PutMeta(ctx, key, sub.Body, sub.Size, contentType, meta)
	if err != nil {
		return Submitted{}, err
	}
	if err := PublishUpload(ctx, events, client.Bucket(), key, obj, obj.VersionID); err != nil {
		return Submitted{}, err
	}
	return Submitted{Key: key, BatchID: ledger.BatchID(client.Bucket(), key, ObjectVersion(obj.VersionID, obj.ETag, ""))}, nil
}

// UploadMetadata returns the user metadata of an upload with checks (nil:
// the ingest role's default) and headerRow (0: found by the reader); nil
// when neither is set. Every writer of incoming/ objects sets it so.
func UploadMetadata(checks []schemas.Check, headerRow int) map[string]string {
	var meta map[string]string
	set := func(k, v string) {
		if meta == nil {
			meta = map[string]string{}
		}
		meta[k] = v
	}
	if len(checks) > 0 {
		set(MetaChecks, schemas.JoinChecks(checks))
	}
	if headerRow > 0 {
		set(MetaHeaderRow, strconv.Itoa(headerRow))
	}
	return meta
}

// SpoolUpload copies r into a new file of dir, failing with TooLarge(name)
// past the limit of name: an upload is never held whole in memory, and its
// size is known before it is stored. The caller closes and removes the
// file (see the returned cleanup).
func SpoolUpload(r io.Reader, dir, name string) (f *os.File, size int64, cleanup func(), err error) {
	f, err = os.CreateTemp(dir, "upload-*")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("fichier temporaire : %w", err)
	}
	cleanup = func() { f.Close(); os.Remove(f.Name()) }
	limit := SizeLimit(name)
	size, err = io.Copy(f, io.LimitReader(r, limit+1))
	switch {
	case err != nil:
		cleanup()
		return nil, 0, nil, fmt.Errorf("réception du fichier interrompue : %w", err)
	case size > limit:
		cleanup()
		return nil, 0, nil, TooLarge(name)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, 0, nil, err
	}
	return f, size, cleanup, nil
}

// WaitRecorded waits up to d for batch id to be recorded in the ledger
// by the ingest role, and returns it; ledger.ErrNotFound if it is not yet.
func WaitRecorded(ctx context.Context, store *ledger.Store, id string, d time.Duration) (ledger.Batch, error) {
	deadline := time.Now().Add(d)
	for {
		b, err := store.Batch(ctx, id)
		if !errors.Is(err, ledger.ErrNotFound) || time.Now().After(deadline) {
			return b, err
		}
		select {
		case <-ctx.Done():
			return b, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
