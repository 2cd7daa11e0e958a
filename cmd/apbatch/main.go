// Command apbatch verifies collectivités' rosters in bulk through API
// Particulier: files land in S3, are split into Kafka jobs, called under the
// API's rate limits, and come back as Parquet files.
//
// Usage:
//
//	apbatch <command> [flags] [args]
//
// Run "apbatch help" for the list of commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // Europe/Paris windows on machines without zoneinfo

	"github.com/rs/zerolog"
)

// command is one subcommand: its own flag set, Run and Usage.
type command interface {
	Run(ctx context.Context, args []string) error
	Usage()
}

// env is what a command gets from the process: streams and environment.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// environ lists the environment as KEY=value; nil for none.
	environ func() []string
}

// envOr returns the value of an APBATCH_* variable, or def.
func (e env) envOr(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

// errUsage is returned after a command has printed its usage.
var errUsage = errors.New("usage")

// exitError ends a command with an exit code of its own (documented in its
// help), after it printed what the code stands for; err, when set, is
// printed too.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func (e *exitError) Unwrap() error { return e.err }

func main() {
	e := env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, environ: os.Environ}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// A second signal stops hard.
		<-ctx.Done()
		stop()
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt, syscall.SIGTERM)
		<-c
		fmt.Fprintln(os.Stderr, "apbatch: second signal, stopping now")
		os.Exit(130)
	}()
	os.Exit(runMain(ctx, e, os.Args[1:]))
}

// commands returns apbatch's subcommands by name, each bound to e.
func commands(e env) map[string]command {
	return map[string]command{
		"run":     &runCommand{env: e},
		"web":     &webCommand{env: e},
		"refresh": &refreshCommand{env: e},
		"sandbox": &sandboxCommand{env: e},
		"bench":   &benchCommand{env: e},
		"audit":   &auditCommand{env: e},
		"purge":   &purgeCommand{env: e},
		"results": &resultsCommand{env: e},
		"status":  &statusCommand{env: e},
		"cancel":  &cancelCommand{env: e},
		"serve":   &serveCommand{env: e, name: "serve"},
		"ingest":  &serveCommand{env: e, name: "ingest"},
		"work":    &serveCommand{env: e, name: "work"},
		"write":   &serveCommand{env: e, name: "write"},
		"broker":  &brokerCommand{env: e},
		"s3":      &s3Command{env: e},
		"token":   &tokenCommand{env: e},
		"version": &versionCommand{env: e},
	}
}

// runMain dispatches to a subcommand and returns the exit code.
func runMain(ctx context.Context, e env, args []string) int {
	cmds := commands(e)
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		args = []string{"version"}
	}
	if len(args) == 0 || isHelp(args[0]) {
		if len(args) > 1 {
			if c, ok := cmds[args[1]]; ok {
				c.Usage()
				return 0
			}
		}
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		names := make([]string, 0, len(cmds))
		for n := range cmds {
			names = append(names, n)
		}
		slices.Sort(names)
		if near := closest(names, args[0]); near != "" {
			fmt.Fprintf(e.stderr, "commande inconnue « %s » : vouliez-vous dire « apbatch %s » ? apbatch help pour la liste\n", args[0], near)
		} else {
			fmt.Fprintf(e.stderr, "commande inconnue « %s » ; apbatch help pour la liste\n", args[0])
		}
		return 2
	}
	if err := c.Run(ctx, args[1:]); err != nil {
		var fe *flagError
		switch {
		case errors.Is(err, flag.ErrHelp):
			return 0 // the help asked for, printed
		case errors.As(err, &fe):
			fmt.Fprintln(e.stderr, fe.msg)
			return 2
		case errors.Is(err, errUsage):
			return 2
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintf(e.stderr, "apbatch %s : %v\n", args[0], ee.err)
			}
			return ee.code
		}
		fmt.Fprintf(e.stderr, "apbatch %s : %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `apbatch verifies citizens' situations in bulk through API Particulier
(quotient familial CAF/MSA, benefits, student and school status) for
collectivités.

Usage:
  apbatch <command> [flags] [args]

Commands:
  run       verify files end to end (embedded Kafka, S3, ledger and sandbox by default)
  web       the agents' portal and JSON API on http://127.0.0.1:8080, everything embedded as with run
  refresh   verify each tenant's latest roster again for a new campaign (--campaign 2027-09, or auto),
            once per campaign; diff.parquet lists what changed since
  sandbox   serve a faithful API Particulier sandbox, print a token, or generate a roster
  status    show batches: results published, calls per second, ETA, stalled ones (--watch to follow)
  cancel    cancel a batch: no more calls for it, what it has is published as cancelled
  results   write a batch's results for agents: CSV or XLSX joined to the input rows, or Parquet
  purge     apply tenants' retention policies: inputs, results, ledger rows, audit trail
  audit     purge the audit trail of provider calls past its retention (every tenant)
  token     check an API token: expiry, scopes, the checks it allows (never prints it)
  serve     run pipeline roles as a long-running process (--roles ingest,work,write); also
            ingest, work, write: one role each (Kafka, S3 and the ledger from APBATCH_*)
  broker    serve the embedded Kafka-protocol broker alone (development)
  s3        serve S3 on a local folder (development)
  bench     measure scenarios (rate limits, latency, pipeline overhead) against the sandbox
  version   print apbatch's version and the Go version it was built with
  help      show this help, or "help <command>" for a command's flags
            ("apbatch <command> --help" too); flags go before or after the files

Example:
  apbatch run --tariff deploy/samples/tarifs-cantine.yaml deploy/samples/cantine-mairie.csv
  apbatch results -o resultats.xlsx
  apbatch web
`)
}

// newLogger returns a zerolog logger at level on w, human-readable when
// console is set.
func newLogger(w io.Writer, level string, console bool) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// printUsage writes a command's help text, then its flags with defaults, to
// w; the flag set goes back to writing its errors on errw.
func printUsage(w, errw io.Writer, fs *flag.FlagSet, text string) {
	fmt.Fprint(w, text)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(errw)
}
