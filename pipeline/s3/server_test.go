package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"testing"
	"time"
)

// rawPut starts a PUT of key with a Content-Length of size and returns the
// connection, its headers sent; the caller writes (part of) the body.
func rawPut(t *testing.T, srv *Server, key string, size int) net.Conn {
	t.Helper()
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "PUT /apbatch/%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nContent-Type: text/csv\r\n\r\n", key, u.Host, size)
	return conn
}

// TestServer_SlowBodyCut: a client sending its body at one byte every 100
// ms (it would take 100 s) is cut by the server's read timeout, and leaves
// no object.
func TestServer_SlowBodyCut(t *testing.T) {
	ctx := context.Background()
	srv := &Server{Dir: t.TempDir(), ReadTimeout: 500 * time.Millisecond}
	c := openOn(t, srv)
	conn := rawPut(t, srv, "incoming/demo/slow.csv", 1000)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		// The server answers (408 or an error) or drops the connection.
		io.Copy(io.Discard, conn)
	}()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for sent := 0; ; sent++ {
		select {
		case <-closed:
			if sent >= 1000 {
				t.Fatal("the whole body was sent")
			}
			objs, err := c.List(ctx, "incoming/")
			if err != nil || len(objs) != 0 {
				t.Fatalf("after a cut upload: List = %v, %v", objs, err)
			}
			return
		case <-deadline:
			t.Fatalf("the server still reads a slow body after 30 s (%d bytes sent)", sent)
		case <-tick.C:
			conn.Write([]byte("x")) // errors once the server closed: seen on closed
		}
	}
}

// TestServer_AbortedPut: a client closing its connection mid-body leaves
// neither a partial object nor a broken listing, and an object it was
// replacing keeps its content, also after a restart on the same folder.
func TestServer_AbortedPut(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := &Server{Dir: dir}
	c := openOn(t, srv)
	orig := []byte("nom;prenom\nDUPONT;JEAN\n")
	if _, err := c.Put(ctx, "incoming/demo/kept.csv", bytes.NewReader(orig), int64(len(orig)), "text/csv"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"incoming/demo/new.csv", "incoming/demo/kept.csv"} {
		conn := rawPut(t, srv, key, 1<<20)
		conn.Write(bytes.Repeat([]byte("partial;"), 1000))
		conn.Close()
	}
	check := func(when string) {
		t.Helper()
		objs, err := c.List(ctx, "incoming/")
		if err != nil || len(objs) != 1 || objs[0].Key != "incoming/demo/kept.csv" || objs[0].Size != int64(len(orig)) {
			t.Fatalf("%s: List = %+v, %v", when, objs, err)
		}
		rc, _, err := c.Open(ctx, "incoming/demo/kept.csv")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, orig) {
			t.Fatalf("%s: kept.csv is now %q", when, got)
		}
	}
	check("right after the aborted uploads")
	// Closing waits for the handlers of the aborted uploads to end.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.Close(cctx); err != nil {
		t.Fatal(err)
	}
	c = openOn(t, &Server{Dir: dir})
	check("after a restart")
}

// openOn opens srv and returns a client for bucket "apbatch".
func openOn(t *testing.T, srv *Server) *Client {
	t.Helper()
	ctx := context.Background()
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
	return c
}

// TestServer_ListMissingFolder: listing a prefix no object has lists
// nothing, with or without a delimiter, rather than "NoSuchBucket".
func TestServer_ListMissingFolder(t *testing.T) {
	ctx := context.Background()
	c := openOn(t, &Server{Dir: t.TempDir()})
	if objs, err := c.List(ctx, "quarantine/"); err != nil || len(objs) != 0 {
		t.Fatalf("List = %v, %v", objs, err)
	}
	if folders, err := c.Folders(ctx, "quarantine/"); err != nil || len(folders) != 0 {
		t.Fatalf("Folders = %v, %v", folders, err)
	}
}
