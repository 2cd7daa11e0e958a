package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// get returns the setting key of c in its text form.
func get(t *testing.T, c Config, key string) string {
	t.Helper()
	p := c.Ptr(key)
	if p == nil {
		t.Fatalf("no setting %q", key)
	}
	return fmt.Sprint(reflect.ValueOf(p).Elem().Interface())
}

// writeConfig writes a configuration file holding body.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "apbatch.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadConfig: every setting's default, then the file over it, the
// variable over the file and the flag over the variable.
func TestLoadConfig(t *testing.T) {
	tests := []struct {
		key, def, file, env, flag string
	}{
		{"kafka", "", "k1:9092", "k2:9092,k3:9092", "k4:9092"},
		{"s3-endpoint", "", "http://s3-a:9000", "http://s3-b:9000", "http://s3-c:9000"},
		{"s3-bucket", "apbatch", "file-bucket", "env-bucket", "flag-bucket"},
		{"db", "", "sqlite:///tmp/a.db", "postgres://db/b", "postgres://db/c"},
		{"data-dir", "./apbatch-data", "/srv/a", "/srv/b", "/srv/c"},
		{"tmp-dir", "", "/tmp/a", "/tmp/b", "/tmp/c"},
		{"provider-url", "https://particulier.api.gouv.fr", "http://a", "http://b", "http://c"},
		{"token-file", "", "/run/a", "/run/b", "/run/c"},
		{"tokens-dir", "", "/run/ta", "/run/tb", "/run/tc"},
		{"tenant-tokens-only", "false", "true", "false", "true"},
		{"rate", "20", "15", "10", "5"},
		{"ip-limit", "1000", "900", "800", "700"},
		{"in-flight", "32", "16", "8", "4"},
		{"budget-share", "1", "0.5", "0.8", "0.9"},
		{"per-minute", "", "habilitation=250", "token=100", "habilitation=100"},
		{"shared-ip-budget", "", "egress-a", "egress-b", "egress-c"},
		{"run-window", "", "20:00-07:00", "21:00-06:00", "22:00-05:00"},
		{"no-maintenance-skip", "false", "true", "false", "true"},
		{"checks", "qf", "all", "qf,boursier", "etudiant"},
		{"recipient", "", "13002526500013", "21750001600019", "21690123100011"},
		{"events-topic", "apbatch.uploads", "events-a", "events-b", "events-c"},
		{"watch-interval", "0s", "1m0s", "5m0s", "30s"},
		{"flush-interval", "30s", "20s", "15s", "1s"},
		{"stall-after", "15m0s", "10m0s", "5m0s", "1h0m0s"},
		{"notify-url", "", "https://hooks/a", "https://hooks/b", "https://hooks/c"},
		{"log-level", "info", "debug", "error", "warn"},
		{"metrics-addr", "", ":9464", ":9465", ":9466"},
		{"memory-limit", "off", "auto", "500MiB", "1GiB"},
		{"audit-key-dir", ".", "/keys/a", "/keys/b", "/keys/c"},
		{"roles", "ingest,work,write", "ingest", "work", "write,web"},
		{"web-addr", ":8080", ":8081", ":8082", ":8083"},
		{"web-api-keys-dir", "", "/keys/wa", "/keys/wb", "/keys/wc"},
		{"oidc-issuer", "", "https://idp/a", "https://idp/b", "https://idp/c"},
		{"oidc-client-id", "", "client-a", "client-b", "client-c"},
		{"oidc-redirect-url", "", "https://a/connexion/retour", "https://b/connexion/retour", "https://c/connexion/retour"},
		{"oidc-tenant-claim", "siret", "org", "organisation", "tenant"},
		{"oidc-tenants", "", "1=a", "2=b", "3=c"},
		{"oidc-scopes", "", "openid", "openid,email", "openid,siret"},
	}
	var covered []string
	for _, tt := range tests {
		covered = append(covered, tt.key)
	}
	if !slices.Equal(covered, ConfigKeys()) {
		t.Fatalf("the table covers %v\nwant every setting, in order: %v", covered, ConfigKeys())
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			env := ConfigEnv(tt.key)
			if !strings.HasPrefix(env, "APBATCH_") {
				t.Fatalf("variable %q", env)
			}
			path := writeConfig(t, tt.key+": "+tt.file+"\n")
			vars := func(v string) func(string) string {
				return func(name string) string {
					if name == env {
						return v
					}
					return ""
				}
			}
			flags := map[string]string{tt.key: tt.flag}
			layers := []struct {
				name  string
				path  string
				env   string
				flags map[string]string
				want  string
			}{
				{"default", "", "", nil, tt.def},
				{"file", path, "", nil, tt.file},
				{"variable over file", path, tt.env, nil, tt.env},
				{"flag over variable", path, tt.env, flags, tt.flag},
				{"flag over file", path, "", flags, tt.flag},
				{"blank variable unset", path, "  ", nil, tt.file},
			}
			for _, l := range layers {
				c, err := LoadConfig(DefaultConfig(), l.path, vars(l.env), l.flags)
				if err != nil {
					t.Fatalf("%s: %v", l.name, err)
				}
				if got := get(t, c, tt.key); got != l.want {
					t.Errorf("%s: %s = %q, want %q", l.name, tt.key, got, l.want)
				}
			}
		})
	}
}

// TestLocalConfig: run, web and refresh differ from serve's defaults in
// the documented settings only.
func TestLocalConfig(t *testing.T) {
	def, local := DefaultConfig(), LocalConfig()
	var differ []string
	for _, key := range ConfigKeys() {
		if get(t, def, key) != get(t, local, key) {
			differ = append(differ, key)
		}
	}
	want := []string{"provider-url", "flush-interval", "log-level", "web-addr"}
	if !slices.Equal(differ, want) {
		t.Errorf("LocalConfig differs in %v, want %v", differ, want)
	}
	if err := local.Validate(); err != nil {
		t.Errorf("LocalConfig().Validate() = %v", err)
	}
}

// TestConfig_Validate: each refusal names its setting, as a flag and a
// variable.
func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Config)
		key  string
		want string
	}{
		{"defaults", func(*Config) {}, "", ""},
		{"zero rate", func(c *Config) { c.Rate = 0 }, "rate", "--rate (APBATCH_RATE): must be positive"},
		{"negative ip limit", func(c *Config) { c.IPLimit = -1 }, "ip-limit", "--ip-limit (APBATCH_IP_LIMIT): must be positive"},
		{"zero in flight", func(c *Config) { c.InFlight = 0 }, "in-flight", "must be positive (got 0)"},
		{"share zero", func(c *Config) { c.BudgetShare = 0 }, "budget-share", "want a fraction in (0, 1]"},
		{"share above one", func(c *Config) { c.BudgetShare = 1.5 }, "budget-share", "(got 1.5)"},
		{"negative watch", func(c *Config) { c.WatchInterval = -1 }, "watch-interval", "0 for off"},
		{"zero flush", func(c *Config) { c.FlushInterval = 0 }, "flush-interval", "--flush-interval (APBATCH_FLUSH_INTERVAL)"},
		{"no topic", func(c *Config) { c.EventsTopic = "" }, "events-topic", "give a topic name"},
		{"no bucket", func(c *Config) { c.S3Bucket = "" }, "s3-bucket", "give a bucket name"},
		{"bad per-minute", func(c *Config) { c.PerMinute = "habilitation=x" }, "per-minute", "--per-minute (APBATCH_PER_MINUTE)"},
		{"bad run window", func(c *Config) { c.RunWindow = "late" }, "run-window", "--run-window (APBATCH_RUN_WINDOW)"},
		{"bad checks", func(c *Config) { c.Checks = "qf,nope" }, "checks", "--checks (APBATCH_CHECKS)"},
		{"bad log level", func(c *Config) { c.LogLevel = "loud" }, "log-level", `want debug, info, warn or error (got "loud")`},
		{"empty log level", func(c *Config) { c.LogLevel = "" }, "log-level", "--log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.set(&c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != tt.key || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want a *ConfigError for %s containing %q", err, tt.key, tt.want)
			}
		})
	}
}

// TestLoadConfig_Errors: what the file and the variables refuse names the
// source and the setting; secrets have no place in the file.
func TestLoadConfig_Errors(t *testing.T) {
	tests := []struct {
		name  string
		file  string // "" for no file
		env   map[string]string
		flags map[string]string
		want  string
	}{
		{"secret in the file", "token: abc\n", nil, nil, "token: secrets are not settings"},
		{"S3 key in the file", "s3-secret-key: abc\n", nil, nil, "s3-secret-key: secrets are not settings"},
		{"unknown key", "flush: 1s\n", nil, nil, "flush: unknown setting"},
		{"wrong type in the file", "rate: fast\n", nil, nil, `rate: want an integer (got "fast")`},
		{"not a mapping", "- rate\n", nil, nil, "want a mapping of settings"},
		{"bad YAML", "rate: [\n", nil, nil, "config "},
		{"bad variable", "", map[string]string{"APBATCH_FLUSH_INTERVAL": "soon"}, nil, `APBATCH_FLUSH_INTERVAL: want a duration such as 30s or 5m (got "soon")`},
		{"bad boolean variable", "", map[string]string{"APBATCH_TENANT_TOKENS_ONLY": "yes please"}, nil, "APBATCH_TENANT_TOKENS_ONLY: want true or false"},
		{"valid file, invalid value", "budget-share: 2\n", nil, nil, "--budget-share (APBATCH_BUDGET_SHARE): want a fraction"},
		{"variable fixed by a flag", "", map[string]string{"APBATCH_RATE": "0"}, map[string]string{"rate": "5"}, ""},
		{"unknown flag", "", nil, map[string]string{"nope": "1"}, "--nope: unknown setting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeConfig(t, tt.file)
			}
			_, err := LoadConfig(DefaultConfig(), path, func(k string) string { return tt.env[k] }, tt.flags)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("LoadConfig() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("LoadConfig() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestLoadConfig_File: lists are joined, an empty file changes nothing,
// a missing file is an error.
func TestLoadConfig_File(t *testing.T) {
	none := func(string) string { return "" }
	c, err := LoadConfig(DefaultConfig(), writeConfig(t, "kafka:\n  - k1:9092\n  - k2:9092\nroles: [ingest, work]\n"), none, nil)
	if err != nil || c.Kafka != "k1:9092,k2:9092" || c.Roles != "ingest,work" {
		t.Fatalf("lists: %+v, %v", c, err)
	}
	if c, err = LoadConfig(DefaultConfig(), writeConfig(t, ""), none, nil); err != nil || !reflect.DeepEqual(c, DefaultConfig()) {
		t.Fatalf("empty file: %+v, %v", c, err)
	}
	if _, err = LoadConfig(DefaultConfig(), filepath.Join(t.TempDir(), "missing.yaml"), none, nil); err == nil {
		t.Fatal("missing file: no error")
	}
}
