package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// auditKey returns the key of the audit trail's identity hashes: the hex
// value of APBATCH_AUDIT_KEY, or a random key kept in dir/audit.key (created
// on first use, readable by its owner only).
func auditKey(getenv func(string) string, dir string) ([]byte, error) {
	if v := strings.TrimSpace(getenv("APBATCH_AUDIT_KEY")); v != "" {
		k, err := hex.DecodeString(v)
		if err != nil || len(k) < 16 {
			return nil, errors.New("APBATCH_AUDIT_KEY: want at least 16 bytes in hex (openssl rand -hex 32)")
		}
		return k, nil
	}
	path := filepath.Join(dir, "audit.key")
	if b, err := os.ReadFile(path); err == nil {
		return hex.DecodeString(strings.TrimSpace(string(b)))
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	return k, nil
}
