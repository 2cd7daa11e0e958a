package main

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestHelp_NoSecretFlags: no command takes a secret as a flag value (flags
// end up in shell histories, process lists and CI logs): every flag whose
// name suggests one (token, key, secret, password) is a switch or names a
// file or folder holding it.
func TestHelp_NoSecretFlags(t *testing.T) {
	ctx := context.Background()
	commands := []string{"run", "web", "sandbox", "bench", "audit", "purge", "results", "status", "cancel", "serve", "ingest", "work", "write", "broker", "s3", "token", "refresh", "version"}
	// Every command the general help lists is checked.
	_, general, _ := runApbatch(t, ctx, "help")
	_, section, _ := strings.Cut(general, "Commands:\n")
	section, _, _ = strings.Cut(section, "\n\n")
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z0-9]+)  `).FindAllStringSubmatch(section, -1) {
		if m[1] != "help" && !slices.Contains(commands, m[1]) {
			t.Errorf("command %q is listed by help but not checked here", m[1])
		}
	}
	secret := regexp.MustCompile(`token|key|secret|passw`)
	flagLine := regexp.MustCompile(`(?m)^  -([A-Za-z0-9-]+)(?: ([a-z0-9]+))?$`)
	for _, cmd := range commands {
		code, out, stderr := runApbatch(t, ctx, "help", cmd)
		if code != 0 {
			t.Fatalf("help %s: exit %d %s", cmd, code, stderr)
		}
		flags := flagLine.FindAllStringSubmatch(out, -1)
		if len(flags) == 0 && cmd != "audit" && cmd != "version" {
			t.Errorf("help %s lists no flag:\n%s", cmd, out)
		}
		for _, f := range flags {
			name, typ := f[1], f[2]
			if !secret.MatchString(name) {
				continue
			}
			if typ != "" && !strings.HasSuffix(name, "-file") && !strings.HasSuffix(name, "-dir") {
				t.Errorf("apbatch %s -%s takes a %s: a secret would be passed as a flag", cmd, name, typ)
			}
		}
	}
}
