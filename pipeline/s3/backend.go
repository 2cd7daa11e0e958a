package s3

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
)

// stagedBackend is the folder backend with uploads that are all or
// nothing: a body is first received whole into a staging file, and only
// then handed to the backend. The afero backend alone writes the object's
// file as the body arrives, under its global lock: an upload cut mid-body
// left a truncated file without metadata, on which every ListObjectsV2
// failed until the object was deleted, and a slow upload held every other
// request.
type stagedBackend struct {
	*s3afero.MultiBucketBackend
	// dir holds the staging files, outside the buckets.
	dir string
}

var _ gofakes3.Backend = (*stagedBackend)(nil)

// errIncomplete is an upload whose body ended before its announced size.
var errIncomplete = errors.New("s3: upload body incomplete")

// PutObject receives input whole into a staging file, then stores it.
// size is the announced length (-1: unknown); a body shorter or longer
// than it stores nothing.
func (b *stagedBackend) PutObject(bucket, key string, meta map[string]string, input io.Reader, size int64, conditions *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	f, err := os.CreateTemp(b.dir, "put-")
	if err != nil {
		return gofakes3.PutObjectResult{}, fmt.Errorf("s3: stage upload: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	n, err := io.Copy(f, input)
	if err != nil {
		return gofakes3.PutObjectResult{}, fmt.Errorf("s3: stage upload: %w", err)
	}
	if size >= 0 && n != size {
		return gofakes3.PutObjectResult{}, fmt.Errorf("%w: %d bytes of %d", errIncomplete, n, size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return gofakes3.PutObjectResult{}, fmt.Errorf("s3: stage upload: %w", err)
	}
	res, err := b.MultiBucketBackend.PutObject(bucket, key, meta, f, n, conditions)
	if err != nil {
		// A local copy that failed (a full disk) must not leave a
		// partial object that breaks listings.
		b.MultiBucketBackend.DeleteObject(bucket, key)
		return res, err
	}
	return res, nil
}

// ListBucket lists as S3 does: a prefix naming a folder that does not
// exist lists nothing. The afero backend answers NoSuchBucket there (it
// reads the prefix's folder), which failed "apbatch purge" on a data
// folder without quarantine/.
func (b *stagedBackend) ListBucket(bucket string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	list, err := b.MultiBucketBackend.ListBucket(bucket, prefix, page)
	if gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket) {
		if ok, berr := b.MultiBucketBackend.BucketExists(bucket); berr == nil && ok {
			return gofakes3.NewObjectList(), nil
		}
	}
	return list, err
}
