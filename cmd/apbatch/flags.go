package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// flagError is a command line the flag set refused, as one line in French
// that names the closest flag and where the list is; the command exits 2.
type flagError struct{ msg string }

func (e *flagError) Error() string { return e.msg }

// parseArgs parses args with fs, flags before or after the arguments, as
// people type them ("apbatch run familles.csv --tariff t.yaml"); after
// "--" everything is an argument. fs.Args() then holds the arguments.
//
// -h and --help print the command's help (fs.Usage) on its output and
// return flag.ErrHelp (exit 0). Any other refusal is a *flagError, without
// the usage: an unknown flag names the closest one.
func parseArgs(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	restore := func() { fs.SetOutput(out); fs.Usage = usage }
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			restore()
			if errors.Is(err, flag.ErrHelp) {
				if usage != nil {
					usage()
				} else {
					fs.PrintDefaults()
				}
				return flag.ErrHelp
			}
			return describeFlagError(fs, err)
		}
		left := fs.Args()
		if used := len(args) - len(left); used > 0 && args[used-1] == "--" {
			rest = append(rest, left...)
			break
		}
		if len(left) == 0 {
			break
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
	restore()
	// Leave the arguments where fs.Args() finds them.
	return fs.Parse(append([]string{"--"}, rest...))
}

// describeFlagError turns a flag package error into one French line.
func describeFlagError(fs *flag.FlagSet, err error) *flagError {
	help := "apbatch " + fs.Name() + " --help pour la liste"
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		if near := closestFlag(fs, name); near != "" {
			return &flagError{fmt.Sprintf("option inconnue --%s : vouliez-vous dire --%s ? %s", name, near, help)}
		}
		return &flagError{fmt.Sprintf("option inconnue --%s ; %s", name, help)}
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return &flagError{fmt.Sprintf("l'option --%s attend une valeur (--%s VALEUR) ; %s", strings.TrimLeft(name, "-"), strings.TrimLeft(name, "-"), help)}
	}
	if syntax, ok := strings.CutPrefix(msg, "bad flag syntax: "); ok {
		return &flagError{fmt.Sprintf("option mal écrite « %s » ; %s", syntax, help)}
	}
	// invalid value "x" for flag -name: why (or "invalid boolean value").
	if i := strings.Index(msg, " for flag -"); strings.HasPrefix(msg, "invalid ") && i > 0 {
		value := strings.TrimPrefix(strings.TrimPrefix(msg[:i], "invalid boolean value "), "invalid value ")
		if v, err := strconv.Unquote(value); err == nil {
			value = v
		}
		name, _, _ := strings.Cut(msg[i+len(" for flag -"):], ":")
		return &flagError{fmt.Sprintf("valeur « %s » refusée pour --%s ; %s", value, name, help)}
	}
	return &flagError{msg + " ; " + help}
}

// closestFlag returns the flag of fs nearest to name (a typo, another
// case, a prefix of one flag only), or "" when none is near enough.
func closestFlag(fs *flag.FlagSet, name string) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return closest(names, name)
}

// closest returns the candidate nearest to s: the same but for case, else
// the only one s begins, else the one at the smallest edit distance when
// it is small for s's length (at most 2, a third of it).
func closest(candidates []string, s string) string {
	low := strings.ToLower(s)
	var prefixed []string
	for _, c := range candidates {
		if strings.ToLower(c) == low {
			return c
		}
		if len(low) >= 3 && strings.HasPrefix(c, low) {
			prefixed = append(prefixed, c)
		}
	}
	if len(prefixed) == 1 {
		return prefixed[0]
	}
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(low, strings.ToLower(c)); d < bestD && d*3 <= len([]rune(low))+1 {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of two neighbours.
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "--h", "help":
		return true
	}
	return false
}
