package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/csv"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// Exit codes of "apbatch token check" beyond 0 (fine), 1 (error) and 2
// (usage).
const (
	// exitTokenRenew: the token expires within 90 days (an operator's
	// reminder is due).
	exitTokenRenew = 3
	// exitTokenUnusable: the token is expired, refused by the API, not a
	// token, or lacks the scopes of --checks.
	exitTokenUnusable = 4
)

// tokenCommand is "apbatch token check".
type tokenCommand struct {
	env
	fs *flag.FlagSet

	tokenFile, tokensDir, tenant, providerURL, checks string
}

func (c *tokenCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("token check", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.tokenFile, "token-file", c.getenv("APBATCH_TOKEN_FILE"), "file holding the default API token (APBATCH_TOKEN_FILE), or the token in APBATCH_TOKEN")
	fs.StringVar(&c.tokensDir, "tokens-dir", c.getenv("APBATCH_TOKENS_DIR"), "folder of one token per tenant, files <tenant> or <tenant>.token (APBATCH_TOKENS_DIR)")
	fs.StringVar(&c.tenant, "tenant", "", "check this tenant's token: APBATCH_TOKEN_<TENANT>, then --tokens-dir, then the default token (default: the default token)")
	fs.StringVar(&c.providerURL, "provider-url", c.getenv("APBATCH_PROVIDER_URL"), "API Particulier base URL whose /api/introspect gives the token's scopes (APBATCH_PROVIDER_URL; default: the embedded sandbox)")
	fs.StringVar(&c.checks, "checks", "", "checks the token must serve, comma-separated, or all: exit "+fmt.Sprint(exitTokenUnusable)+" when it cannot (default: none required)")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *tokenCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), fmt.Sprintf(`Usage: apbatch token check [flags]

Checks an API Particulier token without ever printing it: its id (jti),
subject, issue and expiry dates, days left, its scopes, and which apbatch
checks these scopes allow. The scopes come from the API's /api/introspect
(its own record of the token, which wins over the token's claims) when it
answers, from the token itself otherwise, as the output says. The expiry is
read from the token: a prolongation made on the operator's portal since it
was issued does not show. A warning comes at the operator's reminders, 90,
60, 30, 15 and 7 days before the expiry (the nearest one reached).

Without --provider-url the embedded sandbox answers /api/introspect: it
knows the tokens of "apbatch sandbox --print-token"; without any token, the
one "apbatch run" uses with the embedded sandbox is checked.

Tokens, one per tenant: APBATCH_TOKEN_<TENANT> (the tenant upper-cased,
other characters than letters and digits as '_'), then a file <tenant> or
<tenant>.token in --tokens-dir (a mounted Kubernetes Secret), then the
default token (--token-file, or APBATCH_TOKEN).

Exit status: 0 the token is fine; %d it expires within 90 days (renew it);
%d it is expired, refused by the API, not a token, or lacks the scopes of
--checks; 1 on other errors (no token, unreadable file).

Flags:
`, exitTokenRenew, exitTokenUnusable))
}

// Run runs the command.
func (c *tokenCommand) Run(ctx context.Context, args []string) error {
	if len(args) > 0 && isHelp(args[0]) {
		c.Usage()
		return flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "check" {
		c.Usage()
		return errUsage
	}
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(c.stderr, "apbatch token check: takes no argument; give the token in a file (--token-file) or the environment, never on the command line")
		return errUsage
	}
	var required []schemas.Check
	if c.checks != "" {
		var err error
		if required, err = schemas.ParseChecks(c.checks); err != nil {
			return fmt.Errorf("--checks: %w", err)
		}
	}
	embedded := c.providerURL == ""
	token, from, err := tokenSources{file: c.tokenFile, dir: c.tokensDir, getenv: c.getenv}.lookup(c.tenant)
	if errors.Is(err, workers.ErrNoToken) && embedded {
		token, err = sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().AddDate(10, 0, 0))
		from = pipeline.TokenEmbeddedDefault
	}
	if err != nil {
		return err
	}
	baseURL := strings.TrimRight(c.providerURL, "/")
	if embedded {
		base, stop, err := startSandbox(ctx, sandbox.Config{Log: zerolog.Nop()})
		if err != nil {
			return err
		}
		defer stop()
		baseURL = base
	}
	ts := inspectToken(ctx, baseURL, embedded, token)
	label := pipeline.TokenDefault
	if c.tenant != "" {
		label = fmt.Sprintf(pipeline.TokenOfTenant, c.tenant)
	}
	code := ts.print(c.stdout, label, from, time.Now(), required)
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// tokenState is what apbatch knows of one token.
type tokenState struct {
	claims workers.TokenClaims
	// decodeErr is set when the token's claims cannot be read.
	decodeErr error
	// scopes are the API's when it answered, the token's otherwise.
	scopes  []string
	fromAPI string // the introspection URL the scopes come from
	// note says why the scopes come from the token itself.
	note string
	// refused is the API's refusal of the token.
	refused *workers.TokenRefusedError
}

// inspectToken reads token's claims and asks the API at baseURL what it
// knows of it. The embedded sandbox refusing a token is no verdict on it
// (it knows its own tokens only): the token's claims then stand.
func inspectToken(ctx context.Context, baseURL string, embedded bool, token string) tokenState {
	var ts tokenState
	ts.claims, ts.decodeErr = workers.DecodeToken(token)
	ts.scopes = ts.claims.Scopes
	ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	client := &workers.Client{BaseURL: baseURL}
	in, err := client.Introspect(ictx, token)
	var refused *workers.TokenRefusedError
	switch {
	case err == nil:
		ts.scopes, ts.fromAPI = in.Scopes, baseURL+workers.IntrospectPath
	case errors.As(err, &refused) && embedded:
		ts.note = fmt.Sprintf(pipeline.TokenSandboxRefuses, refused.Message)
	case errors.As(err, &refused):
		ts.refused = refused
	default:
		ts.note = fmt.Sprintf(pipeline.TokenNoIntrospect, err)
	}
	return ts
}

// prolonged reports whether the API accepts a token whose exp has passed:
// most likely its owner prolonged it, which changes the API's record, not
// the token. Its real expiry is then unknown, and not held against it.
func (ts tokenState) prolonged(now time.Time) bool {
	return ts.fromAPI != "" && !ts.claims.ExpiresAt.IsZero() && !ts.claims.ExpiresAt.After(now)
}

// unusable explains why a batch cannot run with the token at all; "" when
// it can.
func (ts tokenState) unusable(now time.Time) string {
	switch {
	case ts.refused != nil:
		return fmt.Sprintf(pipeline.TokenRefused, ts.refused.HTTPStatus, ts.refused.Code, ts.refused.Message, pipeline.TokenRenewAdvice)
	case ts.decodeErr != nil && ts.fromAPI == "":
		return fmt.Sprintf(pipeline.TokenNotAToken, decodeProblem(ts.decodeErr))
	case !ts.claims.ExpiresAt.IsZero() && workers.ExpiryAt(ts.claims.ExpiresAt, now).Expired && !ts.prolonged(now):
		return fmt.Sprintf(pipeline.TokenExpiredOn, ts.claims.ExpiresAt.Format(dateTimeUTC), pipeline.TokenRenewAdvice)
	}
	return ""
}

// decodeProblem is what DecodeToken found wrong, in its fixed words.
func decodeProblem(err error) string {
	msg := strings.TrimPrefix(err.Error(), "workers: decode token: ")
	return strings.TrimSuffix(msg, ": "+workers.ErrMalformedToken.Error())
}

// dateTimeUTC is how token dates are shown.
const dateTimeUTC = "2006-01-02 15:04 UTC"

// print writes the report of the token named what, found in from, to w
// and returns the exit code of "token check".
func (ts tokenState) print(w io.Writer, what, from string, now time.Time, required []schemas.Check) int {
	line := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	line(pipeline.TokenWhat, what, from)
	c := ts.claims
	if ts.decodeErr != nil {
		line(pipeline.TokenClaimsUnreadable, decodeProblem(ts.decodeErr))
	} else {
		line(pipeline.TokenID, orNone(c.ID))
		line(pipeline.TokenSubject, orNone(c.Subject))
		if !c.IssuedAt.IsZero() {
			line(pipeline.TokenIssued, c.IssuedAt.UTC().Format(dateTimeUTC))
		}
		exp := workers.ExpiryAt(c.ExpiresAt, now)
		switch {
		case c.ExpiresAt.IsZero():
			line(pipeline.TokenNoExpiry)
		case ts.prolonged(now):
			line(pipeline.TokenProlonged, c.ExpiresAt.UTC().Format(dateTimeUTC))
		case exp.Expired:
			line(pipeline.TokenExpired, c.ExpiresAt.UTC().Format(dateTimeUTC), -exp.DaysLeft)
		default:
			line(pipeline.TokenExpires, c.ExpiresAt.UTC().Format(dateTimeUTC), exp.DaysLeft)
		}
	}
	switch {
	case ts.fromAPI != "":
		line(pipeline.TokenScopesAPI, orNone(strings.Join(ts.scopes, ", ")), ts.fromAPI)
	case ts.refused == nil:
		line(pipeline.TokenScopesOwn, orNone(strings.Join(ts.scopes, ", ")), ts.note)
	}
	if ts.refused == nil {
		var allowed, refused []string
		for _, ch := range schemas.Checks {
			if lack := ch.LackingScopes(ts.scopes); len(lack) > 0 {
				refused = append(refused, fmt.Sprintf(pipeline.TokenLacks, ch, strings.Join(lack, ", ")))
			} else {
				allowed = append(allowed, string(ch))
			}
		}
		line(pipeline.TokenAllows, orNone(strings.Join(allowed, ", ")))
		if len(refused) > 0 {
			line(pipeline.TokenNotServed, strings.Join(refused, " ; "))
		}
	}
	if why := ts.unusable(now); why != "" {
		line(pipeline.TokenUnusable, why)
		return exitTokenUnusable
	}
	if unserved := schemas.Unserved(required, ts.scopes); len(unserved) > 0 {
		line(pipeline.TokenCannotServe, schemas.JoinChecks(unserved))
		return exitTokenUnusable
	}
	if exp := workers.ExpiryAt(c.ExpiresAt, now); exp.Reminder > 0 {
		advice := pipeline.TokenPlanRenewal
		if exp.Reminder <= 15 {
			advice = pipeline.TokenRenewNow
		}
		line(pipeline.TokenRenew, exp.DaysLeft, exp.Reminder, advice)
		return exitTokenRenew
	}
	line(pipeline.TokenOK)
	return 0
}

func orNone(s string) string {
	if s == "" {
		return pipeline.TokenNone
	}
	return s
}

// checkTokens refuses to start when a tenant's token cannot serve the
// batches to run: unknown, refused by the API, lacking the scopes of their
// checks, or expiring before their estimated end. The estimate is the
// calls left (rows × checks; for resumed batches, minus the results
// published) at min(--rate, --ip-limit/60) × --budget-share calls per
// second; identical lookups being called once, it errs long.
func (c *runCommand) checkTokens(ctx context.Context, log zerolog.Logger, store *ledger.Store, providerURL string, tokens tokenLookup,
	checks []schemas.Check, files []string, unfinished []ledger.Batch) error {
	type work struct {
		checks []schemas.Check
		calls  int64
	}
	byTenant := map[string]*work{}
	add := func(tenant string, cs []schemas.Check, calls int64) {
		w := byTenant[tenant]
		if w == nil {
			w = &work{}
			byTenant[tenant] = w
		}
		for _, ch := range cs {
			if !slices.Contains(w.checks, ch) {
				w.checks = append(w.checks, ch)
			}
		}
		w.calls += max(calls, 0)
	}
	for _, f := range files {
		rows, err := estimateRows(ctx, f, c.sheet, pipeline.TmpDir(c.cfg.DataDir))
		if err != nil {
			// The batch will say what is wrong with the file.
			log.Debug().Err(err).Str("file", filepath.Base(f)).Msg("rows not estimated")
		}
		add(c.tenant, checks, rows*int64(len(checks)))
	}
	for _, b := range unfinished {
		var calls int64
		if b.RowsTotal != nil {
			published, err := store.Published(ctx, b.ID)
			if err != nil {
				return err
			}
			calls = *b.RowsTotal*int64(len(b.CheckList())) - published
		}
		add(b.Tenant, b.CheckList(), calls)
	}
	rate := min(float64(c.cfg.Rate), float64(c.cfg.IPLimit)/60) * c.cfg.BudgetShare
	now := time.Now()
	for tenant, w := range byTenant {
		token, from, err := tokens(tenant)
		if err != nil {
			return err
		}
		ts := inspectToken(ctx, providerURL, c.cfg.ProviderURL == "", token)
		who := fmt.Sprintf(pipeline.MsgTokenOf, tenant, from)
		if why := ts.unusable(now); why != "" {
			return fmt.Errorf(pipeline.ErrFmtTokenUnusable, who, why, tenant)
		}
		if ts.note != "" {
			log.Warn().Str("tenant", tenant).Str("reason", ts.note).Msg("token scopes read from the token itself")
		}
		if unserved := schemas.Unserved(w.checks, ts.scopes); len(unserved) > 0 {
			var lacks []string
			for _, ch := range unserved {
				lacks = append(lacks, fmt.Sprintf(pipeline.MsgScopeNeeds, ch, strings.Join(ch.LackingScopes(ts.scopes), " et ")))
			}
			return fmt.Errorf(pipeline.ErrFmtTokenScopes, who, schemas.JoinChecks(unserved), strings.Join(lacks, " ; "), orNone(strings.Join(ts.scopes, ", ")), tenant)
		}
		eta := time.Duration(float64(w.calls) / rate * float64(time.Second))
		if exp := ts.claims.ExpiresAt; !exp.IsZero() && !ts.prolonged(now) && now.Add(eta).After(exp) {
			return fmt.Errorf(pipeline.ErrFmtTokenExpiresFirst, who, exp.UTC().Format(dateTimeUTC), w.calls, rate, pipeline.FormatDuration(eta))
		}
		if exp := workers.ExpiryAt(ts.claims.ExpiresAt, now); exp.Reminder > 0 {
			fmt.Fprintf(c.stderr, pipeline.MsgTokenExpiresSoon+"\n", who, exp.DaysLeft, tenant)
		}
	}
	return nil
}

// estimateRows estimates a roster's data rows: its lines but the header
// for a CSV (a quoted field over several lines counts more), the rows of
// the sheet with content for a workbook (read within csv.OpenXLSX's
// limits: a workbook beyond them is not estimated, its batch says why).
// ctx ends the read; tmpDir receives a large workbook's parts.
func estimateRows(ctx context.Context, path, sheet, tmpDir string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(4)
	if csv.IsXLSX(path, head) {
		r, err := csv.OpenXLSX(ctx, br, filepath.Base(path), csv.Options{Sheet: sheet, Now: time.Now(), TmpDir: tmpDir})
		if err != nil {
			return 0, err
		}
		var n int64
		for {
			if _, err := r.Next(); errors.Is(err, io.EOF) {
				return n, nil
			} else if err != nil {
				return n, err
			}
			n++
		}
	}
	var lines int64
	last := byte('\n')
	buf := make([]byte, 64<<10)
	for {
		k, err := br.Read(buf)
		if k > 0 {
			lines += int64(bytes.Count(buf[:k], []byte{'\n'}))
			last = buf[k-1]
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if last != '\n' {
		lines++
	}
	return max(lines-1, 0), nil
}
