package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/apbatch/apbatch/workers/sandbox"
)

// sandboxCommand is "apbatch sandbox".
type sandboxCommand struct {
	env
	fs *flag.FlagSet

	addr, scopes, logLevel  string
	printToken, mask, maint bool
	expiresIn               time.Duration
	limits                  sandbox.Limits
	window, latency, faults string
	seed                    uint64
	providerTimeout         time.Duration
	population              int
}

func (c *sandboxCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "address to serve on")
	fs.BoolVar(&c.printToken, "print-token", false, "print a valid sandbox token and exit")
	fs.StringVar(&c.scopes, "scopes", "", "with --print-token: comma-separated scopes (default: all)")
	fs.DurationVar(&c.expiresIn, "expires-in", 24*time.Hour, "with --print-token: token lifetime")
	fs.BoolVar(&c.mask, "mask-scopes", false, "drop data fields the token has no scope for, as production does")
	fs.BoolVar(&c.maint, "maintenance", false, "answer 503 during the providers' real maintenance windows, Europe/Paris (CNAF & MSA Sunday 23:00-23:45, MEN 01:10-02:30)")
	fs.IntVar(&c.limits.PerSecond, "rate", sandbox.DefaultPerSecond, "requests per second allowed per token (v3 routes together)")
	fs.IntVar(&c.limits.PerMinute, "per-minute", 0, "optional per-token limit per minute, e.g. 250 (announced in RateLimit-* headers)")
	fs.IntVar(&c.limits.IPPerMinute, "ip-limit", sandbox.DefaultIPPerMinute, "requests per minute per client IP")
	fs.StringVar(&c.window, "window", "fixed", "per-token window: fixed (aligned on the second, as production) or sliding")
	fs.IntVar(&c.limits.BanAfter, "ban-after", 0, "ban a client IP after this many requests sent while told to wait (0: never)")
	fs.DurationVar(&c.limits.BanFor, "ban-for", 12*time.Hour, "how long a ban lasts (banned clients get no answer)")
	fs.StringVar(&c.latency, "latency", "", "answer latency: P50 or P50,P99 (log-normal), e.g. 200ms,2s")
	fs.StringVar(&c.faults, "faults", "", "fault rates: KIND=RATE,... with KIND in 502, 502-999, 00501, 504, 503, gateway, reset")
	fs.DurationVar(&c.providerTimeout, "provider-timeout", 10*time.Second, "how long a 504 fault takes")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the synthetic population and of latency and fault draws")
	fs.IntVar(&c.population, "population", 10000, "synthetic people the QF route answers for, with their children (see: apbatch sandbox gen)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *sandboxCommand) Usage() {
	fs := c.flags()
	printUsage(c.stdout, c.stderr, fs, `Usage: apbatch sandbox [flags]
       apbatch sandbox gen --population N --seed S -o FILE.csv

Serves a faithful API Particulier sandbox: every v3+ route apbatch's checks
use (DSS, CNOUS, MESRI, France Travail, MEN) with the official staging cases
answered byte for byte (staging's matching: exact parameter set, values
lower-cased), Bearer token checks, production's parameter validation and
RateLimit-* headers with 429s. Tokens are HS256 JWTs signed with the sandbox
secret; get one with --print-token. A synthetic population (--population,
--seed) answers the DSS routes for people no official case matches and the
MEN route for their children; "gen" writes it as an input file so a batch
can be rehearsed on it. /_sandbox/stats reports, per token and IP,
requests by status, 429s and the most requests seen in any sliding second;
POST /_sandbox/limits changes the limits while running; POST /_sandbox/people
changes people of the synthetic population ([{"index": 12, "qf": 450}]) to
rehearse a refresh.

Flags:
`)
}

// Run runs the command.
func (c *sandboxCommand) Run(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "gen" {
		return c.gen(args[1:])
	}
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if c.printToken {
		scopes := sandbox.AllScopes
		if c.scopes != "" {
			scopes = strings.Split(c.scopes, ",")
		}
		tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), scopes, time.Now().Add(c.expiresIn))
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, tok)
		return nil
	}
	log, err := newLogger(c.stderr, c.logLevel, isatty.IsTerminal(os.Stderr.Fd()))
	if err != nil {
		return err
	}
	faults, err := c.faultConfig()
	if err != nil {
		return err
	}
	switch c.window {
	case "fixed":
	case "sliding":
		c.limits.Sliding = true
	default:
		return fmt.Errorf("--window %q: want fixed or sliding", c.window)
	}
	if c.population < 0 {
		return fmt.Errorf("--population %d must not be negative", c.population)
	}
	sb, err := sandbox.New(sandbox.Config{Limits: c.limits, MaskScopes: c.mask, Maintenance: c.maint, Faults: faults, Log: log,
		Population: sandbox.NewPopulation(c.population, c.seed)})
	if err != nil {
		return err
	}
	defer sb.Close()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.addr, err)
	}
	srv := sb.HTTPServer()
	log.Info().Str("component", "sandbox").Str("url", "http://"+ln.Addr().String()).Msg("sandbox serving")
	fmt.Fprintf(c.stdout, "sandbox serving on http://%s (token: apbatch sandbox --print-token)\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sb.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-errc
	return nil
}

// faultConfig builds the sandbox's faults from --latency, --faults, --seed.
func (c *sandboxCommand) faultConfig() (sandbox.Faults, error) {
	f := sandbox.Faults{Seed: c.seed, ProviderTimeout: c.providerTimeout}
	if c.latency != "" {
		p50, p99, _ := strings.Cut(c.latency, ",")
		var err error
		if f.LatencyP50, err = time.ParseDuration(strings.TrimSpace(p50)); err != nil {
			return f, fmt.Errorf("--latency %q: want P50 or P50,P99 such as 200ms,2s", c.latency)
		}
		if p99 != "" {
			if f.LatencyP99, err = time.ParseDuration(strings.TrimSpace(p99)); err != nil {
				return f, fmt.Errorf("--latency %q: want P50 or P50,P99 such as 200ms,2s", c.latency)
			}
		}
	}
	rates, err := sandbox.ParseFaults(c.faults)
	if err != nil {
		return f, fmt.Errorf("--faults: %w", err)
	}
	f.Rates = rates
	return f, f.Validate()
}

// gen writes a synthetic population as an input file.
func (c *sandboxCommand) gen(args []string) error {
	fs := flag.NewFlagSet("sandbox gen", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	n := fs.Int("population", 10000, "number of people (rows)")
	seed := fs.Uint64("seed", 1, "seed: the same seed gives the same people")
	out := fs.String("o", "", "output CSV file (default: standard output)")
	pupils := fs.Bool("pupils", false, "write the people's children, with their school, for --checks scolarite")
	fs.Usage = func() {
		fmt.Fprintln(c.stdout, "Usage: apbatch sandbox gen [--pupils] --population N --seed S -o FILE.csv\n\nWrites the sandbox's synthetic population as an input roster (canonical\ncolumns): the parents, for the CAF/MSA and Sécurité sociale checks, or with\n--pupils their children and schools, for the scolarite check. Serve it with:\napbatch sandbox --population N --seed S, or rehearse with:\napbatch run --sandbox-population N --sandbox-seed S [--checks scolarite] FILE.csv\n\nFlags:")
		fs.SetOutput(c.stdout)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *n <= 0 {
		return fmt.Errorf("--population %d: give a positive number of people", *n)
	}
	pop := sandbox.NewPopulation(*n, *seed)
	write := pop.WriteCSV
	if *pupils {
		write = func(w io.Writer) error { return pop.WriteChildrenCSV(w, 0, *n) }
	}
	w := c.stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("-o: %w", err)
		}
		defer f.Close()
		w = f
	}
	if err := write(w); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(c.stderr, "wrote %d people to %s (seed %d)\n", *n, *out, *seed)
	}
	return nil
}
