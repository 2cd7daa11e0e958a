package main

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/workers/sandbox"
)

// TestHTTPServers_Timeouts: every http.Server the repository builds bounds
// the reading of headers and requests and the idle keep-alive time, so
// that a client sending slowly (or not at all) cannot hold a connection.
func TestHTTPServers_Timeouts(t *testing.T) {
	required := []string{"ReadHeaderTimeout", "ReadTimeout", "IdleTimeout"}
	t.Run("literals", func(t *testing.T) {
		found := 0
		err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.CompositeLit)
				if !ok {
					return true
				}
				sel, ok := lit.Type.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "Server" {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "http" {
					return true
				}
				found++
				keys := map[string]bool{}
				for _, e := range lit.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok {
							keys[k.Name] = true
						}
					}
				}
				for _, k := range required {
					if !keys[k] {
						t.Errorf("%s: an http.Server without %s", p, k)
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if found < 3 {
			t.Fatalf("%d http.Server literals found: the scan misses them", found)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ms, err := startMetrics(ctx, "127.0.0.1:0", newRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close(ctx)
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	for _, tc := range []struct {
		name string
		srv  *http.Server
	}{
		{"metrics", ms.srv},
		{"sandbox", sb.HTTPServer()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, d := range map[string]time.Duration{"ReadHeaderTimeout": tc.srv.ReadHeaderTimeout,
				"ReadTimeout": tc.srv.ReadTimeout, "IdleTimeout": tc.srv.IdleTimeout, "WriteTimeout": tc.srv.WriteTimeout} {
				if d <= 0 || d > 10*time.Minute {
					t.Errorf("%s = %v", k, d)
				}
			}
		})
	}
}
