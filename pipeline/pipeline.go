// Package pipeline moves a batch through apbatch: ingest (an S3 event
// becomes a batch in the ledger), split (the object is streamed, validated
// and turned into job messages, invalid rows into results at once) and write
// (results become Parquet part files and, when every row has its result, a
// manifest). Adapters live in subpackages named after what they adapt:
// pipeline/kafka, pipeline/s3, pipeline/parquet, pipeline/csv, pipeline/ledger.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/apbatch/apbatch/pipeline/csv"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// Object key layout in the bucket.
const (
	// IncomingPrefix holds uploads: incoming/<tenant>/<campaign>/<file>.
	IncomingPrefix = "incoming/"
	// ResultsPrefix holds published results only:
	// results/<tenant>/<campaign>/<batch>/, so that a glob over it reads
	// every published row and nothing else.
	ResultsPrefix = "results/"
	// StagingPrefix holds the parts of batches not published yet
	// (staging/<tenant>/<campaign>/<batch>/); they move to results/ when
	// their batch is.
	StagingPrefix = "staging/"
	// DiffsPrefix holds what a batch changed since the previous campaign:
	// diffs/<tenant>/<campaign>/<batch>/diff.parquet.
	DiffsPrefix = "diffs/"
	// ManifestName is written last in a batch's result folder.
	ManifestName = "_manifest.json"
)

// namePattern is what a campaign looks like.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// tenantPattern is what a tenant looks like: lower-case letters, digits and
// '-' (a DNS label). Narrower than a campaign because a tenant names its
// token: APBATCH_TOKEN_<TENANT> upper-cases it and turns '-' into '_', and
// a Secret's files are <tenant> and <tenant>.token; with upper case, '_' or
// '.' allowed, two tenants ("ville_a" and "ville-a", "x" and "x.token")
// would read one token.
var tenantPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidTenant reports whether t can name a tenant (see ParseIncomingKey).
func ValidTenant(t string) bool { return tenantPattern.MatchString(t) }

// ErrNotIncoming is returned by ParseIncomingKey for keys outside incoming/.
var ErrNotIncoming = errors.New("pipeline: key is not an upload under incoming/")

// ErrTenantName is returned when a tenant's configuration is asked for with
// a name that cannot be a tenant's (see ValidTenant): its key could reach
// another tenant's folder.
var ErrTenantName = errors.New("pipeline: not a tenant name (lower-case letters, digits, '-')")

// IncomingKey is the parsed key of an uploaded file.
type IncomingKey struct {
	Tenant   string
	Campaign string
	File     string
}

// String returns the object key.
func (k IncomingKey) String() string {
	return IncomingPrefix + k.Tenant + "/" + k.Campaign + "/" + k.File
}

// ParseIncomingKey parses incoming/<tenant>/<campaign>/<file>. Keys with
// "..", absolute parts, backslashes, control characters (C0, DEL, C1) or
// bidirectional overrides (which make a name read otherwise in a log),
// invalid UTF-8 (S3 keys are UTF-8; the ledger stores them as text) or
// unexpected depth are refused; the tenant is lower-case letters, digits
// and '-' (see ValidTenant), the campaign letters, digits, '.', '_' or '-'.
// Errors do not repeat the key (a file name may name a person).
func ParseIncomingKey(key string) (IncomingKey, error) {
	if !strings.HasPrefix(key, IncomingPrefix) {
		return IncomingKey{}, ErrNotIncoming
	}
	if !utf8.ValidString(key) {
		return IncomingKey{}, fmt.Errorf("pipeline: key is not valid UTF-8")
	}
	if hasControl(key) {
		return IncomingKey{}, fmt.Errorf("pipeline: key has a control character")
	}
	if strings.ContainsRune(key, '\\') {
		return IncomingKey{}, fmt.Errorf("pipeline: key has a backslash")
	}
	parts := strings.Split(strings.TrimPrefix(key, IncomingPrefix), "/")
	if len(parts) != 3 {
		return IncomingKey{}, fmt.Errorf("pipeline: upload key: want incoming/<tenant>/<campaign>/<file>")
	}
	k := IncomingKey{Tenant: parts[0], Campaign: parts[1], File: parts[2]}
	if !ValidTenant(k.Tenant) {
		return IncomingKey{}, fmt.Errorf("pipeline: upload key: the tenant must be lower-case letters, digits or '-'")
	}
	if !namePattern.MatchString(k.Campaign) {
		return IncomingKey{}, fmt.Errorf("pipeline: upload key: the campaign must be letters, digits, '.', '_' or '-'")
	}
	if k.File == "" || k.File == "." || k.File == ".." || path.Clean(k.File) != k.File {
		return IncomingKey{}, fmt.Errorf("pipeline: upload key: bad file name (empty, \".\", \"..\" or not clean)")
	}
	return k, nil
}

// hasControl reports whether s has a control character (C0 with NUL, which
// PostgreSQL text refuses, DEL, C1) or a bidirectional formatting character
// (U+200E, U+200F, U+202A–U+202E, U+2066–U+2069).
func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
	}) >= 0
}

// DecodeEventKey decodes an object key as S3 notifications encode it
// (URL-encoded, spaces as '+').
func DecodeEventKey(k string) (string, error) {
	s, err := url.QueryUnescape(k)
	if err != nil {
		return "", fmt.Errorf("pipeline: event key: %w", err)
	}
	return s, nil
}

// TariffKey is where a tenant's tariff grid (YAML, see schemas.TariffGrid)
// lives in the bucket; the writer prices QF results with it.
func TariffKey(tenant string) string { return "config/" + tenant + "/tarifs.yaml" }

// ResultFolder returns results/<tenant>/<campaign>/<batch>/.
func ResultFolder(tenant, campaign, batchID string) string {
	return ResultsPrefix + tenant + "/" + campaign + "/" + batchID + "/"
}

// PartKey returns the key of a batch's part file number n once published.
func PartKey(tenant, campaign, batchID string, n int) string {
	return fmt.Sprintf("%spart-%05d.parquet", ResultFolder(tenant, campaign, batchID), n)
}

// StagingFolder returns staging/<tenant>/<campaign>/<batch>/, where a
// batch's parts wait for its publication.
func StagingFolder(tenant, campaign, batchID string) string {
	return StagingPrefix + tenant + "/" + campaign + "/" + batchID + "/"
}

// StagingPartKey returns where a batch's part file number n is written
// until the batch is published.
func StagingPartKey(tenant, campaign, batchID string, n int) string {
	return StagingPrefix + strings.TrimPrefix(PartKey(tenant, campaign, batchID, n), ResultsPrefix)
}

// PublishedParts returns the parts of parts that are published (under
// results/): a part still under staging/ belongs to no manifest.
func PublishedParts(parts []ledger.Part) []ledger.Part {
	out := make([]ledger.Part, 0, len(parts))
	for _, p := range parts {
		if strings.HasPrefix(p.ObjectKey, ResultsPrefix) {
			out = append(out, p)
		}
	}
	return out
}

// DiffKey returns the key of a batch's diff.parquet.
func DiffKey(tenant, campaign, batchID string) string {
	return DiffsPrefix + tenant + "/" + campaign + "/" + batchID + "/" + schemas.DiffName
}

// ObjectVersion names the version of an uploaded object that a batch
// verifies: the S3 version id when the bucket is versioned, else the ETag
// (unquoted: the same content under the same key is the same upload), else
// the event's sequencer. "null", the version id of objects written while
// versioning was off or suspended, is no version id.
func ObjectVersion(versionID, etag, sequencer string) string {
	etag = strings.Trim(etag, `"`)
	switch {
	case versionID != "" && versionID != "null":
		return versionID
	case etag != "":
		return etag
	}
	return sequencer
}

// etagPattern is the shape of the ETags S3 services give uploads: an MD5
// in hex, with "-<parts>" for a multipart upload.
var etagPattern = regexp.MustCompile(`^[0-9a-fA-F]{32}(-[0-9]+)?$`)

// PinnedVersion returns the object version batch b verifies, as the S3
// client pins it: its version id (when ObjectVersion is one) and its ETag.
// Batches recorded before their ETag was kept pin ObjectVersion as an ETag
// when it has the shape of one, else as a version id. A version made up by
// "run --force" is no version id: only the ETag pins it.
func PinnedVersion(b ledger.Batch) s3.Version {
	v, etag := b.ObjectVersion, strings.Trim(b.ObjectETag, `"`)
	// A re-priced batch reads its source's roster.
	v, _, _ = strings.Cut(v, PricedVersionSep)
	switch {
	case strings.HasPrefix(v, ForcedVersionPrefix):
		return s3.Version{ETag: etag}
	case etag != "" && v == etag:
		return s3.Version{ETag: etag}
	case etag != "":
		return s3.Version{ID: v, ETag: etag}
	case etagPattern.MatchString(v):
		return s3.Version{ETag: v}
	}
	return s3.Version{ID: v}
}

// Pinned reports whether v pins anything (a batch made up by "run --force"
// before ETags were kept pins nothing, and cannot be read again safely).
func Pinned(v s3.Version) bool { return v.ID != "" || v.ETag != "" }

// ColumnsKey is where a tenant's explicit column mapping lives in the
// bucket: YAML, canonical column → the header its files use.
func ColumnsKey(tenant string) string { return "config/" + tenant + "/colonnes.yaml" }

// ParseColumns reads a column mapping ("nom_naissance: NOM JF").
func ParseColumns(b []byte) (map[string]string, error) {
	var m map[string]string
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("correspondance de colonnes illisible (attendu « colonne_apbatch: En-tête du fichier » par ligne) : %w", err)
	}
	if err := csv.CheckColumns(m); err != nil {
		return nil, err
	}
	return m, nil
}

// ReadConfig returns a small configuration object of the bucket (a
// tenant's tariff grid or column mapping), or nil when there is none.
func ReadConfig(ctx context.Context, client *s3.Client, key string) ([]byte, error) {
	body, _, err := client.Open(ctx, key)
	if errors.Is(err, s3.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", key, err)
	}
	defer body.Close()
	raw, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", key, err)
	}
	return raw, nil
}

// TenantColumns returns a loader of tenants' column mappings from the
// bucket, for Splitter.Columns.
func TenantColumns(client *s3.Client) func(ctx context.Context, tenant string) (map[string]string, error) {
	return func(ctx context.Context, tenant string) (map[string]string, error) {
		if !ValidTenant(tenant) {
			return nil, &FileError{Message: ErrTenantName.Error()}
		}
		raw, err := ReadConfig(ctx, client, ColumnsKey(tenant))
		if raw == nil || err != nil {
			return nil, err
		}
		m, err := ParseColumns(raw)
		if err != nil {
			return nil, &FileError{Message: err.Error()}
		}
		return m, nil
	}
}
