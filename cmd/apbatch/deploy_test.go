package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
)

// The manifests of deploy/ run apbatch with commands, flags and APBATCH_*
// variables; these tests hold them to the binary's own command map, flag
// sets and variables, so a renamed flag or variable fails here rather than
// in a crash-looping pod.

// repoRoot is the repository's root, from this package's folder.
const repoRoot = "../.."

// pendingCommands are subcommands the manifests already run that are being
// written on other branches. A pending command's invocations are accepted
// while it is missing from the command map; once merged, it is in the map
// and its flags are checked like any other's.
var pendingCommands = map[string]string{}

// subVerbs are the words some commands require before their flags.
var subVerbs = map[string][]string{
	"audit": {"purge", "lookup"},
	"token": {"check"},
}

// takesArgs are the commands that accept positional arguments.
var takesArgs = []string{"run", "status", "results"}

// manifestDoc is one YAML document of a file under deploy/.
type manifestDoc struct {
	file string // relative to deploy/
	doc  map[string]any
}

// loadManifests decodes every YAML document of every .yaml/.yml file under
// deploy/.
func loadManifests(t *testing.T) []manifestDoc {
	t.Helper()
	root := filepath.Join(repoRoot, "deploy")
	var docs []manifestDoc
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (!strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml")) {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			if doc != nil {
				docs = append(docs, manifestDoc{file: filepath.ToSlash(rel), doc: doc})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no YAML document under deploy/")
	}
	return docs
}

// container is a process a manifest starts: a Compose service or a
// Kubernetes container.
type container struct {
	where string   // file and service or container name
	argv  []string // entrypoint and arguments, as exec'd
	// env holds the variables set on it with a literal value.
	env map[string]string
	// k8s is set for Kubernetes containers ($(VAR) references), unset for
	// Compose services (${VAR} interpolation).
	k8s  bool
	spec map[string]any
}

// imageEntrypoint is the ENTRYPOINT of deploy/Dockerfile.
func imageEntrypoint(t *testing.T) []string {
	t.Helper()
	df := readDockerfile(t)
	var ep []string
	for _, in := range df {
		if in.op == "ENTRYPOINT" {
			if err := json.Unmarshal([]byte(in.arg), &ep); err != nil {
				t.Fatalf("Dockerfile: ENTRYPOINT %s: want the exec form, a JSON array: %v", in.arg, err)
			}
		}
	}
	if len(ep) == 0 {
		t.Fatal("Dockerfile: no ENTRYPOINT")
	}
	return ep
}

// isApbatchImage reports whether a Kubernetes image or Compose service runs
// the image of deploy/Dockerfile.
func isApbatchImage(image string) bool {
	name, _, _ := strings.Cut(path.Base(image), ":")
	return name == "apbatch"
}

// containers lists the processes of every manifest.
func containers(t *testing.T, docs []manifestDoc) []container {
	t.Helper()
	entrypoint := imageEntrypoint(t)
	var out []container
	for _, d := range docs {
		if services, ok := d.doc["services"].(map[string]any); ok {
			for name, v := range services {
				svc, _ := v.(map[string]any)
				image, _ := svc["image"].(string)
				apbatchImage := isApbatchImage(image)
				if b, ok := svc["build"].(map[string]any); ok && b["dockerfile"] == "deploy/Dockerfile" {
					apbatchImage = true
				}
				ep, cmd := stringList(t, svc["entrypoint"]), stringList(t, svc["command"])
				if ep == nil && apbatchImage {
					ep = entrypoint
				}
				out = append(out, container{where: d.file + ": service " + name, argv: slices.Concat(ep, cmd),
					env: composeEnv(svc["environment"]), spec: svc})
			}
			continue
		}
		walkContainers(d.doc, func(c map[string]any) {
			name, _ := c["name"].(string)
			image, _ := c["image"].(string)
			cmd, args := stringList(t, c["command"]), stringList(t, c["args"])
			if cmd == nil && isApbatchImage(image) {
				cmd = entrypoint
			}
			env := map[string]string{}
			for _, v := range asList(c["env"]) {
				e, _ := v.(map[string]any)
				if n, ok := e["name"].(string); ok {
					if val, ok := e["value"].(string); ok {
						env[n] = val
					}
				}
			}
			kind, _ := d.doc["kind"].(string)
			meta, _ := d.doc["metadata"].(map[string]any)
			out = append(out, container{where: fmt.Sprintf("%s: %s %v, container %s", d.file, kind, meta["name"], name),
				argv: slices.Concat(cmd, args), env: env, k8s: true, spec: c})
		})
	}
	return out
}

// walkContainers calls fn with every container and init container found in
// v, at any depth (Deployment, CronJob's jobTemplate, Pod...).
func walkContainers(v any, fn func(map[string]any)) {
	walkItems(v, []string{"containers", "initContainers"}, fn)
}

// walkItems calls fn with every map listed under one of keys, at any depth
// of v.
func walkItems(v any, keys []string, fn func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, sub := range x {
			if slices.Contains(keys, k) {
				for _, item := range asList(sub) {
					if m, ok := item.(map[string]any); ok {
						fn(m)
					}
				}
				continue
			}
			walkItems(sub, keys, fn)
		}
	case []any:
		for _, sub := range x {
			walkItems(sub, keys, fn)
		}
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

// stringList reads a command: a YAML list of strings, or a string (Compose
// splits it into words).
func stringList(t *testing.T, v any) []string {
	t.Helper()
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		w, err := shellWords(x)
		if err != nil {
			t.Fatalf("command %q: %v", x, err)
		}
		return w
	case []any:
		var out []string
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				t.Fatalf("command %v: element %v is not a string", x, e)
			}
			out = append(out, s)
		}
		return out
	}
	t.Fatalf("command %v: want a string or a list", v)
	return nil
}

// composeEnv reads a Compose service's environment (a map or KEY=value list).
func composeEnv(v any) map[string]string {
	env := map[string]string{}
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			env[k] = fmt.Sprint(val)
		}
	case []any:
		for _, e := range x {
			k, val, _ := strings.Cut(fmt.Sprint(e), "=")
			env[k] = val
		}
	}
	return env
}

// shellWords splits a command line as a POSIX shell would for the simple
// commands manifests hold: blanks separate words, quotes group them.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				cur.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			i = j
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// shellOperators end a simple command in a script.
var shellOperators = regexp.MustCompile(`;|&&|\|\||\||\n`)

// apbatchInvocations returns the arguments of every apbatch run by argv:
// argv itself, or the commands of a shell script (sh -c SCRIPT).
func apbatchInvocations(argv []string) ([][]string, error) {
	if len(argv) == 0 {
		return nil, nil
	}
	switch path.Base(argv[0]) {
	case "apbatch":
		return [][]string{argv[1:]}, nil
	case "sh", "bash", "ash", "dash":
		script, found := "", false
		for i := 1; i < len(argv); i++ {
			a := argv[i]
			if strings.HasPrefix(a, "-") && !found {
				if strings.Contains(a, "c") {
					found = true
				}
				continue
			}
			if found {
				script = a
				break
			}
		}
		if !found {
			return nil, nil
		}
		var out [][]string
		for _, line := range shellOperators.Split(script, -1) {
			words, err := shellWords(line)
			if err != nil {
				return nil, fmt.Errorf("script line %q: %w", line, err)
			}
			for len(words) > 0 && (words[0] == "exec" || strings.Contains(words[0], "=")) {
				words = words[1:]
			}
			if len(words) > 0 && path.Base(words[0]) == "apbatch" {
				out = append(out, words[1:])
			}
		}
		return out, nil
	}
	return nil, nil
}

var (
	k8sVarRef     = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	composeVarRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)
)

// expand replaces variable references in an argument by the container's
// literal value, a Compose default, or a placeholder.
func (c container) expand(arg string) string {
	if c.k8s {
		return k8sVarRef.ReplaceAllStringFunc(arg, func(m string) string {
			if v, ok := c.env[k8sVarRef.FindStringSubmatch(m)[1]]; ok {
				return v
			}
			return "placeholder"
		})
	}
	arg = composeVarRef.ReplaceAllStringFunc(arg, func(m string) string {
		sub := composeVarRef.FindStringSubmatch(m)
		if strings.Contains(m, "-") {
			return sub[2]
		}
		return "placeholder"
	})
	return strings.ReplaceAll(arg, "$$", "$")
}

// checkInvocation checks apbatch args against the binary's command map and
// the command's own flag set. It returns a note for a pending command.
func checkInvocation(args []string) (note string, err error) {
	if len(args) == 0 {
		return "", errors.New("apbatch with no command")
	}
	cmds := commands(env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }})
	name := args[0]
	c, ok := cmds[name]
	if !ok {
		if why, pending := pendingCommands[name]; pending {
			return fmt.Sprintf("apbatch %s is pending (%s): flags not checked until it is merged", name, why), nil
		}
		return "", fmt.Errorf("apbatch %s: no such command (commands: %s)", name, strings.Join(sortedKeys(cmds), ", "))
	}
	rest := args[1:]
	if verbs, ok := subVerbs[name]; ok {
		if len(rest) == 0 || !slices.Contains(verbs, rest[0]) {
			return "", fmt.Errorf("apbatch %s: want %s first, got %q", name, strings.Join(verbs, " or "), rest)
		}
		rest = rest[1:]
	}
	if name == "sandbox" && len(rest) > 0 && rest[0] == "gen" {
		return "", errors.New("apbatch sandbox gen: not checked by this test; add its flag set here first")
	}
	fc, ok := c.(interface{ flags() *flag.FlagSet })
	if !ok {
		return "", fmt.Errorf("apbatch %s: command without flags()", name)
	}
	fs := fc.flags()
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	// As the binary parses them: flags before or after the arguments.
	if err := parseArgs(fs, rest); err != nil {
		return "", fmt.Errorf("apbatch %s: %w", strings.Join(args, " "), err)
	}
	if fs.NArg() > 0 && !slices.Contains(takesArgs, name) {
		return "", fmt.Errorf("apbatch %s takes no argument, got %q", name, fs.Args())
	}
	return "", nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestDeploy_CheckInvocation(t *testing.T) {
	type invocationCase struct {
		name    string
		args    []string
		wantErr string
		pending bool
	}
	tests := []invocationCase{
		{name: "role", args: []string{"work"}},
		{name: "role with flags", args: []string{"write", "--flush-interval", "30s", "-log-level=debug"}},
		{name: "serve roles", args: []string{"serve", "--roles", "ingest,work"}},
		{name: "audit purge", args: []string{"audit", "purge", "--older-than-months", "36"}},
		{name: "token check", args: []string{"token", "check", "--tenant", "demo", "--checks", "qf"}},
		{name: "status with batches", args: []string{"status", "--watch", "2s", "b1", "b2"}},
		{name: "no command", args: nil, wantErr: "no command"},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: "no such command"},
		{name: "unknown flag", args: []string{"ingest", "--no-such-flag"}, wantErr: "option inconnue --no-such-flag"},
		{name: "flag of another command", args: []string{"write", "--campaign", "2026-09"}, wantErr: "option inconnue --campaign"},
		{name: "bad duration", args: []string{"write", "--flush-interval", "soon"}, wantErr: "refusée pour --flush-interval"},
		{name: "missing verb", args: []string{"audit", "--older-than-months", "36"}, wantErr: "want purge or lookup"},
		{name: "flag after argument", args: []string{"status", "b1", "--db", "x"}},
		{name: "unknown flag after argument", args: []string{"status", "b1", "--dbb", "x"}, wantErr: "vouliez-vous dire --db ?"},
		{name: "argument to a role", args: []string{"work", "extra"}, wantErr: "takes no argument"},
		{name: "sandbox gen", args: []string{"sandbox", "gen", "-o", "x.csv"}, wantErr: "not checked"},
	}
	// A pending command is accepted while missing, checked once merged.
	if _, merged := commands(env{getenv: func(string) string { return "" }})["refresh"]; merged {
		tests = append(tests, invocationCase{name: "refresh merged: bad flag", args: []string{"refresh", "--no-such-flag"}, wantErr: "option inconnue"})
	} else {
		tests = append(tests, invocationCase{name: "refresh pending", args: []string{"refresh", "--no-such-flag"}, pending: true})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			note, err := checkInvocation(tt.args)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("checkInvocation(%q) = %v, want no error", tt.args, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("checkInvocation(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
			if (note != "") != tt.pending {
				t.Errorf("checkInvocation(%q) note = %q, want pending %v", tt.args, note, tt.pending)
			}
		})
	}
}

func TestDeploy_ShellInvocations(t *testing.T) {
	tests := []struct {
		argv []string
		want [][]string
	}{
		{argv: []string{"/usr/local/bin/apbatch", "work"}, want: [][]string{{"work"}}},
		{argv: []string{"/bin/sh", "-ec", "set -e\nX=1 exec apbatch status --db \"$APBATCH_DB\" && mc ls x"},
			want: [][]string{{"status", "--db", "$APBATCH_DB"}}},
		{argv: []string{"sh", "-c", "mc cp a b; mc ls"}, want: nil},
		{argv: []string{"pg_isready", "-U", "apbatch"}, want: nil},
	}
	for _, tt := range tests {
		got, err := apbatchInvocations(tt.argv)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("apbatchInvocations(%q) = %q, %v; want %q", tt.argv, got, err, tt.want)
		}
	}
}

// TestDeploy_Commands checks every apbatch command the manifests run.
func TestDeploy_Commands(t *testing.T) {
	docs := loadManifests(t)
	seen := map[string][]string{} // command → where
	for _, c := range containers(t, docs) {
		invs, err := apbatchInvocations(c.argv)
		if err != nil {
			t.Errorf("%s: %v", c.where, err)
			continue
		}
		for _, inv := range invs {
			args := make([]string, len(inv))
			for i, a := range inv {
				args[i] = c.expand(a)
			}
			t.Run(c.where, func(t *testing.T) {
				note, err := checkInvocation(args)
				if err != nil {
					t.Fatal(err)
				}
				if note != "" {
					t.Log(note)
				}
			})
			if len(args) > 0 {
				seen[args[0]] = append(seen[args[0]], c.where)
			}
		}
	}
	// The walk must find what the manifests are for, in both Compose and
	// Kubernetes, or it checks nothing.
	for _, want := range []string{"ingest", "work", "write", "sandbox", "refresh", "purge", "audit", "token"} {
		if len(seen[want]) == 0 {
			t.Errorf("no manifest runs apbatch %s", want)
		}
	}
	for _, role := range allRoles {
		var compose, k8s bool
		for _, w := range seen[role] {
			compose = compose || strings.HasPrefix(w, "compose/")
			k8s = k8s || strings.HasPrefix(w, "k8s/")
		}
		if !compose || !k8s {
			t.Errorf("role %s: run in Compose %v, in Kubernetes %v; want both", role, compose, k8s)
		}
	}
}

// codeVariables returns the APBATCH_* names the Go sources (tests aside)
// hold as string literals; a name ending in '_' is a prefix
// (APBATCH_TOKEN_<TENANT>).
func codeVariables(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"(APBATCH_[A-Z0-9_]+)"`)
	names := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != repoRoot {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(raw), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// manifestVariables returns the APBATCH_* names the manifests set, with
// where: Compose environments, containers' env, ConfigMaps and Secrets.
func manifestVariables(t *testing.T, docs []manifestDoc) map[string]string {
	t.Helper()
	vars := map[string]string{}
	add := func(name, where string) {
		if strings.HasPrefix(name, "APBATCH_") {
			vars[name] = where
		}
	}
	for _, c := range containers(t, docs) {
		for name := range c.env {
			add(name, c.where)
		}
		if !c.k8s {
			continue
		}
		for _, v := range asList(c.spec["env"]) {
			if e, ok := v.(map[string]any); ok {
				add(fmt.Sprint(e["name"]), c.where)
			}
		}
	}
	for _, d := range docs {
		if kind := d.doc["kind"]; kind == "ConfigMap" || kind == "Secret" {
			for _, field := range []string{"data", "stringData"} {
				m, _ := d.doc[field].(map[string]any)
				for k := range m {
					add(k, fmt.Sprintf("%s: %s %v", d.file, kind, d.doc["metadata"].(map[string]any)["name"]))
				}
			}
		}
	}
	return vars
}

// TestDeploy_Variables checks that every APBATCH_* variable the manifests
// set is one apbatch reads.
func TestDeploy_Variables(t *testing.T) {
	code := codeVariables(t)
	for _, must := range []string{"APBATCH_KAFKA_BROKERS", "APBATCH_DB", "APBATCH_TOKEN_"} {
		if !code[must] {
			t.Fatalf("the scan of the Go sources misses %s: is it still reading the right files?", must)
		}
	}
	vars := manifestVariables(t, loadManifests(t))
	if len(vars) < 10 {
		t.Fatalf("found %d APBATCH_* variables in the manifests, want the roles' settings", len(vars))
	}
	for name, where := range vars {
		if code[name] {
			continue
		}
		prefixed := false
		for c := range code {
			if strings.HasSuffix(c, "_") && c != "APBATCH_" && strings.HasPrefix(name, c) {
				prefixed = true
			}
		}
		if !prefixed {
			t.Errorf("%s sets %s, which apbatch does not read", where, name)
		}
	}
}

// dockerInstruction is one instruction of a Dockerfile.
type dockerInstruction struct{ op, arg string }

func readDockerfile(t *testing.T) []dockerInstruction {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstruction
	var cur string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		cur += line
		op, arg, _ := strings.Cut(cur, " ")
		out = append(out, dockerInstruction{op: strings.ToUpper(op), arg: strings.TrimSpace(arg)})
		cur = ""
	}
	return out
}

// TestDeploy_Dockerfile checks the image runs apbatch, as a non-root user,
// built with go.mod's Go.
func TestDeploy_Dockerfile(t *testing.T) {
	df := readDockerfile(t)
	ep := imageEntrypoint(t)
	if path.Base(ep[0]) != "apbatch" {
		t.Errorf("ENTRYPOINT %q: want apbatch", ep)
	}
	var copied, goVersion, user string
	for _, in := range df {
		switch in.op {
		case "FROM":
			user = "" // a new stage
		case "USER":
			user = in.arg
		case "COPY":
			f := strings.Fields(in.arg)
			if len(f) > 0 && f[len(f)-1] == ep[0] {
				copied = in.arg
			}
		case "ARG":
			if v, ok := strings.CutPrefix(in.arg, "GO_VERSION="); ok {
				goVersion = v
			}
		}
	}
	if copied == "" {
		t.Errorf("no COPY puts the binary at the ENTRYPOINT's %s", ep[0])
	}
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		t.Errorf("the final stage runs as %q: want a non-root USER", user)
	}
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	if m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod); m != nil {
		want = string(m[1])
	}
	if want == "" || goVersion != want {
		t.Errorf("Dockerfile builds with Go %q (ARG GO_VERSION), go.mod says %q", goVersion, want)
	}
}

// kube returns the Kubernetes objects of deploy/k8s by kind and name.
func kube(docs []manifestDoc) map[string]map[string]map[string]any {
	objs := map[string]map[string]map[string]any{}
	for _, d := range docs {
		kind, _ := d.doc["kind"].(string)
		meta, _ := d.doc["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		if !strings.HasPrefix(d.file, "k8s/") || kind == "" || name == "" {
			continue
		}
		if objs[kind] == nil {
			objs[kind] = map[string]map[string]any{}
		}
		objs[kind][name] = d.doc
	}
	return objs
}

// dig follows keys through nested maps.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// TestDeploy_Kubernetes checks what the kubelet and the controllers would
// only find out at run time.
func TestDeploy_Kubernetes(t *testing.T) {
	docs := loadManifests(t)
	objs := kube(docs)
	cfg := objs["ConfigMap"]["apbatch-config"]
	if cfg == nil {
		t.Fatal("no ConfigMap apbatch-config")
	}
	_, metricsPort, _ := strings.Cut(fmt.Sprint(dig(cfg, "data", "APBATCH_METRICS_ADDR")), ":")

	t.Run("kustomization lists every manifest", func(t *testing.T) {
		entries, err := os.ReadDir(filepath.Join(repoRoot, "deploy", "k8s"))
		if err != nil {
			t.Fatal(err)
		}
		var files []string
		for _, e := range entries {
			if n := e.Name(); strings.HasSuffix(n, ".yaml") && n != "kustomization.yaml" {
				files = append(files, n)
			}
		}
		var listed []string
		for _, d := range docs {
			if d.file == "k8s/kustomization.yaml" {
				for _, r := range asList(d.doc["resources"]) {
					listed = append(listed, fmt.Sprint(r))
				}
			}
		}
		sort.Strings(listed)
		if !slices.Equal(files, listed) {
			t.Errorf("kustomization resources %q, files %q", listed, files)
		}
	})

	t.Run("references", func(t *testing.T) {
		for _, c := range containers(t, docs) {
			if !c.k8s {
				continue
			}
			for _, ef := range asList(c.spec["envFrom"]) {
				for kind, key := range map[string]string{"ConfigMap": "configMapRef", "Secret": "secretRef"} {
					if n := dig(ef, key, "name"); n != nil && objs[kind][fmt.Sprint(n)] == nil {
						t.Errorf("%s: envFrom %s %v is not defined", c.where, kind, n)
					}
				}
			}
			for _, e := range asList(c.spec["env"]) {
				ref, _ := dig(e, "valueFrom", "secretKeyRef").(map[string]any)
				if ref == nil {
					continue
				}
				s := objs["Secret"][fmt.Sprint(ref["name"])]
				if s == nil || dig(s, "stringData", fmt.Sprint(ref["key"])) == nil {
					t.Errorf("%s: secretKeyRef %v/%v is not defined", c.where, ref["name"], ref["key"])
				}
			}
		}
		for kind, byName := range objs {
			for name, o := range byName {
				walkItems(o, []string{"volumes"}, func(v map[string]any) {
					if n := dig(v, "secret", "secretName"); n != nil && objs["Secret"][fmt.Sprint(n)] == nil {
						t.Errorf("%s %s: volume of Secret %v, not defined", kind, name, n)
					}
					if n := dig(v, "configMap", "name"); n != nil && objs["ConfigMap"][fmt.Sprint(n)] == nil {
						t.Errorf("%s %s: volume of ConfigMap %v, not defined", kind, name, n)
					}
				})
			}
		}
	})

	t.Run("containers", func(t *testing.T) {
		for _, c := range containers(t, docs) {
			if !c.k8s {
				continue
			}
			if dig(c.spec, "resources", "requests", "cpu") == nil || dig(c.spec, "resources", "requests", "memory") == nil ||
				dig(c.spec, "resources", "limits", "memory") == nil {
				t.Errorf("%s: want cpu and memory requests and a memory limit", c.where)
			}
			if dig(c.spec, "securityContext", "readOnlyRootFilesystem") != true ||
				dig(c.spec, "securityContext", "allowPrivilegeEscalation") != false {
				t.Errorf("%s: want a read-only root file system and no privilege escalation", c.where)
			}
		}
	})

	t.Run("deployments", func(t *testing.T) {
		roles := map[string]bool{}
		for name, d := range objs["Deployment"] {
			pod := dig(d, "spec", "template", "spec")
			if dig(pod, "securityContext", "runAsNonRoot") != true {
				t.Errorf("Deployment %s: want runAsNonRoot", name)
			}
			sel, _ := dig(d, "spec", "selector", "matchLabels").(map[string]any)
			labels, _ := dig(d, "spec", "template", "metadata", "labels").(map[string]any)
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("Deployment %s: selector %s=%v does not match the pod's labels", name, k, v)
				}
			}
			for _, c := range asList(dig(pod, "containers")) {
				args := stringList(t, dig(c, "args"))
				if len(args) > 0 && slices.Contains(allRoles, args[0]) {
					roles[args[0]] = true
				}
				port := ""
				for _, p := range asList(dig(c, "ports")) {
					if dig(p, "name") == "metrics" {
						port = fmt.Sprint(dig(p, "containerPort"))
					}
				}
				if port != metricsPort {
					t.Errorf("Deployment %s: metrics port %q, APBATCH_METRICS_ADDR serves %q", name, port, metricsPort)
				}
				for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
					if dig(c, probe, "httpGet", "path") != want || dig(c, probe, "httpGet", "port") != "metrics" {
						t.Errorf("Deployment %s: %s want GET %s on the metrics port", name, probe, want)
					}
				}
			}
		}
		for _, r := range allRoles {
			if !roles[r] {
				t.Errorf("no Deployment runs the %s role", r)
			}
		}
	})

	t.Run("autoscaler", func(t *testing.T) {
		if len(objs["HorizontalPodAutoscaler"]) == 0 {
			t.Fatal("no HorizontalPodAutoscaler")
		}
		for name, h := range objs["HorizontalPodAutoscaler"] {
			target := fmt.Sprint(dig(h, "spec", "scaleTargetRef", "name"))
			if objs["Deployment"][target] == nil {
				t.Errorf("HPA %s scales Deployment %s, not defined", name, target)
			}
			for _, m := range asList(dig(h, "spec", "metrics")) {
				metric := dig(m, "pods", "metric")
				if dig(metric, "name") != "apbatch_consumer_lag" {
					t.Errorf("HPA %s: metric %v, want apbatch_consumer_lag", name, dig(metric, "name"))
				}
				if dig(metric, "selector", "matchLabels", "topic") != schemas.TopicJobs ||
					dig(metric, "selector", "matchLabels", "group") != pipeline.GroupWorkers {
					t.Errorf("HPA %s: want the lag of topic %s, group %s", name, schemas.TopicJobs, pipeline.GroupWorkers)
				}
			}
		}
	})

	t.Run("tenants", func(t *testing.T) {
		tenantsCM := objs["ConfigMap"]["apbatch-tenants"]
		tokens, _ := dig(objs["Secret"]["apbatch-tokens"], "stringData").(map[string]any)
		data, _ := dig(tenantsCM, "data").(map[string]any)
		if data == nil || tokens == nil {
			t.Fatal("want ConfigMap apbatch-tenants and Secret apbatch-tokens")
		}
		tenants := strings.Fields(fmt.Sprint(data["tenants"]))
		if len(tenants) == 0 {
			t.Fatal("apbatch-tenants lists no tenant")
		}
		for _, tenant := range tenants {
			if _, err := pipeline.ParseIncomingKey(pipeline.IncomingKey{Tenant: tenant, Campaign: "2026-09", File: "x.csv"}.String()); err != nil {
				t.Errorf("tenant %q cannot name an upload: %v", tenant, err)
			}
			if tokens[tenant] == nil {
				t.Errorf("tenant %q has no key in the apbatch-tokens Secret", tenant)
			}
		}
		for tenant := range tokens {
			if !slices.Contains(tenants, tenant) {
				t.Errorf("apbatch-tokens holds a token for %q, not a listed tenant", tenant)
			}
		}
		for key, v := range data {
			var tenant string
			var err error
			switch {
			case strings.HasSuffix(key, ".tarifs.yaml"):
				tenant = strings.TrimSuffix(key, ".tarifs.yaml")
				_, err = schemas.ParseTariffGrid([]byte(fmt.Sprint(v)))
			case strings.HasSuffix(key, ".colonnes.yaml"):
				tenant = strings.TrimSuffix(key, ".colonnes.yaml")
				_, err = pipeline.ParseColumns([]byte(fmt.Sprint(v)))
			case key == "tenants":
				continue
			default:
				t.Errorf("apbatch-tenants: key %q is neither <tenant>.tarifs.yaml nor <tenant>.colonnes.yaml", key)
				continue
			}
			if err != nil {
				t.Errorf("apbatch-tenants %s: %v", key, err)
			}
			if !slices.Contains(tenants, tenant) {
				t.Errorf("apbatch-tenants %s: tenant %q is not listed", key, tenant)
			}
		}
	})

	t.Run("cronjobs", func(t *testing.T) {
		paris, err := time.LoadLocation("Europe/Paris")
		if err != nil {
			t.Fatal(err)
		}
		men, err := workers.ParseWindow("01:10-02:30")
		if err != nil {
			t.Fatal(err)
		}
		maintenance := append(workers.QuotientFamilialMaintenance(), men)
		refreshes, purges := 0, 0
		for name, cj := range objs["CronJob"] {
			if dig(cj, "spec", "timeZone") != "Europe/Paris" || dig(cj, "spec", "concurrencyPolicy") != "Forbid" {
				t.Errorf("CronJob %s: want timeZone Europe/Paris and concurrencyPolicy Forbid", name)
			}
			s, err := parseCron(fmt.Sprint(dig(cj, "spec", "schedule")))
			if err != nil {
				t.Errorf("CronJob %s: %v", name, err)
				continue
			}
			for _, start := range s.starts(paris) {
				for _, w := range maintenance {
					if w.Contains(start) {
						t.Errorf("CronJob %s starts %s, in a maintenance window", name, start.Format("Mon 15:04"))
					}
				}
			}
			var (
				args      []string
				container map[string]any
			)
			walkContainers(cj, func(c map[string]any) { args, container = stringList(t, c["args"]), c })
			if len(args) > 0 && args[0] == "purge" {
				purges++
				checkPurgeCronJob(t, name, cj, s, args, container)
				continue
			}
			if len(args) == 0 || args[0] != "refresh" {
				continue
			}
			refreshes++
			checkRefreshCronJob(t, name, cj, args, container)
			// After the CAF's monthly QF update, which follows the first
			// weekend of the month: at least the Tuesday after the first
			// Sunday of September, whatever the year.
			if !slices.Equal(s.fields[3], []int{9}) {
				t.Errorf("CronJob %s: months %v, want September", name, s.fields[3])
			}
			for year := 2026; year < 2040; year++ {
				firstSunday := 1 + (7-int(time.Date(year, 9, 1, 0, 0, 0, 0, paris).Weekday()))%7
				for _, dom := range s.fields[2] {
					if dom < firstSunday+2 {
						t.Errorf("CronJob %s: September %d, %d: before the CAF's update after the first weekend (Sunday %d)",
							name, dom, year, firstSunday)
					}
				}
			}
		}
		if refreshes != 1 {
			t.Errorf("%d CronJobs run apbatch refresh, want 1", refreshes)
		}
		if purges != 1 {
			t.Errorf("%d CronJobs run apbatch purge, want 1", purges)
		}
	})
}

// flagValue returns the value of --name in args ("--name v" or
// "--name=v"), and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		for _, dash := range []string{"-", "--"} {
			if a == dash+name {
				if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
					return args[i+1], true
				}
				return "", true
			}
			if v, ok := strings.CutPrefix(a, dash+name+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// envFromNames returns the ConfigMaps and Secrets a container's envFrom
// reads.
func envFromNames(c map[string]any) []string {
	var out []string
	for _, e := range asList(c["envFrom"]) {
		for _, ref := range []string{"configMapRef", "secretRef"} {
			if n := dig(e, ref, "name"); n != nil {
				out = append(out, fmt.Sprint(n))
			}
		}
	}
	return out
}

// checkRefreshCronJob: the refresh names its campaign from the date (no
// campaign to bump each summer), waits for its batches, and a batch that
// did not complete fails the Job without retries, before the deadline.
func checkRefreshCronJob(t *testing.T, name string, cj map[string]any, args []string, c map[string]any) {
	t.Helper()
	if v, _ := flagValue(args, "campaign"); v != "auto" {
		t.Errorf("CronJob %s: --campaign %q, want auto (the school year of the run's date)", name, v)
	}
	for _, e := range asList(c["env"]) {
		if v := fmt.Sprint(dig(e, "value")); regexp.MustCompile(`^[0-9]{4}-[0-9]{2}$`).MatchString(v) {
			t.Errorf("CronJob %s: env %v holds a campaign %s to bump by hand", name, dig(e, "name"), v)
		}
	}
	if _, ok := flagValue(args, "wait"); !ok {
		t.Errorf("CronJob %s: no --wait: the Job would succeed once the batches are submitted, not done", name)
	}
	timeout, _ := flagValue(args, "wait-timeout")
	d, err := time.ParseDuration(timeout)
	deadline, _ := dig(cj, "spec", "jobTemplate", "spec", "activeDeadlineSeconds").(int)
	if err != nil || d <= 0 || deadline == 0 || d >= time.Duration(deadline)*time.Second {
		t.Errorf("CronJob %s: --wait-timeout %q, activeDeadlineSeconds %d: want a wait that ends before the deadline kills the Job", name, timeout, deadline)
	}
	failJob := false
	for _, r := range asList(dig(cj, "spec", "jobTemplate", "spec", "podFailurePolicy", "rules")) {
		codes := dig(r, "onExitCodes")
		if dig(r, "action") == "FailJob" && dig(codes, "operator") == "In" && dig(codes, "containerName") == c["name"] &&
			slices.Contains(asList(dig(codes, "values")), any(3)) {
			failJob = true
		}
	}
	if !failJob {
		t.Errorf("CronJob %s: no podFailurePolicy failing the Job on exit 3 (a batch refused or cancelled: retrying changes nothing)", name)
	}
	if note, err := checkInvocation(args); err != nil || note != "" {
		t.Errorf("CronJob %s: %q: %v %s", name, args, err, note)
	}
}

// checkPurgeCronJob: apbatch purge runs every day, on the roles' S3 and
// ledger, for real.
func checkPurgeCronJob(t *testing.T, name string, cj map[string]any, s cronSchedule, args []string, c map[string]any) {
	t.Helper()
	if len(s.fields[2]) != 31 || len(s.fields[3]) != 12 || len(s.fields[4]) != 7 || len(s.fields[1]) != 1 || len(s.fields[0]) != 1 {
		t.Errorf("CronJob %s: schedule %v: want once a day, every day", name, dig(cj, "spec", "schedule"))
	}
	for _, f := range []string{"dry-run", "data-dir", "now", "tenant"} {
		if _, ok := flagValue(args, f); ok {
			t.Errorf("CronJob %s: --%s: want every tenant purged for real, on the roles' services", name, f)
		}
	}
	if from := envFromNames(c); !slices.Contains(from, "apbatch-config") || !slices.Contains(from, "apbatch-services") {
		t.Errorf("CronJob %s: envFrom %v, want apbatch-config (S3 endpoint, bucket) and apbatch-services (S3 keys, APBATCH_DB)", name, from)
	}
	if note, err := checkInvocation(args); err != nil || note != "" {
		t.Errorf("CronJob %s: %q: %v %s", name, args, err, note)
	}
}

// cronSchedule is a five-field cron schedule, each field expanded.
type cronSchedule struct {
	fields [5][]int // minute, hour, day of month, month, day of week
}

// parseCron reads "M H DOM MON DOW" with *, numbers, lists and ranges.
func parseCron(s string) (cronSchedule, error) {
	var cs cronSchedule
	f := strings.Fields(s)
	if len(f) != 5 {
		return cs, fmt.Errorf("schedule %q: want 5 fields", s)
	}
	bounds := [5][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}}
	for i, field := range f {
		seen := map[int]bool{}
		for _, part := range strings.Split(field, ",") {
			lo, hi := bounds[i][0], bounds[i][1]
			if part != "*" {
				a, b, isRange := strings.Cut(part, "-")
				var err1, err2 error
				lo, err1 = strconv.Atoi(a)
				hi = lo
				if isRange {
					hi, err2 = strconv.Atoi(b)
				}
				if err1 != nil || err2 != nil || lo < bounds[i][0] || hi > bounds[i][1] || lo > hi {
					return cs, fmt.Errorf("schedule %q: field %q not understood by this test", s, field)
				}
			}
			for v := lo; v <= hi; v++ {
				d := v
				if i == 4 {
					d = v % 7 // 7 is Sunday too
				}
				if !seen[d] {
					seen[d] = true
					cs.fields[i] = append(cs.fields[i], d)
				}
			}
		}
		sort.Ints(cs.fields[i])
	}
	return cs, nil
}

// starts returns a start of the schedule at each of its times of day on each
// weekday it may fall on (every weekday when the day of week is "*").
func (s cronSchedule) starts(loc *time.Location) []time.Time {
	monday := time.Date(2027, 9, 6, 0, 0, 0, 0, loc) // a Monday
	var out []time.Time
	for _, dow := range s.fields[4] {
		day := monday.AddDate(0, 0, (dow+6)%7)
		for _, h := range s.fields[1] {
			for _, m := range s.fields[0] {
				out = append(out, time.Date(day.Year(), day.Month(), day.Day(), h, m, 0, 0, loc))
			}
		}
	}
	return out
}
