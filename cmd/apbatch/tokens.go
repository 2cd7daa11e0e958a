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

// tenantRecipientPrefix starts the variable holding one tenant's SIRET:
// APBATCH_RECIPIENT_<TENANT>, named as tenantEnv names tokens.
const tenantRecipientPrefix = "APBATCH_RECIPIENT_"

// tenantRecipients returns the tenants' own SIRETs found in environ
// (APBATCH_RECIPIENT_VILLE_DE_LYON=... for tenant ville-de-lyon). A value
// that is not a SIRET, or a name that cannot be a tenant's, is an error.
func tenantRecipients(environ []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range environ {
		name, v, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, tenantRecipientPrefix)
		if !ok {
			continue
		}
		tenant := strings.ReplaceAll(strings.ToLower(rest), "_", "-")
		if !pipeline.ValidTenant(tenant) || strings.ToUpper(rest) != rest {
			return nil, fmt.Errorf("%s: names no tenant (APBATCH_RECIPIENT_ then the tenant upper-cased, '-' as '_')", name)
		}
		v = strings.TrimSpace(v)
		if !siretPattern.MatchString(v) {
			return nil, fmt.Errorf("%s: want the collectivité's SIRET (14 digits)", name)
		}
		out[tenant] = v
	}
	return out, nil
}

// tenantDelegationPrefix starts the variable holding one tenant's editor
// delegation: APBATCH_DELEGATION_<TENANT>, named as tenantEnv names tokens.
const tenantDelegationPrefix = "APBATCH_DELEGATION_"

// delegationPattern is a delegation's id, a UUID as the API validates it
// (EditorDelegationResolver, datagouv/apistration).
var delegationPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// tenantDelegations returns the delegation_id of the tenants whose
// configuration names one (APBATCH_DELEGATION_VILLE_DE_LYON=<uuid> for
// tenant ville-de-lyon): an editor token with several delegations for the
// collectivité's SIRET must say which one the calls use. A value that is
// not a UUID, or a name that cannot be a tenant's, is an error.
func tenantDelegations(environ []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range environ {
		name, v, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, tenantDelegationPrefix)
		if !ok {
			continue
		}
		tenant := strings.ReplaceAll(strings.ToLower(rest), "_", "-")
		if !pipeline.ValidTenant(tenant) || strings.ToUpper(rest) != rest {
			return nil, fmt.Errorf("%s: names no tenant (APBATCH_DELEGATION_ then the tenant upper-cased, '-' as '_')", name)
		}
		v = strings.ToLower(strings.TrimSpace(v))
		if !delegationPattern.MatchString(v) {
			return nil, fmt.Errorf("%s: want the delegation's id (a UUID, from the editor's delegations)", name)
		}
		out[tenant] = v
	}
	return out, nil
}
