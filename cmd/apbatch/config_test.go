package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline"
)

// configOf returns the configuration flags of a command that has them.
func configOf(t *testing.T, c command) *configFlags {
	t.Helper()
	switch c := c.(type) {
	case *runCommand:
		return &c.config
	case *webCommand:
		return &c.config
	case *refreshCommand:
		return &c.config
	case *serveCommand:
		return &c.config
	}
	t.Fatalf("%T has no configuration", c)
	return nil
}

// configCommands are the commands reading a pipeline.Config.
var configCommands = []string{"run", "web", "refresh", "serve", "ingest", "work", "write"}

// TestConfigFlags_HelpNamesVariables: every setting's flag names its
// APBATCH_* variable in its help; serve's help says so of every flag.
func TestConfigFlags_HelpNamesVariables(t *testing.T) {
	cmds := commands(env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }})
	for _, name := range configCommands {
		fs := cmds[name].(interface{ flags() *flag.FlagSet }).flags()
		cf := configOf(t, cmds[name])
		fs.VisitAll(func(f *flag.Flag) {
			key, setting := cf.keys[f.Name]
			want := pipeline.ConfigEnv(key)
			switch {
			case f.Name == "config":
				want = pipeline.ConfigFileEnv
			case !setting && name != "serve" && name != "ingest" && name != "work" && name != "write":
				return // one invocation's flag (--tenant, --out)
			case !setting:
				t.Errorf("apbatch %s --%s is not a setting: it has no APBATCH_* variable", name, f.Name)
				return
			}
			if !strings.Contains(f.Usage, want) {
				t.Errorf("apbatch %s --%s: help %q does not name %s", name, f.Name, f.Usage, want)
			}
		})
	}
}

// TestConfigFlags_Load: run, web and serve read the file, the variables
// and the flags the same way, on their documented defaults.
func TestConfigFlags_Load(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "apbatch.yaml")
	if err := os.WriteFile(file, []byte("rate: 2\nin-flight: 4\nflush-interval: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		vars     map[string]string
		rate     int
		inFlight int
		flush    time.Duration
		logLevel string
	}{
		{"run defaults", []string{"run"}, nil, 20, 32, pipeline.LocalFlushInterval, "warn"},
		{"serve defaults", []string{"serve"}, nil, 20, 32, pipeline.DefaultFlushInterval, "info"},
		{"write defaults", []string{"write"}, nil, 20, 32, pipeline.DefaultFlushInterval, "info"},
		{"run file", []string{"run", "--config", file}, nil, 2, 4, 3 * time.Second, "warn"},
		{"serve file", []string{"serve", "--config", file}, nil, 2, 4, 3 * time.Second, "info"},
		{"web file by variable", []string{"web"}, map[string]string{"APBATCH_CONFIG": file}, 2, 4, 3 * time.Second, "warn"},
		{"run variable over file, flag over variable", []string{"run", "--config", file, "--rate", "7"},
			map[string]string{"APBATCH_RATE": "5", "APBATCH_IN_FLIGHT": "9", "APBATCH_LOG_LEVEL": "error"}, 7, 9, 3 * time.Second, "error"},
		{"work variable over file, flag over variable", []string{"work", "--config", file, "--rate", "7"},
			map[string]string{"APBATCH_RATE": "5", "APBATCH_IN_FLIGHT": "9", "APBATCH_LOG_LEVEL": "error"}, 7, 9, 3 * time.Second, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.vars[k] }
			c := commands(env{stdout: io.Discard, stderr: io.Discard, getenv: getenv})[tt.args[0]]
			fs := c.(interface{ flags() *flag.FlagSet }).flags()
			if err := parseArgs(fs, tt.args[1:]); err != nil {
				t.Fatal(err)
			}
			cfg, err := configOf(t, c).load(getenv)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Rate != tt.rate || cfg.InFlight != tt.inFlight || cfg.FlushInterval != tt.flush || cfg.LogLevel != tt.logLevel {
				t.Errorf("rate %d, in-flight %d, flush %v, log level %s; want %d, %d, %v, %s",
					cfg.Rate, cfg.InFlight, cfg.FlushInterval, cfg.LogLevel, tt.rate, tt.inFlight, tt.flush, tt.logLevel)
			}
		})
	}
}

// TestConfigFlags_Errors: a refused setting stops the command, naming it.
func TestConfigFlags_Errors(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret.yaml")
	if err := os.WriteFile(secret, []byte("oidc-client-secret: s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"run", "--budget-share", "0", samplePath}, nil, "--budget-share (APBATCH_BUDGET_SHARE): want a fraction"},
		{[]string{"work", "--kafka", "k:9092", "--db", "sqlite://x"}, map[string]string{"APBATCH_FLUSH_INTERVAL": "soon"}, "APBATCH_FLUSH_INTERVAL: want a duration"},
		{[]string{"serve", "--config", secret}, nil, "oidc-client-secret: secrets are not settings"},
		{[]string{"web", "--config", secret}, nil, "oidc-client-secret: secrets are not settings"},
	} {
		t.Run(strings.Join(tc.args[:1], " "), func(t *testing.T) {
			args := tc.args
			if args[0] == "run" || args[0] == "web" {
				args = append([]string{args[0], "--data-dir", t.TempDir()}, args[1:]...)
			}
			code, stdout, stderr := runApbatchEnv(t, t.Context(), tc.vars, args...)
			if code != 1 || !strings.Contains(stdout+stderr, tc.want) {
				t.Fatalf("exit %d, want 1 and %q; output:\n%s%s", code, tc.want, stdout, stderr)
			}
		})
	}
}
