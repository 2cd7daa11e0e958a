package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAudit_Lookup answers a citizen's access request from the audit trail:
// a person of a verified roster is found with the batch that looked them
// up; a person never looked up has no call; the identity is never printed.
func TestAudit_Lookup(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	roster, other := filepath.Join(dir, "roster.csv"), filepath.Join(dir, "other.csv")
	for _, g := range []struct{ path, seed string }{{roster, "9"}, {other, "10"}} {
		if code, out, errs := runApbatch(t, ctx, "sandbox", "gen", "--population", "20", "--seed", g.seed, "-o", g.path); code != 0 {
			t.Fatalf("gen: %d %s %s", code, out, errs)
		}
	}
	if code, out, errs := runApbatch(t, ctx, "run", "--data-dir", data, "--sandbox-population", "20", "--sandbox-seed", "9",
		"--flush-interval", "200ms", roster); code != 0 {
		t.Fatalf("run: %d %s %s", code, out, errs)
	}
	// One person of the roster, one of another population.
	person := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(string(b), "\n")
		if err := os.WriteFile(dst, []byte(lines[0]+lines[3]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	looked, never := filepath.Join(dir, "looked.csv"), filepath.Join(dir, "never.csv")
	person(roster, looked)
	person(other, never)
	code, out, errs := runApbatch(t, ctx, "audit", "lookup", "--data-dir", data, "--checks", "qf", looked)
	if code != 0 || !strings.Contains(out, "quotient_familial: 1 call(s)") || !strings.Contains(out, "tenant demo") {
		t.Fatalf("lookup of a verified person: %d\n%s\n%s", code, out, errs)
	}
	for _, secret := range strings.Split(strings.TrimSpace(strings.SplitAfter(mustRead(t, looked), "\n")[1]), ";") {
		if len(secret) >= 4 && strings.Contains(out, secret) {
			t.Errorf("lookup printed a value of the identity: %q", secret)
		}
	}
	if code, out, errs := runApbatch(t, ctx, "audit", "lookup", "--data-dir", data, "--checks", "qf", never); code != 0 || !strings.Contains(out, ": 0 call(s)") {
		t.Fatalf("lookup of a person never looked up: %d\n%s\n%s", code, out, errs)
	}
	// Without the workers' key there is nothing to find: refused.
	if code, _, errs := runApbatch(t, ctx, "audit", "lookup", "--data-dir", data, "--audit-key-dir", dir, looked); code == 0 || !strings.Contains(errs, "no audit key") {
		t.Fatalf("lookup without the key: %d %s", code, errs)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
