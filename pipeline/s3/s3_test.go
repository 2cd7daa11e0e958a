package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// openServer starts an embedded S3 server on a temporary folder and returns
// a client for bucket "apbatch".
func openServer(t *testing.T) (*Server, *Client) {
	t.Helper()
	ctx := context.Background()
	srv := &Server{Dir: t.TempDir()}
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	c, err := NewClient(ctx, Config{Endpoint: srv.URL(), AccessKey: "a", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func TestClient_PutOpenList(t *testing.T) {
	ctx := context.Background()
	srv, c := openServer(t)
	body := bytes.Repeat([]byte("ligne;é\n"), 1000)
	if _, err := c.Put(ctx, "incoming/demo/2026-09/a.csv", bytes.NewReader(body), int64(len(body)), "text/csv"); err != nil {
		t.Fatal(err)
	}
	rc, info, err := c.Open(ctx, "incoming/demo/2026-09/a.csv")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, body) || info.Size != int64(len(body)) || info.ETag == "" {
		t.Fatalf("round trip: %d bytes, info %+v", len(got), info)
	}
	// Objects are plain files in the server's folder.
	if _, err := os.Stat(filepath.Join(srv.Dir, "buckets", "apbatch", "incoming", "demo", "2026-09", "a.csv")); err != nil {
		t.Fatalf("object not stored as a file: %v", err)
	}
	objs, err := c.List(ctx, "incoming/demo/")
	if err != nil || len(objs) != 1 {
		t.Fatalf("List = %v, %v", objs, err)
	}
	if _, _, err := c.Open(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(missing) = %v, want ErrNotFound", err)
	}
}

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"half creds", Config{AccessKey: "a"}, false},
		{"bad endpoint", Config{Endpoint: "localhost:9000"}, false},
		{"ok", Config{Endpoint: "http://localhost:9000", AccessKey: "a", SecretKey: "b"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
}

func TestClient_CopyDelete(t *testing.T) {
	ctx := context.Background()
	_, c := openServer(t)
	body := []byte("nom;prénom\n")
	src := "incoming/demo/2026-09/liste été+1.csv"
	if _, err := c.Put(ctx, src, bytes.NewReader(body), int64(len(body)), "text/csv"); err != nil {
		t.Fatal(err)
	}
	dst := "quarantine/demo/2026-09/b1/liste été+1.csv"
	if _, err := c.Copy(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	rc, _, err := c.Open(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("copy holds %q", got)
	}
	if err := c.Delete(ctx, src); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Head(ctx, src); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted object: head err = %v", err)
	}
	if err := c.Delete(ctx, src); err != nil {
		t.Fatalf("deleting a missing object: %v", err)
	}
	folders, err := c.Folders(ctx, "quarantine/")
	if err != nil || len(folders) != 1 || folders[0] != "demo" {
		t.Fatalf("Folders = %q, %v", folders, err)
	}
	if _, err := c.Copy(ctx, src, dst+".2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("copying a missing object: err = %v", err)
	}
}

func TestClient_CopyHead(t *testing.T) {
	ctx := context.Background()
	_, c := openServer(t)
	body := []byte("reference;nom\nF001;É\n")
	put, err := c.Put(ctx, "incoming/demo/2026-09/liste cantine.csv", bytes.NewReader(body), int64(len(body)), "text/csv")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.Copy(ctx, "incoming/demo/2026-09/liste cantine.csv", "incoming/demo/2027-09/liste cantine.csv")
	if err != nil {
		t.Fatal(err)
	}
	if cp.ETag != put.ETag || cp.Size != int64(len(body)) || cp.Key != "incoming/demo/2027-09/liste cantine.csv" {
		t.Fatalf("copy %+v, put %+v", cp, put)
	}
	rc, _, err := c.Open(ctx, cp.Key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("copied %q", got)
	}
	if _, err := c.Head(ctx, "incoming/demo/missing.csv"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Head(missing) = %v, want ErrNotFound", err)
	}
	if _, err := c.Copy(ctx, "incoming/demo/missing.csv", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Copy(missing) = %v, want ErrNotFound", err)
	}
}

// TestClient_PinnedVersion: a key replaced by other content no longer
// serves the version pinned by its ETag, nor a version id the (unversioned)
// embedded server does not keep; the current content still opens.
func TestClient_PinnedVersion(t *testing.T) {
	ctx := context.Background()
	_, c := openServer(t)
	const key, dst = "incoming/demo/2026-09/x.csv", "incoming/demo/2026-10/x.csv"
	first, err := c.Put(ctx, key, bytes.NewReader([]byte("famille A\n")), 10, "text/csv")
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Put(ctx, key, bytes.NewReader([]byte("famille B!\n")), 11, "text/csv")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		v    Version
		gone bool
	}{
		{"current etag", Version{ETag: second.ETag}, false},
		{"current etag quoted", Version{ETag: `"` + second.ETag + `"`}, false},
		{"replaced etag", Version{ETag: first.ETag}, true},
		{"version id not kept", Version{ID: "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY", ETag: second.ETag}, true},
		{"nothing pinned", Version{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, _, err := c.OpenVersion(ctx, key, tc.v)
			if tc.gone != errors.Is(err, ErrNotFound) || (!tc.gone && err != nil) {
				t.Fatalf("OpenVersion: %v, want gone %v", err, tc.gone)
			}
			if err == nil {
				got, _ := io.ReadAll(rc)
				rc.Close()
				if string(got) != "famille B!\n" {
					t.Fatalf("read %q", got)
				}
			}
			if _, err := c.HeadVersion(ctx, key, tc.v); tc.gone != errors.Is(err, ErrNotFound) || (!tc.gone && err != nil) {
				t.Fatalf("HeadVersion: %v, want gone %v", err, tc.gone)
			}
			_, err = c.CopyVersion(ctx, key, tc.v, dst)
			if tc.gone != errors.Is(err, ErrNotFound) || (!tc.gone && err != nil) {
				t.Fatalf("CopyVersion: %v, want gone %v", err, tc.gone)
			}
			if _, err := c.Head(ctx, dst); tc.gone != errors.Is(err, ErrNotFound) {
				t.Fatalf("copy after CopyVersion (gone %v): %v", tc.gone, err)
			}
			c.Delete(ctx, dst)
		})
	}
	if _, _, err := c.OpenVersion(ctx, "incoming/demo/2026-09/absent.csv", Version{ETag: first.ETag}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent key: %v", err)
	}
}

// TestServer_RequiresSignature: a server with credentials serves the SDK
// signing with them, and refuses (403) unsigned requests, other
// credentials and an altered signed request; presigned URLs work.
func TestServer_RequiresSignature(t *testing.T) {
	ctx := context.Background()
	srv := &Server{Dir: t.TempDir(), AccessKey: "AKIDEMBEDDED", SecretKey: "s3cr3t-0123456789"}
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	good, err := NewClient(ctx, Config{Endpoint: srv.URL(), AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := good.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	const key = "incoming/demo/2026-09/liste rentrée+1 (v2).csv"
	if _, err := good.Put(ctx, key, bytes.NewReader([]byte("secret\n")), 7, "text/csv"); err != nil {
		t.Fatalf("signed put: %v", err)
	}
	if objs, err := good.List(ctx, "incoming/demo/"); err != nil || len(objs) != 1 {
		t.Fatalf("signed list: %v, %v", objs, err)
	}
	rc, _, err := good.Open(ctx, key)
	if err != nil {
		t.Fatalf("signed get: %v", err)
	}
	rc.Close()

	wrong, _ := NewClient(ctx, Config{Endpoint: srv.URL(), AccessKey: srv.AccessKey, SecretKey: "guess"})
	if _, _, err := wrong.Open(ctx, key); err == nil {
		t.Fatal("get with a wrong secret served")
	}
	other, _ := NewClient(ctx, Config{Endpoint: srv.URL(), AccessKey: "apbatch", SecretKey: "apbatch-embedded"})
	if _, err := other.Put(ctx, key, bytes.NewReader([]byte("x")), 1, ""); err == nil {
		t.Fatal("put with other credentials accepted")
	}

	objURL := srv.URL() + "/apbatch/incoming/demo/2026-09/liste%20rentr%C3%A9e%2B1%20%28v2%29.csv"
	for _, tc := range []struct {
		method, url, auth string
	}{
		{http.MethodGet, objURL, ""},
		{http.MethodPut, objURL, ""},
		{http.MethodGet, srv.URL() + "/apbatch?list-type=2", ""},
		{http.MethodGet, objURL, "AWS4-HMAC-SHA256 Credential=AKIDEMBEDDED/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("0", 64)},
		{http.MethodGet, objURL + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEMBEDDED%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=" + strings.Repeat("0", 64), ""},
	} {
		req, _ := http.NewRequestWithContext(ctx, tc.method, tc.url, strings.NewReader("forged"))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
			req.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || bytes.Contains(body, []byte("secret")) {
			t.Errorf("%s %s: %d %s, want 403", tc.method, tc.url, resp.StatusCode, body)
		}
	}
	rc, _, err = good.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "secret\n" {
		t.Fatalf("object now %q", got)
	}

	// A presigned GET from the SDK is served.
	ps := awss3.NewPresignClient(good.api)
	preq, err := ps.PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("apbatch"), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(preq.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("presigned GET: %d", resp.StatusCode)
	}
}
