package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
)

// Defaults of Config fields that are not a package's own default.
const (
	// DefaultFlushInterval is how long a result waits in memory before
	// its part is written, in a long-running write role: fewer, larger
	// parts for batches that take hours.
	DefaultFlushInterval = 30 * time.Second
	// LocalFlushInterval is the flush interval of the commands running
	// everything in one process (run, web, refresh): the agent watching
	// the progress sees results published sooner. A batch whose every
	// row has its result is written at once either way.
	LocalFlushInterval = 10 * time.Second
	// DefaultLogLevel is the log level of the long-running roles.
	DefaultLogLevel = "info"
	// LocalLogLevel is the log level of run, web and refresh, whose
	// terminal shows the progress: warnings and errors only.
	LocalLogLevel = "warn"
	// DefaultS3Bucket is the bucket of incoming files and results.
	DefaultS3Bucket = "apbatch"
	// DefaultDataDir is the folder of the embedded services.
	DefaultDataDir = "./apbatch-data"
	// DefaultChecks are the checks new batches run: the quotient familial.
	DefaultChecks = "qf"
	// DefaultRoles are the roles "apbatch serve" runs.
	DefaultRoles = "ingest,work,write"
	// DefaultWebAddr is the portal's address behind the HTTPS reverse
	// proxy (serve --roles web).
	DefaultWebAddr = ":8080"
	// LocalWebAddr is the address of "apbatch web": without an OpenID
	// Connect provider the portal listens on a loopback address only.
	LocalWebAddr = "127.0.0.1:8080"
	// DefaultOIDCTenantClaim is the claim naming an agent's organisation.
	DefaultOIDCTenantClaim = "siret"
	// DefaultMemoryLimit leaves the Go runtime without a soft memory
	// limit.
	DefaultMemoryLimit = "off"
	// DefaultAuditKeyDir is the folder of audit.key in a long-running
	// work role without APBATCH_AUDIT_KEY.
	DefaultAuditKeyDir = "."
)

// Config is apbatch's configuration, shared by "apbatch run", "web",
// "refresh" and "serve" (and its roles). Each field is a setting named by
// its key: the key is the flag (--flush-interval), the YAML key of the
// configuration file (flush-interval: 30s) and, in upper case with
// underscores, the APBATCH_* variable (APBATCH_FLUSH_INTERVAL), unless its
// comment names another. LoadConfig overlays, in this order, the defaults,
// the file, the variables and the flags. Secrets (API tokens, S3 keys,
// the audit key, OpenID Connect's client secret, the session key) are not
// settings: they come from the environment or from files only, never from
// a flag or the configuration file.
//
// A field applies to the commands its comment names; the others ignore
// it.
type Config struct {
	// Kafka lists the Kafka brokers, host:port,... (APBATCH_KAFKA_BROKERS);
	// serve, and refresh submitting to the roles. Default: "" (serve
	// refuses to start; refresh runs on the embedded services).
	Kafka string
	// S3Endpoint is the S3 endpoint URL; "" is AWS. Default: "".
	S3Endpoint string
	// S3Bucket is the bucket of incoming files and results. Default:
	// DefaultS3Bucket.
	S3Bucket string
	// DB is the ledger, postgres://... or sqlite://PATH. Default: ""
	// (serve refuses to start).
	DB string
	// DataDir is the folder of the embedded broker, S3 server and SQLite
	// ledger of run, web and refresh. Default: DefaultDataDir.
	DataDir string
	// TmpDir is the folder of one serve process alone for the unpacked
	// sheets of large workbooks, emptied on start. Default: "" (the
	// system's temporary folder).
	TmpDir string

	// ProviderURL is API Particulier's base URL. Default:
	// workers.ProductionURL; run, web and refresh: "" (the embedded
	// sandbox).
	ProviderURL string
	// TokenFile is the file holding the default API token (else
	// APBATCH_TOKEN). Default: "".
	TokenFile string
	// TokensDir is a folder of one token per tenant, files <tenant> or
	// <tenant>.token. Default: "".
	TokensDir string
	// TenantTokensOnly never uses the default token for a tenant (serve's
	// work role). Default: false.
	TenantTokensOnly bool
	// Rate is the budget per token, requests per second. Default:
	// workers.DefaultLimit.
	Rate int
	// IPLimit is the budget of this machine's egress IP, requests per
	// minute, all tokens together. Default: workers.DefaultIPLimit.
	IPLimit int
	// InFlight is how many provider calls are in flight at most. Default:
	// workers.DefaultMaxInFlight.
	InFlight int
	// BudgetShare is the fraction of the token's and the IP's budgets to
	// use, in (0, 1]. Default: 1.
	BudgetShare float64
	// PerMinute are per-minute limits per budget key, KEY=N,... (see
	// workers.ParseKeyLimits). Default: "" (none).
	PerMinute string
	// SharedIPBudget names the egress IP whose IPLimit the worker
	// processes of the same name share through the ledger
	// (shared-ip-budget). Default: "" (not shared).
	SharedIPBudget string
	// RunWindow is the daily window, Europe/Paris time, calls are made in,
	// e.g. 20:00-07:00 (run, web, refresh). Default: "" (any time).
	RunWindow string
	// NoMaintenanceSkip calls even during the providers' maintenance
	// windows. Default: false.
	NoMaintenanceSkip bool

	// Checks are the checks new batches run, comma-separated. Default:
	// DefaultChecks.
	Checks string
	// Recipient is the SIRET of the collectivité sent with the calls of
	// tenants without their own. Default: "" (run and web: the embedded
	// sandbox's example SIRET; serve's ingest role refuses uploads).
	Recipient string
	// EventsTopic is the topic the bucket's S3 event notifications reach
	// (serve's ingest role). Default: schemas.TopicUploads.
	EventsTopic string
	// WatchInterval, when positive, also lists incoming/ this often for
	// uploads no notification announced (serve's ingest role). Default: 0
	// (off).
	WatchInterval time.Duration
	// FlushInterval is the longest time a result waits before its part
	// is written. Default: DefaultFlushInterval; run, web and refresh:
	// LocalFlushInterval.
	FlushInterval time.Duration
	// StallAfter is how long a batch may go without progress before it
	// is reported stalled. Default: DefaultStallAfter.
	StallAfter time.Duration
	// NotifyURL is the webhook told when a batch ends. Default: "" (none).
	NotifyURL string

	// LogLevel is debug, info, warn or error. Default: DefaultLogLevel;
	// run, web and refresh: LocalLogLevel.
	LogLevel string
	// MetricsAddr serves /metrics, /healthz and /readyz. Default: "" (off).
	MetricsAddr string
	// MemoryLimit is the runtime's soft memory limit. Default:
	// DefaultMemoryLimit.
	MemoryLimit string
	// AuditKeyDir is the folder of audit.key without APBATCH_AUDIT_KEY
	// (serve's work role; run keeps it in DataDir). Default:
	// DefaultAuditKeyDir.
	AuditKeyDir string
	// Roles are the roles serve runs, comma-separated. Default:
	// DefaultRoles.
	Roles string

	// WebAddr is the portal's address (web's --listen, serve's
	// --web-addr). Default: DefaultWebAddr; web: LocalWebAddr.
	WebAddr string
	// WebAPIKeysDir is a folder of one portal API key per tenant.
	// Default: "".
	WebAPIKeysDir string
	// OIDCIssuer is the OpenID Connect issuer URL. Default: "" (no
	// OpenID Connect sign-in).
	OIDCIssuer string
	// OIDCClientID is the OpenID Connect client id. Default: "".
	OIDCClientID string
	// OIDCRedirectURL is the portal's redirect URL registered with the
	// provider. Default: "".
	OIDCRedirectURL string
	// OIDCTenantClaim is the claim naming the agent's organisation.
	// Default: DefaultOIDCTenantClaim.
	OIDCTenantClaim string
	// OIDCTenants maps claim values to tenants, value=tenant,...
	// Default: "".
	OIDCTenants string
	// OIDCScopes are the scopes asked, comma-separated. Default: ""
	// (openid, email, siret).
	OIDCScopes string
}

// DefaultConfig returns the defaults of the long-running roles (serve).
func DefaultConfig() Config {
	return Config{
		S3Bucket:        DefaultS3Bucket,
		DataDir:         DefaultDataDir,
		ProviderURL:     workers.ProductionURL,
		Rate:            workers.DefaultLimit,
		IPLimit:         workers.DefaultIPLimit,
		InFlight:        workers.DefaultMaxInFlight,
		BudgetShare:     1,
		Checks:          DefaultChecks,
		EventsTopic:     schemas.TopicUploads,
		FlushInterval:   DefaultFlushInterval,
		StallAfter:      DefaultStallAfter,
		LogLevel:        DefaultLogLevel,
		MemoryLimit:     DefaultMemoryLimit,
		AuditKeyDir:     DefaultAuditKeyDir,
		Roles:           DefaultRoles,
		WebAddr:         DefaultWebAddr,
		OIDCTenantClaim: DefaultOIDCTenantClaim,
	}
}

// LocalConfig returns the defaults of the commands running everything in
// one process on the embedded services (run, web, refresh): DefaultConfig
// but for the provider (the embedded sandbox), the flush interval, the log
// level and the portal's address.
func LocalConfig() Config {
	c := DefaultConfig()
	c.ProviderURL = ""
	c.FlushInterval = LocalFlushInterval
	c.LogLevel = LocalLogLevel
	c.WebAddr = LocalWebAddr
	return c
}

// configField is one setting of Config.
type configField struct {
	key string // flag and YAML key
	env string // APBATCH_* variable
	ptr func(*Config) any
}

// configFields are Config's settings, in the order of its fields. The
// variables are written out whole: the deployment tests look for them in
// the sources.
var configFields = []configField{
	{"kafka", "APBATCH_KAFKA_BROKERS", func(c *Config) any { return &c.Kafka }},
	{"s3-endpoint", "APBATCH_S3_ENDPOINT", func(c *Config) any { return &c.S3Endpoint }},
	{"s3-bucket", "APBATCH_S3_BUCKET", func(c *Config) any { return &c.S3Bucket }},
	{"db", "APBATCH_DB", func(c *Config) any { return &c.DB }},
	{"data-dir", "APBATCH_DATA_DIR", func(c *Config) any { return &c.DataDir }},
	{"tmp-dir", "APBATCH_TMP_DIR", func(c *Config) any { return &c.TmpDir }},
	{"provider-url", "APBATCH_PROVIDER_URL", func(c *Config) any { return &c.ProviderURL }},
	{"token-file", "APBATCH_TOKEN_FILE", func(c *Config) any { return &c.TokenFile }},
	{"tokens-dir", "APBATCH_TOKENS_DIR", func(c *Config) any { return &c.TokensDir }},
	{"tenant-tokens-only", "APBATCH_TENANT_TOKENS_ONLY", func(c *Config) any { return &c.TenantTokensOnly }},
	{"rate", "APBATCH_RATE", func(c *Config) any { return &c.Rate }},
	{"ip-limit", "APBATCH_IP_LIMIT", func(c *Config) any { return &c.IPLimit }},
	{"in-flight", "APBATCH_IN_FLIGHT", func(c *Config) any { return &c.InFlight }},
	{"budget-share", "APBATCH_BUDGET_SHARE", func(c *Config) any { return &c.BudgetShare }},
	{"per-minute", "APBATCH_PER_MINUTE", func(c *Config) any { return &c.PerMinute }},
	{"shared-ip-budget", "APBATCH_SHARED_IP_BUDGET", func(c *Config) any { return &c.SharedIPBudget }},
	{"run-window", "APBATCH_RUN_WINDOW", func(c *Config) any { return &c.RunWindow }},
	{"no-maintenance-skip", "APBATCH_NO_MAINTENANCE_SKIP", func(c *Config) any { return &c.NoMaintenanceSkip }},
	{"checks", "APBATCH_CHECKS", func(c *Config) any { return &c.Checks }},
	{"recipient", "APBATCH_RECIPIENT", func(c *Config) any { return &c.Recipient }},
	{"events-topic", "APBATCH_EVENTS_TOPIC", func(c *Config) any { return &c.EventsTopic }},
	{"watch-interval", "APBATCH_WATCH_INTERVAL", func(c *Config) any { return &c.WatchInterval }},
	{"flush-interval", "APBATCH_FLUSH_INTERVAL", func(c *Config) any { return &c.FlushInterval }},
	{"stall-after", "APBATCH_STALL_AFTER", func(c *Config) any { return &c.StallAfter }},
	{"notify-url", "APBATCH_NOTIFY_URL", func(c *Config) any { return &c.NotifyURL }},
	{"log-level", "APBATCH_LOG_LEVEL", func(c *Config) any { return &c.LogLevel }},
	{"metrics-addr", "APBATCH_METRICS_ADDR", func(c *Config) any { return &c.MetricsAddr }},
	{"memory-limit", "APBATCH_MEMORY_LIMIT", func(c *Config) any { return &c.MemoryLimit }},
	{"audit-key-dir", "APBATCH_AUDIT_KEY_DIR", func(c *Config) any { return &c.AuditKeyDir }},
	{"roles", "APBATCH_ROLES", func(c *Config) any { return &c.Roles }},
	{"web-addr", "APBATCH_WEB_ADDR", func(c *Config) any { return &c.WebAddr }},
	{"web-api-keys-dir", "APBATCH_WEB_API_KEYS_DIR", func(c *Config) any { return &c.WebAPIKeysDir }},
	{"oidc-issuer", "APBATCH_OIDC_ISSUER", func(c *Config) any { return &c.OIDCIssuer }},
	{"oidc-client-id", "APBATCH_OIDC_CLIENT_ID", func(c *Config) any { return &c.OIDCClientID }},
	{"oidc-redirect-url", "APBATCH_OIDC_REDIRECT_URL", func(c *Config) any { return &c.OIDCRedirectURL }},
	{"oidc-tenant-claim", "APBATCH_OIDC_TENANT_CLAIM", func(c *Config) any { return &c.OIDCTenantClaim }},
	{"oidc-tenants", "APBATCH_OIDC_TENANTS", func(c *Config) any { return &c.OIDCTenants }},
	{"oidc-scopes", "APBATCH_OIDC_SCOPES", func(c *Config) any { return &c.OIDCScopes }},
}

// ConfigFileEnv names the configuration file when --config is not given.
const ConfigFileEnv = "APBATCH_CONFIG"

// fieldOf returns the setting of key.
func fieldOf(key string) (configField, bool) {
	for _, f := range configFields {
		if f.key == key {
			return f, true
		}
	}
	return configField{}, false
}

// ConfigKeys returns the keys of Config's settings, in the order of its
// fields.
func ConfigKeys() []string {
	keys := make([]string, len(configFields))
	for i, f := range configFields {
		keys[i] = f.key
	}
	return keys
}

// ConfigEnv returns the APBATCH_* variable of the setting key, or "" when
// key is not one.
func ConfigEnv(key string) string {
	f, _ := fieldOf(key)
	return f.env
}

// Ptr returns a pointer to the field of the setting key (*string, *int,
// *float64, *bool or *time.Duration), for a flag to write into; nil when
// key is not a setting.
func (c *Config) Ptr(key string) any {
	f, ok := fieldOf(key)
	if !ok {
		return nil
	}
	return f.ptr(c)
}

// Set sets the setting key from its text form, as typed after its flag or
// in its variable. The error, a *ConfigError, names the setting.
func (c *Config) Set(key, value string) error {
	f, ok := fieldOf(key)
	if !ok {
		return &ConfigError{Key: key, Err: errors.New("unknown setting")}
	}
	var err error
	switch p := f.ptr(c).(type) {
	case *string:
		*p = strings.TrimSpace(value)
	case *int:
		var n int
		if n, err = strconv.Atoi(strings.TrimSpace(value)); err == nil {
			*p = n
		} else {
			err = fmt.Errorf("want an integer (got %q)", value)
		}
	case *float64:
		var x float64
		if x, err = strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			*p = x
		} else {
			err = fmt.Errorf("want a number (got %q)", value)
		}
	case *bool:
		var b bool
		if b, err = strconv.ParseBool(strings.TrimSpace(value)); err == nil {
			*p = b
		} else {
			err = fmt.Errorf("want true or false, 1 or 0 (got %q)", value)
		}
	case *time.Duration:
		var d time.Duration
		if d, err = time.ParseDuration(strings.TrimSpace(value)); err == nil {
			*p = d
		} else {
			err = fmt.Errorf("want a duration such as 30s or 5m (got %q)", value)
		}
	}
	if err != nil {
		return &ConfigError{Key: key, Err: err}
	}
	return nil
}

// secretKey matches the names of secrets, refused in the configuration
// file with a word on where they go.
var secretKey = regexp.MustCompile(`token|secret|key|passw`)

// LoadFile overlays c with the YAML file at path: a mapping of settings'
// keys to values (a list is joined with commas). An unknown key, a secret
// or a value of the wrong type is an error naming the file and the key.
func (c *Config) LoadFile(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file
		}
		return fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: want a mapping of settings, e.g. flush-interval: 30s", path)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, v := m.Content[i].Value, m.Content[i+1]
		if _, ok := fieldOf(key); !ok {
			if secretKey.MatchString(key) {
				return &ConfigError{Key: key, From: path, Err: errors.New("secrets are not settings: give them in the environment or in files (APBATCH_* variables, --token-file, --tokens-dir)")}
			}
			return &ConfigError{Key: key, From: path, Err: errors.New("unknown setting (the keys are the flags' names)")}
		}
		value := v.Value
		switch v.Kind {
		case yaml.ScalarNode:
		case yaml.SequenceNode:
			var items []string
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return &ConfigError{Key: key, From: path, Err: errors.New("want a value or a list of values")}
				}
				items = append(items, it.Value)
			}
			value = strings.Join(items, ",")
		default:
			return &ConfigError{Key: key, From: path, Err: errors.New("want a value or a list of values")}
		}
		if err := c.Set(key, value); err != nil {
			return withSource(err, path)
		}
	}
	return nil
}

// LoadEnv overlays c with the APBATCH_* variables getenv returns; an empty
// variable is unset.
func (c *Config) LoadEnv(getenv func(string) string) error {
	for _, f := range configFields {
		v := strings.TrimSpace(getenv(f.env))
		if v == "" {
			continue
		}
		if err := c.Set(f.key, v); err != nil {
			return withSource(err, f.env)
		}
	}
	return nil
}

// withSource names where a refused value came from.
func withSource(err error, from string) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		ce.From = from
	}
	return err
}

// LoadConfig returns def overlaid with, in this order, the YAML file at
// path ("" for none), the APBATCH_* variables getenv returns and flags
// (settings' keys to the values typed), then validated (Validate).
func LoadConfig(def Config, path string, getenv func(string) string, flags map[string]string) (Config, error) {
	c := def
	if path != "" {
		if err := c.LoadFile(path); err != nil {
			return c, err
		}
	}
	if err := c.LoadEnv(getenv); err != nil {
		return c, err
	}
	for _, f := range configFields {
		if v, ok := flags[f.key]; ok {
			if err := c.Set(f.key, v); err != nil {
				return c, err
			}
		}
	}
	for key := range flags {
		if _, ok := fieldOf(key); !ok {
			return c, &ConfigError{Key: key, Err: errors.New("unknown setting")}
		}
	}
	return c, c.Validate()
}

// Validate checks the settings' values; the error, a *ConfigError, names
// the first setting at fault.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{Key: key, Err: fmt.Errorf(format, args...)}
	}
	switch {
	case c.Rate <= 0:
		return bad("rate", "must be positive (got %d)", c.Rate)
	case c.IPLimit <= 0:
		return bad("ip-limit", "must be positive (got %d)", c.IPLimit)
	case c.InFlight <= 0:
		return bad("in-flight", "must be positive (got %d)", c.InFlight)
	case c.BudgetShare <= 0 || c.BudgetShare > 1:
		return bad("budget-share", "want a fraction in (0, 1], e.g. 0.8 (got %v)", c.BudgetShare)
	case c.WatchInterval < 0:
		return bad("watch-interval", "want a duration such as 30s or 5m, or 0 for off (got %v)", c.WatchInterval)
	case c.FlushInterval <= 0:
		return bad("flush-interval", "want a positive duration such as 10s (got %v)", c.FlushInterval)
	case c.EventsTopic == "":
		return bad("events-topic", "give a topic name")
	case c.S3Bucket == "":
		return bad("s3-bucket", "give a bucket name")
	}
	if _, err := workers.ParseKeyLimits(c.PerMinute); err != nil {
		return &ConfigError{Key: "per-minute", Err: err}
	}
	if c.RunWindow != "" {
		if _, err := workers.ParseWindow(c.RunWindow); err != nil {
			return &ConfigError{Key: "run-window", Err: err}
		}
	}
	if _, err := schemas.ParseChecks(c.Checks); err != nil {
		return &ConfigError{Key: "checks", Err: err}
	}
	if _, err := zerolog.ParseLevel(c.LogLevel); err != nil || c.LogLevel == "" {
		return bad("log-level", "want debug, info, warn or error (got %q)", c.LogLevel)
	}
	return nil
}

// ConfigError is a setting refused: a value that does not parse or is out
// of range.
type ConfigError struct {
	// Key is the setting: its flag's and YAML key's name.
	Key string
	// From is where the value came from: the variable, or the file; ""
	// for a flag or the final configuration (Validate).
	From string
	Err  error
}

// Error names the setting as its source does: "APBATCH_RATE: ...",
// "FILE: rate: ...", or "--rate (APBATCH_RATE): ...".
func (e *ConfigError) Error() string {
	switch {
	case strings.HasPrefix(e.From, "APBATCH_"):
		return e.From + ": " + e.Err.Error()
	case e.From != "":
		return "config " + e.From + ": " + e.Key + ": " + e.Err.Error()
	case ConfigEnv(e.Key) != "":
		return "--" + e.Key + " (" + ConfigEnv(e.Key) + "): " + e.Err.Error()
	}
	return "--" + e.Key + ": " + e.Err.Error()
}

// Unwrap returns the reason.
func (e *ConfigError) Unwrap() error { return e.Err }
