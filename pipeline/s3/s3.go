// Package s3 adapts S3 to apbatch: a client over aws-sdk-go-v2 for any S3
// service (AWS, MinIO, OVHcloud, Scaleway, Outscale, versitygw), and an
// embedded S3 server over HTTP on a local folder for the all-in-one mode and
// tests. Every object access, embedded or not, goes through the SDK.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Config locates a bucket.
type Config struct {
	// Endpoint is the S3 service URL; empty uses AWS's endpoints for Region.
	// Default: "".
	Endpoint string
	// Region of the bucket. Default: "us-east-1".
	Region string
	// Bucket holds inputs (incoming/) and results (results/). Default: "apbatch".
	Bucket string
	// AccessKey and SecretKey are static credentials; when both are empty
	// the SDK's default chain (environment, profile, instance role) is used.
	AccessKey string
	SecretKey string
	// PathStyle addresses the bucket in the path rather than the host name,
	// as most S3 clones need. Default: true when Endpoint is set.
	PathStyle *bool
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return errors.New("s3: AccessKey and SecretKey go together")
	}
	if c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://") {
		return fmt.Errorf("s3: Endpoint %q must start with http:// or https://", c.Endpoint)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Bucket == "" {
		c.Bucket = "apbatch"
	}
	if c.PathStyle == nil {
		ps := c.Endpoint != ""
		c.PathStyle = &ps
	}
	return c
}

// Client reads and writes objects of one bucket.
type Client struct {
	bucket string
	api    *awss3.Client
}

// NewClient builds a client; it does not contact the service.
func NewClient(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts := []func(*config.LoadOptions) error{config.WithRegion(cfg.Region)}
	if cfg.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load config: %w", err)
	}
	api := awss3.NewFromConfig(awsCfg, func(o *awss3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = *cfg.PathStyle
		// S3 clones reject or mishandle the SDK's default CRC checksums.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &Client{bucket: cfg.Bucket, api: api}, nil
}

// Bucket returns the bucket name.
func (c *Client) Bucket() string { return c.bucket }

// EnsureBucket creates the bucket if it does not exist.
func (c *Client) EnsureBucket(ctx context.Context) error {
	if _, err := c.api.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &c.bucket}); err == nil {
		return nil
	}
	_, err := c.api.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &c.bucket})
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		return fmt.Errorf("s3: create bucket %s: %w", c.bucket, err)
	}
	return nil
}

// Ping checks that the service answers and the bucket exists.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.api.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &c.bucket}); err != nil {
		return fmt.Errorf("s3: head bucket %s: %w", c.bucket, err)
	}
	return nil
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key       string
	Size      int64
	ETag      string
	VersionID string
	// LastModified is the service's time of the upload (List and Head).
	LastModified time.Time
	// Metadata is the object's user metadata (x-amz-meta-*, keys in
	// lower case), from Head and HeadVersion.
	Metadata map[string]string
}

// Put stores body under key. size may be -1 when unknown (body is then
// buffered by the SDK); contentType may be empty.
func (c *Client) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) (ObjectInfo, error) {
	return c.PutMeta(ctx, key, body, size, contentType, nil)
}

// PutMeta is Put with user metadata (x-amz-meta-<key>), which Head returns.
func (c *Client) PutMeta(ctx context.Context, key string, body io.Reader, size int64, contentType string, meta map[string]string) (ObjectInfo, error) {
	in := &awss3.PutObjectInput{Bucket: &c.bucket, Key: &key, Body: body, Metadata: meta}
	if size >= 0 {
		in.ContentLength = aws.Int64(size)
	}
	if contentType != "" {
		in.ContentType = &contentType
	}
	out, err := c.api.PutObject(ctx, in)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("s3: put %s: %w", key, err)
	}
	return ObjectInfo{Key: key, Size: size, ETag: strings.Trim(aws.ToString(out.ETag), `"`), VersionID: aws.ToString(out.VersionId)}, nil
}

// Open streams the object at key. The caller closes the reader.
func (c *Client) Open(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	out, err := c.api.GetObject(ctx, &awss3.GetObjectInput{Bucket: &c.bucket, Key: &key})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, ObjectInfo{}, fmt.Errorf("s3: get %s: %w", key, ErrNotFound)
		}
		return nil, ObjectInfo{}, fmt.Errorf("s3: get %s: %w", key, err)
	}
	return out.Body, ObjectInfo{
		Key:       key,
		Size:      aws.ToInt64(out.ContentLength),
		ETag:      strings.Trim(aws.ToString(out.ETag), `"`),
		VersionID: aws.ToString(out.VersionId),
	}, nil
}

// Head describes the object at key.
func (c *Client) Head(ctx context.Context, key string) (ObjectInfo, error) {
	out, err := c.api.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &c.bucket, Key: &key})
	if err != nil {
		if isNotFound(err) {
			return ObjectInfo{}, fmt.Errorf("s3: head %s: %w", key, ErrNotFound)
		}
		return ObjectInfo{}, fmt.Errorf("s3: head %s: %w", key, err)
	}
	return ObjectInfo{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		ETag:         strings.Trim(aws.ToString(out.ETag), `"`),
		VersionID:    aws.ToString(out.VersionId),
		LastModified: aws.ToTime(out.LastModified),
		Metadata:     lowerKeys(out.Metadata),
	}, nil
}

// lowerKeys returns m with its keys in lower case, as S3 stores them
// (some services answer them capitalised).
func lowerKeys(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// Copy copies the object at src to dst inside the bucket, server-side, and
// describes the copy.
func (c *Client) Copy(ctx context.Context, src, dst string) (ObjectInfo, error) {
	return c.CopyVersion(ctx, src, Version{}, dst)
}

// List returns every object whose key starts with prefix, in key order.
func (c *Client) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var objs []ObjectInfo
	p := awss3.NewListObjectsV2Paginator(c.api, &awss3.ListObjectsV2Input{Bucket: &c.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			objs = append(objs, ObjectInfo{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ETag: strings.Trim(aws.ToString(o.ETag), `"`),
				LastModified: aws.ToTime(o.LastModified)})
		}
	}
	return objs, nil
}

// Folders returns the names of the "folders" right under prefix (which
// ends with '/'): the next key segment of the objects below it, sorted.
func (c *Client) Folders(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	delim := "/"
	p := awss3.NewListObjectsV2Paginator(c.api, &awss3.ListObjectsV2Input{Bucket: &c.bucket, Prefix: &prefix, Delimiter: &delim})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: list folders of %s: %w", prefix, err)
		}
		for _, cp := range page.CommonPrefixes {
			name := strings.TrimSuffix(strings.TrimPrefix(aws.ToString(cp.Prefix), prefix), "/")
			if name != "" {
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// Delete removes the object at key; a missing object is not an error (S3
// answers both alike). In a versioned bucket it adds a delete marker: the
// bucket's lifecycle rules expire the noncurrent versions.
func (c *Client) Delete(ctx context.Context, key string) error {
	if _, err := c.api.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &c.bucket, Key: &key}); err != nil {
		return fmt.Errorf("s3: delete %s: %w", key, err)
	}
	return nil
}

// Version pins one version of an object: its version id in a versioned
// bucket, its ETag (unquoted) in any bucket, or both. The zero Version is
// whatever the key holds.
type Version struct {
	// ID is the S3 version id; "" (or "null") names none.
	ID string
	// ETag is the content's ETag, without quotes; "" names none.
	ETag string
}

func (v Version) id() *string {
	if v.ID == "" || v.ID == "null" {
		return nil
	}
	return aws.String(v.ID)
}

func (v Version) ifMatch() *string {
	if v.ETag == "" {
		return nil
	}
	return aws.String(`"` + strings.Trim(v.ETag, `"`) + `"`)
}

// matches reports whether an answer's version id and ETag are the pinned
// ones (services that ignore versionId, as gofakes3 does on HEAD, answer
// with the current version's, or none).
func (v Version) matches(info ObjectInfo) bool {
	if id := v.id(); id != nil && info.VersionID != *id {
		return false
	}
	return v.ETag == "" || strings.Trim(info.ETag, `"`) == strings.Trim(v.ETag, `"`)
}

// OpenVersion streams version v of the object at key: GetObject with its
// version id, and If-Match on its ETag. Services that ignore If-Match
// (gofakes3) are caught by comparing the answer's ETag before any byte is
// read. An error wrapping ErrNotFound means that version is not there: the
// key is gone, the version was deleted, or the key holds other content.
func (c *Client) OpenVersion(ctx context.Context, key string, v Version) (io.ReadCloser, ObjectInfo, error) {
	out, err := c.api.GetObject(ctx, &awss3.GetObjectInput{Bucket: &c.bucket, Key: &key, VersionId: v.id(), IfMatch: v.ifMatch()})
	if err != nil {
		if versionGone(err, v) {
			return nil, ObjectInfo{}, fmt.Errorf("s3: get %s at its pinned version: %w", key, ErrNotFound)
		}
		return nil, ObjectInfo{}, fmt.Errorf("s3: get %s: %w", key, err)
	}
	info := ObjectInfo{
		Key:       key,
		Size:      aws.ToInt64(out.ContentLength),
		ETag:      strings.Trim(aws.ToString(out.ETag), `"`),
		VersionID: aws.ToString(out.VersionId),
		Metadata:  lowerKeys(out.Metadata),
	}
	if !v.matches(info) {
		out.Body.Close()
		return nil, ObjectInfo{}, fmt.Errorf("s3: get %s: holds another content than the pinned version: %w", key, ErrNotFound)
	}
	return out.Body, info, nil
}

// HeadVersion describes version v of the object at key (see OpenVersion);
// an error wrapping ErrNotFound means that version is not there.
func (c *Client) HeadVersion(ctx context.Context, key string, v Version) (ObjectInfo, error) {
	out, err := c.api.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &c.bucket, Key: &key, VersionId: v.id(), IfMatch: v.ifMatch()})
	if err != nil {
		if versionGone(err, v) {
			return ObjectInfo{}, fmt.Errorf("s3: head %s at its pinned version: %w", key, ErrNotFound)
		}
		return ObjectInfo{}, fmt.Errorf("s3: head %s: %w", key, err)
	}
	info := ObjectInfo{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		ETag:         strings.Trim(aws.ToString(out.ETag), `"`),
		VersionID:    aws.ToString(out.VersionId),
		LastModified: aws.ToTime(out.LastModified),
		Metadata:     lowerKeys(out.Metadata),
	}
	if !v.matches(info) {
		return ObjectInfo{}, fmt.Errorf("s3: head %s: holds another content than the pinned version: %w", key, ErrNotFound)
	}
	return info, nil
}

// CopyVersion copies version v of the object at src to dst, server-side
// (x-amz-copy-source with its version id, x-amz-copy-source-if-match on
// its ETag), and describes the copy. When the service ignored the
// condition and copied other content (the copy's ETag differs from a
// single-part ETag pinned), the copy is deleted and the error wraps
// ErrNotFound, as when the version is gone.
func (c *Client) CopyVersion(ctx context.Context, src string, v Version, dst string) (ObjectInfo, error) {
	// The source is URL-encoded, segment by segment; '+' too, which some
	// services read as a space.
	segs := strings.Split(c.bucket+"/"+src, "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	source := strings.Join(segs, "/")
	if id := v.id(); id != nil {
		source += "?versionId=" + url.QueryEscape(*id)
	}
	out, err := c.api.CopyObject(ctx, &awss3.CopyObjectInput{Bucket: &c.bucket, Key: &dst, CopySource: aws.String(source),
		CopySourceIfMatch: v.ifMatch()})
	if err != nil {
		if versionGone(err, v) {
			return ObjectInfo{}, fmt.Errorf("s3: copy %s to %s: %w", src, dst, ErrNotFound)
		}
		return ObjectInfo{}, fmt.Errorf("s3: copy %s to %s: %w", src, dst, err)
	}
	info := ObjectInfo{Key: dst, VersionID: aws.ToString(out.VersionId)}
	if out.CopyObjectResult != nil {
		info.ETag = strings.Trim(aws.ToString(out.CopyObjectResult.ETag), `"`)
	}
	head, err := c.Head(ctx, dst)
	if err != nil {
		return ObjectInfo{}, err
	}
	info.Size = head.Size
	if info.ETag == "" {
		info.ETag = head.ETag
	}
	// A service that ignored the version id names none (or another) as
	// the copy's source. A multipart upload's ETag ("…-N") is not its
	// copy's: only a single-part one can be compared.
	otherVersion := v.id() != nil && aws.ToString(out.CopySourceVersionId) != *v.id()
	otherContent := v.ETag != "" && !strings.Contains(v.ETag, "-") && strings.Trim(info.ETag, `"`) != strings.Trim(v.ETag, `"`)
	if otherVersion || otherContent {
		if derr := c.Delete(ctx, dst); derr != nil {
			return ObjectInfo{}, derr
		}
		return ObjectInfo{}, fmt.Errorf("s3: copy %s: holds another content than the pinned version: %w", src, ErrNotFound)
	}
	return info, nil
}

// versionGone reports whether err says that the pinned version v is not
// there: the key or version is missing (404), the content is another
// (412), or the service refuses the version id as invalid or does not
// keep versions at all (400, 501: no such version can exist there).
func versionGone(err error, v Version) bool {
	if isNotFound(err) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchVersion", "PreconditionFailed":
			return true
		case "InvalidArgument", "NotImplemented":
			return v.id() != nil
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusPreconditionFailed:
			return true
		case http.StatusBadRequest, http.StatusNotImplemented:
			return v.id() != nil
		}
	}
	return false
}

// isNotFound reports whether err says the object does not exist: typed
// by the SDK, only by its code (a copy's missing source), or a bare 404
// (HEAD answers have no body).
func isNotFound(err error) bool {
	var nf *types.NotFound
	var nsk *types.NoSuchKey
	var ae smithy.APIError
	var re *awshttp.ResponseError
	return errors.As(err, &nf) || errors.As(err, &nsk) ||
		(errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound")) ||
		(errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound)
}

// ErrNotFound is returned (wrapped) when an object does not exist.
var ErrNotFound = errors.New("object not found")
