package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// runApbatchEnv runs apbatch with the environment vars.
func runApbatchEnv(t *testing.T, ctx context.Context, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb syncBuffer
	e := env{stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }, environ: func() []string {
		var kv []string
		for k, v := range vars {
			kv = append(kv, k+"="+v)
		}
		return kv
	}}
	code = runMain(ctx, e, args)
	return code, out.String(), errb.String()
}

// testSandbox serves a sandbox with cfg until the test ends.
func testSandbox(t *testing.T, cfg sandbox.Config) (*sandbox.Server, *httptest.Server) {
	t.Helper()
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(func() {
		sb.Close()
		srv.Close()
	})
	return sb, srv
}

// sandboxToken returns a sandbox token with scopes expiring after d, in a
// file of dir.
func sandboxToken(t *testing.T, dir string, scopes []string, d time.Duration) (token, file string) {
	t.Helper()
	tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), scopes, time.Now().Add(d))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "token-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(tok + "\n"); err != nil {
		t.Fatal(err)
	}
	return tok, f.Name()
}

// assertNoToken fails when out holds the token or any part of it.
func assertNoToken(t *testing.T, out, token string) {
	t.Helper()
	for _, p := range append([]string{token}, strings.Split(token, ".")...) {
		if len(p) >= 8 && strings.Contains(out, p) {
			t.Fatalf("the output holds the token or a part of it:\n%s", out)
		}
	}
}

func TestTokenCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, srv := testSandbox(t, sandbox.Config{})
	dir := t.TempDir()
	day := 24 * time.Hour
	qf := []string{"cnaf_quotient_familial", "cnaf_enfants"}
	for _, tc := range []struct {
		name   string
		scopes []string
		left   time.Duration
		args   []string
		code   int
		want   []string
		not    []string
	}{
		{"expires in 200 days", sandbox.AllScopes, 200 * day, nil, 0,
			[]string{"(dans 200 jours)", "selon " + srv.URL + "/api/introspect", "permet :          quotient_familial, complementaire_sante_solidaire", "\nok\n"},
			[]string{"attention", "ne permet pas :"}},
		{"expires in 10 days", qf, 10 * day, nil, exitTokenRenew,
			[]string{"(dans 10 jours)", "attention : le jeton expire dans 10 jours (moins de 15 jours) : renouvelez-le maintenant", "permet :          quotient_familial\n",
				"etudiant_boursier (il manque cnous_statut_boursier)"},
			nil},
		{"expires in 45 days", qf, 45 * day, nil, exitTokenRenew, []string{"expire dans 45 jours (moins de 60 jours) : prévoyez son renouvellement"}, nil},
		{"lacks the scopes of --checks", qf, 200 * day, []string{"--checks", "qf,boursier"}, exitTokenUnusable,
			[]string{"erreur : le jeton ne permet pas --checks etudiant_boursier"}, nil},
		{"expired: the API refuses it", qf, -day, nil, exitTokenUnusable, []string{"erreur : le jeton est inutilisable : l'API le refuse (HTTP 401"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, file := sandboxToken(t, dir, tc.scopes, tc.left)
			args := append([]string{"token", "check", "--provider-url", srv.URL, "--token-file", file}, tc.args...)
			code, stdout, stderr := runApbatchEnv(t, ctx, nil, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(stdout, w) {
					t.Errorf("output has %q:\n%s", w, stdout)
				}
			}
			claims, _ := workers.DecodeToken(tok)
			if !strings.Contains(stdout, "id (jti) :        "+claims.ID) {
				t.Errorf("no jti:\n%s", stdout)
			}
			assertNoToken(t, stdout+stderr, tok)
		})
	}

	t.Run("provider down: scopes from the token", func(t *testing.T) {
		tok, file := sandboxToken(t, dir, qf, 200*day)
		down := httptest.NewServer(nil)
		down.Close()
		code, stdout, stderr := runApbatchEnv(t, ctx, nil, "token", "check", "--provider-url", down.URL, "--token-file", file)
		if code != 0 || !strings.Contains(stdout, "droits :          cnaf_quotient_familial, cnaf_enfants (lus dans le jeton : l'API n'a pas répondu") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		assertNoToken(t, stdout+stderr, tok)
	})
	t.Run("expired token the API still accepts: prolonged", func(t *testing.T) {
		// The API keeps a prolonged token's new expiry in its records; a
		// sandbox two days behind plays it.
		_, api := testSandbox(t, sandbox.Config{Now: func() time.Time { return time.Now().Add(-2 * day) }})
		tok, file := sandboxToken(t, dir, qf, -day)
		code, stdout, stderr := runApbatchEnv(t, ctx, nil, "token", "check", "--provider-url", api.URL, "--token-file", file)
		if code != 0 || !strings.Contains(stdout, "date passée, mais l'API accepte encore le jeton : prolongé sur le portail de l'opérateur ?") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		assertNoToken(t, stdout+stderr, tok)
	})
	t.Run("per tenant, from the environment", func(t *testing.T) {
		tok, _ := sandboxToken(t, dir, qf, 10*day)
		code, stdout, stderr := runApbatchEnv(t, ctx, map[string]string{"APBATCH_TOKEN_VILLE_DE_LYON": tok, "APBATCH_PROVIDER_URL": srv.URL},
			"token", "check", "--tenant", "ville-de-lyon")
		if code != exitTokenRenew || !strings.Contains(stdout, `jeton de la collectivité "ville-de-lyon", trouvé dans APBATCH_TOKEN_VILLE_DE_LYON`) {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		assertNoToken(t, stdout+stderr, tok)
	})
	t.Run("not a token", func(t *testing.T) {
		file := filepath.Join(dir, "garbage")
		secret := "s3cr3t-n0t-a-jwt-value"
		if err := os.WriteFile(file, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runApbatchEnv(t, ctx, nil, "token", "check", "--provider-url", srv.URL, "--token-file", file)
		if code != exitTokenUnusable || strings.Contains(stdout+stderr, secret) {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
	})
}

func TestTokenCheck_EmbeddedSandbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// No token, no provider: the token run uses with the embedded sandbox.
	code, stdout, stderr := runApbatchEnv(t, ctx, nil, "token", "check")
	if code != 0 || !strings.Contains(stdout, "trouvé dans le bac à sable intégré") || !strings.Contains(stdout, "/api/introspect)") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	// A token the embedded sandbox does not know: its own claims stand.
	foreign, err := sandbox.Token([]byte("the real API's key"), []string{"cnaf_quotient_familial"}, time.Now().Add(200*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runApbatchEnv(t, ctx, map[string]string{"APBATCH_TOKEN": foreign}, "token", "check")
	if code != 0 || !strings.Contains(stdout, "lus dans le jeton : le bac à sable intégré n'accepte pas ce jeton") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	assertNoToken(t, stdout+stderr, foreign)
	if code, _, _ := runApbatchEnv(t, ctx, nil, "token"); code != 2 {
		t.Fatalf("token without check: exit %d", code)
	}
}

func TestTokenSources_Lookup(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{"lyon": "tok-lyon\n", "paris.token": "tok-paris", "vide": " \n", "..data": "hidden"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	def := filepath.Join(dir, "default")
	if err := os.WriteFile(def, []byte("tok-default"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		src    tokenSources
		vars   map[string]string
		tenant string
		token  string
		from   string
		noTok  bool
	}{
		{"file in the folder", tokenSources{dir: dir}, nil, "lyon", "tok-lyon", filepath.Join(dir, "lyon"), false},
		{"<tenant>.token", tokenSources{dir: dir}, nil, "paris", "tok-paris", filepath.Join(dir, "paris.token"), false},
		{"the variable wins", tokenSources{dir: dir}, map[string]string{"APBATCH_TOKEN_LYON": "tok-env"}, "lyon", "tok-env", "APBATCH_TOKEN_LYON", false},
		{"tenant name to variable", tokenSources{}, map[string]string{"APBATCH_TOKEN_VILLE_DE_ST_DENIS_2": "tok"}, "ville-de-st.denis_2", "tok", "APBATCH_TOKEN_VILLE_DE_ST_DENIS_2", false},
		{"default file for other tenants", tokenSources{dir: dir, file: def}, nil, "nice", "tok-default", def, false},
		{"default variable", tokenSources{dir: dir}, map[string]string{"APBATCH_TOKEN": "tok-var"}, "nice", "tok-var", "APBATCH_TOKEN", false},
		{"no tenant: the default", tokenSources{dir: dir, file: def}, map[string]string{"APBATCH_TOKEN_LYON": "x"}, "", "tok-default", def, false},
		{"nothing for this tenant", tokenSources{dir: dir}, map[string]string{"APBATCH_TOKEN_LYON": "x"}, "nice", "", "", true},
		{"no default at all", tokenSources{}, nil, "", "", "", true},
		// A tenant named "file" does not read APBATCH_TOKEN_FILE, a path.
		{"tenant file", tokenSources{}, map[string]string{"APBATCH_TOKEN_FILE": "/x"}, "file", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.src.getenv = func(k string) string { return tc.vars[k] }
			tok, from, err := tc.src.lookup(tc.tenant)
			if tc.noTok {
				if !errors.Is(err, workers.ErrNoToken) {
					t.Fatalf("err = %v, want ErrNoToken", err)
				}
				return
			}
			if err != nil || tok != tc.token || from != tc.from {
				t.Fatalf("got %q from %q, %v; want %q from %q", tok, from, err, tc.token, tc.from)
			}
		})
	}
	src := tokenSources{dir: dir, getenv: func(string) string { return "" }}
	for _, tenant := range []string{"vide", "..data", "../lyon"} {
		if _, _, err := src.lookup(tenant); err == nil || errors.Is(err, workers.ErrNoToken) || strings.Contains(err.Error(), "hidden") {
			t.Errorf("%s: %v, want an error naming the problem", tenant, err)
		}
	}
	if src.configured(nil) != true || (tokenSources{getenv: src.getenv}).configured([]string{"APBATCH_TOKEN_FILE=/x"}) ||
		!(tokenSources{getenv: src.getenv}).configured([]string{"APBATCH_TOKEN_LYON=t"}) {
		t.Error("configured")
	}
}

func TestRun_RefusesTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, srv := testSandbox(t, sandbox.Config{})
	dir := t.TempDir()
	cnous := schemas.CheckEtudiantBoursier.Scopes().Route
	for _, tc := range []struct {
		name   string
		scopes []string
		left   time.Duration
		args   []string
		want   []string
	}{
		{"lacks the QF scope", cnous, 200 * 24 * time.Hour, nil,
			[]string{`le jeton d'API de la collectivité "demo"`, "ne permet pas --checks quotient_familial : quotient_familial demande cnaf_quotient_familial",
				"ses droits sont cnous_statut_boursier", "Demandez ces droits"}},
		// 12 rows at 0.01 call/s take 20 minutes; the token ends in 10.
		{"expires before the batch ends", sandbox.AllScopes, 10 * time.Minute, []string{"--rate", "1", "--budget-share", "0.01"},
			[]string{"expire le", "avant la fin du lot : environ 12 appels à 0.01 par seconde prennent 20 min 00 s", "Renouvelez d'abord le jeton"}},
		{"expired", sandbox.AllScopes, -time.Hour, nil, []string{"est inutilisable : l'API le refuse (HTTP 401"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, file := sandboxToken(t, dir, tc.scopes, tc.left)
			roster := filepath.Join(dir, "roster.csv")
			rows := "nom_naissance;prenoms;sexe;date_naissance;code_insee_commune_naissance\n" + strings.Repeat("DUPONT;Jean;M;1980-01-01;75056\n", 12)
			if err := os.WriteFile(roster, []byte(rows), 0o600); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"run", "--data-dir", filepath.Join(dir, tc.name), "--provider-url", srv.URL, "--token-file", file,
				"--recipient", "13002526500013", "--checks", "qf"}, tc.args...)
			code, stdout, stderr := runApbatchEnv(t, ctx, nil, append(args, roster)...)
			if code != 1 {
				t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			assertNoToken(t, stdout+stderr, tok)
			if sb.Calls() != 0 {
				t.Fatalf("%d data calls made", sb.Calls())
			}
		})
	}
}

func TestEstimateRows(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		want       int64
	}{
		{"header only", "nom;prenoms\n", 0},
		{"three rows", "nom;prenoms\r\na;b\r\nc;d\r\ne;f\r\n", 3},
		{"no final newline", "nom;prenoms\na;b\nc;d", 2},
		{"empty", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".csv")
			if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			if got, err := estimateRows(context.Background(), p, "", t.TempDir()); err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestTenantDelegations(t *testing.T) {
	got, err := tenantDelegations([]string{"APBATCH_DELEGATION_VILLE_DE_LYON= 6F3C8D9A-1B2C-4D5E-8F90-A1B2C3D4E5F6 ", "APBATCH_RECIPIENT_X=1", "PATH=/bin"})
	if err != nil || len(got) != 1 || got["ville-de-lyon"] != "6f3c8d9a-1b2c-4d5e-8f90-a1b2c3d4e5f6" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"APBATCH_DELEGATION_LYON=12", "APBATCH_DELEGATION_LYON=6f3c8d9a-1b2c-4d5e-8f90-a1b2c3d4e5f6&x=1", "APBATCH_DELEGATION_lyon=6f3c8d9a-1b2c-4d5e-8f90-a1b2c3d4e5f6"} {
		if _, err := tenantDelegations([]string{bad}); err == nil || strings.Contains(err.Error(), "6f3c") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
