package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline/keys"
)

func TestKeyRing(t *testing.T) {
	dir := t.TempDir()
	hexKey := func(b string) string { return strings.Repeat(b, 32) }
	idOf := func(k string) string {
		t.Helper()
		raw, err := keys.ParseKey(k)
		if err != nil {
			t.Fatal(err)
		}
		l, err := keys.NewLocal(raw)
		if err != nil {
			t.Fatal(err)
		}
		return l.ID()
	}
	file := filepath.Join(dir, "kek")
	if err := os.WriteFile(file, []byte(hexKey("11")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prevFile := filepath.Join(dir, "kek.old")
	if err := os.WriteFile(prevFile, []byte(hexKey("22")), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		env      map[string]string
		createIn string
		wantIDs  []string
		wantErr  string
	}{
		{"file", map[string]string{"APBATCH_KEK_FILE": file}, "", []string{idOf(hexKey("11"))}, ""},
		{"value", map[string]string{"APBATCH_KEK": hexKey("33")}, "", []string{idOf(hexKey("33"))}, ""},
		{"rotation", map[string]string{"APBATCH_KEK": hexKey("33"), "APBATCH_KEK_PREVIOUS_FILE": prevFile,
			"APBATCH_KEK_PREVIOUS": hexKey("44") + ", " + hexKey("55")}, "",
			[]string{idOf(hexKey("33")), idOf(hexKey("22")), idOf(hexKey("44")), idOf(hexKey("55"))}, ""},
		{"nothing, role mode", nil, "", nil, "set APBATCH_KEK_FILE"},
		{"two current keys", map[string]string{"APBATCH_KEK": hexKey("33"), "APBATCH_KMS_KEY_ID": "alias/x"}, "", nil, "not several"},
		{"bad value", map[string]string{"APBATCH_KEK": "my secret passphrase"}, "", nil, "APBATCH_KEK: keys: want 32 bytes"},
		{"missing file", map[string]string{"APBATCH_KEK_FILE": filepath.Join(dir, "none")}, "", nil, "APBATCH_KEK_FILE"},
		{"previous twice", map[string]string{"APBATCH_KEK": hexKey("33"), "APBATCH_KEK_PREVIOUS": hexKey("33")}, "", nil, "given twice"},
		{"bad previous", map[string]string{"APBATCH_KEK": hexKey("33"), "APBATCH_KEK_PREVIOUS": "short"}, "", nil, "APBATCH_KEK_PREVIOUS (key 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ring, err := keyRing(t.Context(), func(k string) string { return tc.env[k] }, tc.createIn)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if v := tc.env["APBATCH_KEK"]; v != "" && strings.Contains(err.Error(), v) {
					t.Fatalf("error quotes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ring.KeyIDs(); strings.Join(got, " ") != strings.Join(tc.wantIDs, " ") {
				t.Fatalf("KeyIDs = %v, want %v", got, tc.wantIDs)
			}
		})
	}
	t.Run("apbatch run: a key file made once", func(t *testing.T) {
		data := t.TempDir()
		r1, err := keyRing(t.Context(), func(string) string { return "" }, data)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := keyRing(t.Context(), func(string) string { return "" }, data)
		if err != nil || r1.KeyIDs()[0] != r2.KeyIDs()[0] {
			t.Fatalf("second run: %v %v", r2.KeyIDs(), err)
		}
		if st, err := os.Stat(filepath.Join(data, kekFileName)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key file: %v %v", st, err)
		}
	})
	t.Run("KMS key", func(t *testing.T) {
		ring, err := keyRing(t.Context(), func(k string) string {
			return map[string]string{"APBATCH_KMS_KEY_ID": "alias/apbatch", "APBATCH_KMS_REGION": "eu-west-3",
				"APBATCH_KMS_KEY_ID_PREVIOUS": "alias/old"}[k]
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(ring.KeyIDs(), " "); got != "kms:alias/apbatch kms:alias/old" {
			t.Fatalf("KeyIDs = %s", got)
		}
	})
}

// TestServe_RefusesWithoutKey: a role that seals or opens identities does
// not start without a key-encryption key, and says what to set.
func TestServe_RefusesWithoutKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vars := map[string]string{"APBATCH_KAFKA_BROKERS": "127.0.0.1:1", "APBATCH_DB": "sqlite://" + filepath.Join(t.TempDir(), "l.db"),
		"APBATCH_TOKEN": "tok", "APBATCH_RECIPIENT": "13002526500013", "APBATCH_AUDIT_KEY": strings.Repeat("ab", 32)}
	for _, role := range []string{"work", "ingest"} {
		code, _, stderr := runApbatchEnv(t, ctx, vars, role)
		if code == 0 || !strings.Contains(stderr, "APBATCH_KEK_FILE") || !strings.Contains(stderr, "APBATCH_KMS_KEY_ID") {
			t.Errorf("%s without a key: exit %d\n%s", role, code, stderr)
		}
	}
	if _, stdout, _ := runApbatchEnv(t, ctx, nil, "serve", "--help"); !strings.Contains(stdout, "APBATCH_KEK_PREVIOUS") {
		t.Errorf("serve --help:\n%s", stdout)
	}
}
