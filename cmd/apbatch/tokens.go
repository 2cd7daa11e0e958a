package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/workers"
)

// tenantTokenPrefix starts the variable holding one tenant's token:
// APBATCH_TOKEN_<TENANT>.
const tenantTokenPrefix = "APBATCH_TOKEN_"

// tokenSources finds API tokens where deployments keep them, one per
// tenant: a variable APBATCH_TOKEN_<TENANT>, then a file <tenant> or
// <tenant>.token in dir (a Kubernetes Secret mounted as a folder has one
// file per key), then the default token (file, then APBATCH_TOKEN). Values
// are read at each lookup, so a rotated Secret is used without a restart;
// they never reach logs or errors.
type tokenSources struct {
	// file holds the default token (--token-file); "" for APBATCH_TOKEN.
	file string
	// dir holds one file per tenant (--tokens-dir); "" for none.
	dir string
	// tenantOnly refuses the default token to tenants: each must have its
	// own (--tenant-tokens-only), so that no tenant's rows are ever sent
	// under a token that is not its own.
	tenantOnly bool
	getenv     func(string) string
}

// tenantFile is what a tenant must look like to name a file: no path
// separator, no leading dot (a mounted Secret's "..data" entries).
var tenantFile = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]*$`)

// tenantEnv returns the variable holding tenant's token: the tenant
// upper-cased, every character but letters and digits turned into '_'
// ("ville-de-lyon" → APBATCH_TOKEN_VILLE_DE_LYON); "" for a tenant whose
// name would be APBATCH_TOKEN_FILE, the default token's file.
func tenantEnv(tenant string) string {
	b := []byte(strings.ToUpper(tenant))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	if name := tenantTokenPrefix + string(b); name != "APBATCH_TOKEN_FILE" {
		return name
	}
	return ""
}

// lookup returns tenant's token and where it was found (a variable's name
// or a file's path, never the value). The empty tenant asks for the
// default token. The error wraps workers.ErrNoToken when no source holds
// one.
func (s tokenSources) lookup(tenant string) (token, from string, err error) {
	if tenant != "" {
		if name := tenantEnv(tenant); name != "" {
			if t := strings.TrimSpace(s.getenv(name)); t != "" {
				return t, name, nil
			}
		}
		if s.dir != "" {
			if !tenantFile.MatchString(tenant) {
				return "", "", fmt.Errorf("tenant %q cannot name a file in --tokens-dir", tenant)
			}
			for _, name := range []string{tenant, tenant + ".token"} {
				path := filepath.Join(s.dir, name)
				b, err := os.ReadFile(path)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return "", "", fmt.Errorf("--tokens-dir: %w", err)
				}
				if t := strings.TrimSpace(string(b)); t != "" {
					return t, path, nil
				}
				return "", "", fmt.Errorf("--tokens-dir: %s is empty", path)
			}
		}
	}
	if tenant != "" && s.tenantOnly {
		where := "a file " + tenant + " or " + tenant + ".token in --tokens-dir"
		if name := tenantEnv(tenant); name != "" {
			where = name + " or " + where
		}
		return "", "", fmt.Errorf("no API token of tenant %q's own (--tenant-tokens-only): put it in %s: %w", tenant, where, workers.ErrNoToken)
	}
	if s.file == "" && strings.TrimSpace(s.getenv("APBATCH_TOKEN")) == "" {
		if tenant == "" {
			return "", "", fmt.Errorf("no API token: put it in a file given with --token-file, or in APBATCH_TOKEN: %w", workers.ErrNoToken)
		}
		where := "a file " + tenant + " or " + tenant + ".token in --tokens-dir"
		if name := tenantEnv(tenant); name != "" {
			where = name + ", " + where
		}
		return "", "", fmt.Errorf("no API token for tenant %q: put it in %s, or give a default one with --token-file or APBATCH_TOKEN: %w",
			tenant, where, workers.ErrNoToken)
	}
	t, err := readToken(s.file, s.getenv)
	if err != nil {
		return "", "", err
	}
	if s.file != "" {
		return t, s.file, nil
	}
	return t, "APBATCH_TOKEN", nil
}

// source is the workers' TokenSource over s.
func (s tokenSources) source() workers.TokenSource {
	return func(tenant string) (string, error) {
		t, _, err := s.lookup(tenant)
		return t, err
	}
}

// configured reports whether s can hold any token at all: a default one, a
// folder, or a variable of some tenant in environ.
func (s tokenSources) configured(environ []string) bool {
	if s.file != "" || s.dir != "" || strings.TrimSpace(s.getenv("APBATCH_TOKEN")) != "" {
		return true
	}
	for _, kv := range environ {
		name, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, tenantTokenPrefix) && name != "APBATCH_TOKEN_FILE" && strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

// tenantValues returns the values of the variables prefix<TENANT> in
// environ (prefix + VILLE_DE_LYON for tenant ville-de-lyon, named as
// tenantEnv names tokens), each trimmed and passed through norm, then
// checked by valid (want says what is expected). A value valid refuses, or
// a name that cannot be a tenant's, is an error.
func tenantValues(environ []string, prefix string, norm func(string) string, valid func(string) bool, want string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range environ {
		name, v, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		tenant := strings.ReplaceAll(strings.ToLower(rest), "_", "-")
		if !pipeline.ValidTenant(tenant) || strings.ToUpper(rest) != rest {
			return nil, fmt.Errorf("%s: names no tenant (%s then the tenant upper-cased, '-' as '_')", name, prefix)
		}
		v = norm(strings.TrimSpace(v))
		if !valid(v) {
			return nil, fmt.Errorf("%s: want %s", name, want)
		}
		out[tenant] = v
	}
	return out, nil
}

func same(s string) string { return s }

// tenantRecipients returns the tenants' own SIRETs
// (APBATCH_RECIPIENT_<TENANT>).
func tenantRecipients(environ []string) (map[string]string, error) {
	return tenantValues(environ, "APBATCH_RECIPIENT_", same, siretPattern.MatchString, "the collectivité's SIRET (14 digits)")
}

// perMinuteHelp documents --per-minute.
const perMinuteHelp = "per-minute limits per budget key, KEY=N,...: habilitation=250 for every habilitation (the operator's proposed 250/min), habilitation:ID=N for one, token=N for tokens of no habilitation; " +
	"a tenant's tokens belong to the habilitation their claims name (authorization_request_id) or APBATCH_HABILITATION_<TENANT>; the API's RateLimit-* headers lower these limits and announce others"

// tenantHabilitations returns the habilitations (authorization_request_id)
// tenants' configurations name (APBATCH_HABILITATION_<TENANT>), when their
// tokens' claims do not: their calls spend the habilitation's budget,
// shared with its other tokens.
func tenantHabilitations(environ []string) (map[string]string, error) {
	return tenantValues(environ, "APBATCH_HABILITATION_", same, workers.ValidHabilitation,
		"the habilitation's id (its authorization_request_id: letters, digits, '.', '-', '_')")
}

// tenantDelegationPrefix starts the variable holding one tenant's editor
// delegation: APBATCH_DELEGATION_<TENANT>.
const tenantDelegationPrefix = "APBATCH_DELEGATION_"

// delegationPattern is a delegation's id, a UUID as the API validates it
// (EditorDelegationResolver, datagouv/apistration).
var delegationPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// tenantDelegations returns the delegation_id of the tenants whose
// configuration names one (APBATCH_DELEGATION_<TENANT>): an editor token
// with several delegations for the collectivité's SIRET must say which one
// the calls use.
func tenantDelegations(environ []string) (map[string]string, error) {
	return tenantValues(environ, tenantDelegationPrefix, strings.ToLower, delegationPattern.MatchString,
		"the delegation's id (a UUID, from the editor's delegations)")
}
