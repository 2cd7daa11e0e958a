package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// versionCommand is "apbatch version": the module's version and the Go
// version it was built with.
type versionCommand struct {
	env
}

func (c *versionCommand) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	return fs
}

// Usage prints the command's help.
func (c *versionCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch version

Prints apbatch's module version ("(devel)" for a build from a checkout),
the commit it was built from when known, and the Go version, OS and
architecture of the build.
`)
}

// Run runs the command.
func (c *versionCommand) Run(_ context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &flagError{fmt.Sprintf("argument inattendu « %s » ; apbatch version --help", fs.Arg(0))}
	}
	info, _ := debug.ReadBuildInfo()
	fmt.Fprintln(c.stdout, versionLine(info))
	return nil
}

// versionLine describes a build: "apbatch v1.4.0 (commit 0123456789ab,
// go1.26.8 linux/amd64)"; info may be nil (no build information).
func versionLine(info *debug.BuildInfo) string {
	version, goVersion := "(devel)", runtime.Version()
	var details []string
	if info != nil {
		if info.Main.Version != "" {
			version = info.Main.Version
		}
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
		settings := map[string]string{}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			commit := "commit " + rev[:min(12, len(rev))]
			if settings["vcs.modified"] == "true" {
				commit += "+modified"
			}
			details = append(details, commit)
		}
	}
	details = append(details, goVersion+" "+runtime.GOOS+"/"+runtime.GOARCH)
	return "apbatch " + version + " (" + strings.Join(details, ", ") + ")"
}
