package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
	"github.com/spf13/afero"
)

// Server is an embedded S3 service over HTTP whose buckets are folders of
// Dir and whose objects are plain files (gofakes3 with its afero backend).
// With AccessKey and SecretKey set, it serves only requests signed with
// them (AWS Signature Version 4, in the Authorization header or a presigned
// URL) and answers any other with 403 AccessDenied.
type Server struct {
	// Dir holds one folder per bucket. Required.
	Dir string
	// Addr is the listen address. Default: "127.0.0.1:0" (a free port).
	Addr string
	// ReadTimeout bounds the reading of a whole request, body included:
	// a client sending slower is cut. Default: 5 minutes.
	ReadTimeout time.Duration
	// IdleTimeout closes keep-alive connections left idle. Default: 2
	// minutes. Responses have no write timeout: the splitter streams a
	// roster for as long as its batch takes.
	IdleTimeout time.Duration
	// AccessKey and SecretKey are the only credentials the server
	// accepts. Default: "" (no check: any client, signed or not, is
	// served; for development servers only).
	AccessKey, SecretKey string

	mu   sync.Mutex
	srv  *http.Server
	ln   net.Listener
	wg   sync.WaitGroup
	done chan error
}

// Open starts serving. It returns once the listener is bound.
func (s *Server) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("s3: server already open")
	}
	if s.Dir == "" {
		return errors.New("s3: server Dir is required")
	}
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		return fmt.Errorf("s3: create %s: %w", s.Dir, err)
	}
	afs, err := s3afero.MultiBucket(afero.NewBasePathFs(afero.NewOsFs(), s.Dir))
	if err != nil {
		return fmt.Errorf("s3: open folder backend: %w", err)
	}
	if (s.AccessKey == "") != (s.SecretKey == "") {
		return errors.New("s3: server AccessKey and SecretKey go together")
	}
	// Staging files of uploads cut by a crash are left over: remove them.
	staging := filepath.Join(s.Dir, "staging")
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("s3: clear staging folder: %w", err)
	}
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return fmt.Errorf("s3: create staging folder: %w", err)
	}
	backend := &stagedBackend{MultiBucketBackend: afs, dir: staging}
	fake := gofakes3.New(backend, gofakes3.WithAutoBucket(true), gofakes3.WithLogger(gofakes3.DiscardLog()))
	handler := fake.Server()
	if s.AccessKey != "" {
		handler = requireSignature(&sigV4{accessKey: s.AccessKey, secretKey: s.SecretKey, now: time.Now}, handler)
	}
	addr := s.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("s3: listen %s: %w", addr, err)
	}
	s.ln = ln
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: orDefault(s.ReadTimeout, 5*time.Minute), IdleTimeout: orDefault(s.IdleTimeout, 2*time.Minute)}
	s.srv = srv
	s.done = make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// srv, not s.srv: a Close right after Open clears the field.
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.done <- err
		}
	}()
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// URL returns the endpoint URL to give the SDK (http://host:port).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Close stops the server, waiting for in-flight requests until ctx ends. It
// is idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	s.wg.Wait()
	select {
	case serr := <-s.done:
		if err == nil {
			err = serr
		}
	default:
	}
	if err != nil {
		return fmt.Errorf("s3: close server: %w", err)
	}
	return nil
}

// requireSignature serves only the requests v verifies.
func requireSignature(v *sigV4, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := v.verify(r); err != nil {
			accessDenied(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}
