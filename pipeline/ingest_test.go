package pipeline

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// awsEvent is an event notification in the shape AWS S3 sends (event
// version 2.1, the key URL-encoded with '+' for spaces).
const awsEvent = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-3",
"eventTime":"2026-09-01T08:12:45.123Z","eventName":"ObjectCreated:Put",
"userIdentity":{"principalId":"AWS:AIDAEXAMPLE"},"requestParameters":{"sourceIPAddress":"192.0.2.10"},
"responseElements":{"x-amz-request-id":"C3D13FE58DE4C810","x-amz-id-2":"FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
"s3":{"s3SchemaVersion":"1.0","configurationId":"apbatch-uploads",
"bucket":{"name":"apbatch","ownerIdentity":{"principalId":"A3NL1KOZZKExample"},"arn":"arn:aws:s3:::apbatch"},
"object":{"key":"incoming/ville-de-paris/2026-09/liste+cantine+%C3%A9t%C3%A9.csv","size":1024,
"eTag":"d41d8cd98f00b204e9800998ecf8427e","versionId":"096fKKXTRTtl3on89fVO.nfljtsv6qko","sequencer":"0055AED6DCD90281E5"}}}]}`

// minioEvent is the shape MinIO sends: "s3:" before the event name, the
// ETag without quotes, no version id on an unversioned bucket.
const minioEvent = `{"EventName":"s3:ObjectCreated:Put","Key":"apbatch/incoming/demo/2026-09/cantine.csv",
"Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-09-01T08:12:45.123Z",
"eventName":"s3:ObjectCreated:Put","userIdentity":{"principalId":"minioadmin"},
"s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"apbatch","arn":"arn:aws:s3:::apbatch"},
"object":{"key":"incoming%2Fdemo%2F2026-09%2Fcantine.csv","size":310,"eTag":"\"5eb63bbbe01eeed093cb22bb8f5acdc3\"",
"contentType":"text/csv","sequencer":"17F0A3B2C1D4E5F6"}}}]}`

// FuzzS3Event: whatever arrives on the uploads topic, reading it never
// panics, and every upload it accepts is one the ledger can store and the
// bucket can serve: a key under incoming/ that parses back to itself and
// survives S3's URL encoding, text without control characters.
func FuzzS3Event(f *testing.F) {
	f.Add([]byte(awsEvent), false)
	f.Add([]byte(awsEvent), true)
	f.Add([]byte(minioEvent), true)
	f.Add([]byte(strings.Replace(awsEvent, "ObjectCreated:Put", "ObjectRemoved:Delete", 1)), false)
	f.Add([]byte(strings.Replace(awsEvent, "incoming/ville-de-paris", "incoming/..%2F..", 1)), false)
	f.Add([]byte(strings.Replace(awsEvent, `"bucket":{"name":"apbatch"`, `"bucket":{"name":"other"`, 1)), true)
	f.Add([]byte(`{"Records":[{"eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"apbatch"},"object":{"key":"incoming/demo/2026-09/a%ZZ.csv"}}},`+
		`{"eventName":"ObjectCreated:Copy","s3":{"bucket":{"name":"apbatch"},"object":{"key":"incoming/demo/2026-09/b.xlsx","eTag":"\"e\""}}}]}`), false)
	f.Add([]byte(`{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"apbatch"},"object":{"key":"incoming/demo/2026-09/a.csv"}}}`), false)
	f.Add([]byte(`{"Records":null}`), false)
	f.Add([]byte(`not json`), false)
	f.Add([]byte{}, false)
	name := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	f.Fuzz(func(t *testing.T, value []byte, onlyOurBucket bool) {
		in := &Ingester{}
		if onlyOurBucket {
			in.Bucket = "apbatch"
		}
		ups := in.uploads(zerolog.Nop(), value)
		for _, up := range ups {
			if onlyOurBucket && up.Bucket != in.Bucket {
				t.Fatalf("upload of bucket %q accepted, want only %q", up.Bucket, in.Bucket)
			}
			if got := up.Incoming.String(); got != up.Key {
				t.Fatalf("key %q parsed as %+v, which names %q", up.Key, up.Incoming, got)
			}
			again, err := ParseIncomingKey(up.Key)
			if err != nil || again != up.Incoming {
				t.Fatalf("key %q: parsed again %+v, %v; first %+v", up.Key, again, err, up.Incoming)
			}
			if !name.MatchString(up.Incoming.Tenant) || !name.MatchString(up.Incoming.Campaign) {
				t.Fatalf("key %q: tenant %q or campaign %q is not a plain name", up.Key, up.Incoming.Tenant, up.Incoming.Campaign)
			}
			if f := up.Incoming.File; f == "" || f == "." || f == ".." || strings.Contains(f, "/") {
				t.Fatalf("key %q: bad file name %q accepted", up.Key, f)
			}
			// S3 sends the key URL-encoded, with or without its slashes.
			for _, enc := range []string{url.QueryEscape(up.Key), strings.ReplaceAll(url.QueryEscape(up.Key), "%2F", "/")} {
				if dec, err := DecodeEventKey(enc); err != nil || dec != up.Key {
					t.Fatalf("key %q encoded as %q decodes to %q, %v", up.Key, enc, dec, err)
				}
			}
			for field, s := range map[string]string{"key": up.Key, "bucket": up.Bucket, "version": up.Version} {
				if !storable(s) {
					t.Fatalf("%s %q accepted: not valid UTF-8 or has a control character", field, s)
				}
			}
		}
		if again := in.uploads(zerolog.Nop(), value); len(again) != len(ups) {
			t.Fatalf("read twice: %d then %d uploads", len(ups), len(again))
		}
	})
}

// storable reports whether s is valid UTF-8 without control characters
// (PostgreSQL text refuses NUL and invalid UTF-8).
func storable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
