package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/portal"
	"github.com/apbatch/apbatch/schemas"
)

// webCommand is "apbatch web": the agents' portal, with every role and the
// embedded services in this process.
type webCommand struct {
	env
	engineFlags
	fs *flag.FlagSet

	tenant, period, tariff, columns string
}

// webSettings declares the portal's settings, in "web" and in "serve
// --roles web".
func webSettings(c *configFlags) {
	c.setting("web-api-keys-dir", "web role: folder of one API key per tenant, files <tenant>.key or <tenant> (a mounted Secret)")
	c.setting("oidc-issuer", "web role: OpenID Connect issuer URL (ProConnect or any provider) (APBATCH_OIDC_ISSUER); its client secret in APBATCH_OIDC_CLIENT_SECRET")
	c.setting("oidc-client-id", "web role: OpenID Connect client id")
	c.setting("oidc-redirect-url", "web role: the portal's redirect URL registered with the provider, https://<host>/connexion/retour")
	c.setting("oidc-tenant-claim", "web role: the claim naming the agent's organisation")
	c.setting("oidc-tenants", "web role: claim values and their tenants, siret=tenant,...")
	c.setting("oidc-scopes", "web role: scopes asked, comma-separated (APBATCH_OIDC_SCOPES; default: openid, email, siret)")
}

// oidcConfigured tells whether OpenID Connect sign-in is configured.
func oidcConfigured(cfg pipeline.Config) bool { return cfg.OIDCIssuer != "" }

// signIn builds the OpenID Connect sign-in.
func signIn(ctx context.Context, e env, w pipeline.Config, key []byte) (*portal.OIDC, error) {
	if w.OIDCClientID == "" || w.OIDCRedirectURL == "" || w.OIDCTenants == "" {
		return nil, errors.New("OpenID Connect: give --oidc-client-id, --oidc-redirect-url and --oidc-tenants (or their APBATCH_OIDC_* variables) with --oidc-issuer")
	}
	tenants, err := portal.ParseTenantMap(w.OIDCTenants)
	if err != nil {
		return nil, fmt.Errorf("--oidc-tenants: %w", err)
	}
	o := &portal.OIDC{Issuer: w.OIDCIssuer, ClientID: w.OIDCClientID, ClientSecret: e.getenv("APBATCH_OIDC_CLIENT_SECRET"),
		RedirectURL: w.OIDCRedirectURL, TenantClaim: w.OIDCTenantClaim, Tenants: tenants, Key: key, Secure: true}
	if w.OIDCScopes != "" {
		for _, s := range strings.Split(w.OIDCScopes, ",") {
			if s = strings.TrimSpace(s); s != "" {
				o.Scopes = append(o.Scopes, s)
			}
		}
	}
	if strings.HasPrefix(w.OIDCRedirectURL, "http://") {
		o.Secure = false
	}
	if err := o.Open(ctx); err != nil {
		return nil, err
	}
	return o, nil
}

func (c *webCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("web", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	c.engineFlags.register(fs)
	c.config.settingAs("listen", "web-addr", "address of the portal; without OpenID Connect, a loopback address only (serve --roles web: "+pipeline.DefaultWebAddr+")")
	fs.StringVar(&c.tenant, "tenant", "demo", "collectivité of the local mode's sign-in link and API key")
	c.config.setting("checks", "checks ticked by default on the upload form: "+schemas.CheckNames())
	fs.StringVar(&c.period, "period", "", "QF month to ask for, YYYY-MM (default: the API's current month)")
	c.config.setting("recipient", "SIRET of the collectivité, sent with every call (default with the embedded sandbox: "+dinumSIRET+")")
	fs.StringVar(&c.tariff, "tariff", "", "tariff grid (YAML) of --tenant to store before serving, as run's --tariff (agents may also upload one on the settings page)")
	fs.StringVar(&c.columns, "columns", "", "column mapping (YAML) of --tenant to store before serving, as run's --columns")
	webSettings(&c.config)
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *webCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch web [flags]

Serves the agents' portal on --listen (http://127.0.0.1:8080 by default): an
agent signs in, uploads a roster (CSV or Excel), follows its verification
and downloads resultats.xlsx, in French, without a terminal. The JSON API
for the town's own software is under /api/v1 (its OpenAPI description at
/api/v1/openapi.json), authenticated by "Authorization: Bearer <API key>".

Everything runs in this process on the embedded services under --data-dir,
as with "apbatch run". Local mode (no --oidc-issuer): the portal listens on
a loopback address only, prints a one-time sign-in link, and keeps the API
key of --tenant in --data-dir/web-api.key (mode 0600). With --oidc-issuer,
agents sign in through OpenID Connect (ProConnect or any provider) and the
tenant comes from --oidc-tenant-claim through --oidc-tenants. In production
the portal is one more role beside the others: apbatch serve --roles web.
Stops cleanly on SIGTERM.

Flags:
`)
}

// Run runs the command.
func (c *webCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := c.load(c.getenv); err != nil {
		return err
	}
	if !pipeline.ValidTenant(c.tenant) {
		return fmt.Errorf("--tenant: use letters, digits, '.', '_' or '-' (got %q)", c.tenant)
	}
	checks, err := schemas.ParseChecks(c.cfg.Checks)
	if err != nil {
		return fmt.Errorf("--checks: %w", err)
	}
	if _, err := pipeline.ParsePeriod(c.period); err != nil {
		return fmt.Errorf("--period: %w", err)
	}
	if c.cfg.Recipient == "" {
		if c.cfg.ProviderURL != "" {
			return errors.New("--recipient: give the collectivité's SIRET (14 digits) when calling a real API")
		}
		c.cfg.Recipient = dinumSIRET
	}
	if !siretPattern.MatchString(c.cfg.Recipient) {
		return fmt.Errorf("--recipient: %q is not a SIRET (14 digits)", c.cfg.Recipient)
	}
	if !oidcConfigured(c.cfg) && !loopback(c.cfg.WebAddr) {
		return fmt.Errorf("--listen %s: without OpenID Connect (--oidc-issuer) the portal listens on a loopback address only, e.g. %s", c.cfg.WebAddr, pipeline.LocalWebAddr)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.cfg.WebAddr)
	if err != nil {
		return fmt.Errorf("--listen: %w (another program uses this port? try --listen 127.0.0.1:8081)", err)
	}
	defer ln.Close()
	en, err := c.engineFlags.start(ctx, c.env, func(cfg *pipeline.RunnerConfig) {
		cfg.Period, cfg.Recipient, cfg.Checks = c.period, c.cfg.Recipient, checks
	}, nil)
	if err != nil {
		return err
	}
	defer en.Close()
	if err := uploadConfig(ctx, en.st, "--tariff", c.tariff, pipeline.TariffKey(c.tenant), func(b []byte) error { _, err := schemas.ParseTariffGrid(b); return err }); err != nil {
		return err
	}
	if err := uploadConfig(ctx, en.st, "--columns", c.columns, pipeline.ColumnsKey(c.tenant), func(b []byte) error { _, err := pipeline.ParseColumns(b); return err }); err != nil {
		return err
	}
	key, err := portal.SessionKey(c.getenv("APBATCH_WEB_SESSION_KEY"), filepath.Join(c.cfg.DataDir, "web-session.key"))
	if err != nil {
		return err
	}
	p, err := newPortal(ctx, c.env, c.cfg, en.st, en.log, key)
	if err != nil {
		return err
	}
	p.Checks = checks
	p.Tokens = func(_ context.Context, tenant string) portal.TokenStatus {
		return portal.TokenStatusOf(func(t string) (string, error) { tok, _, err := en.tokens(t); return tok, err }, tenant, time.Now())
	}
	if p.TmpDir, err = pipeline.MakeTmpDir(c.cfg.DataDir); err != nil {
		return err
	}
	p.Exporter.TmpDir = p.TmpDir
	keyPath := filepath.Join(c.cfg.DataDir, "web-api.key")
	if p.OIDC == nil {
		apiKey, err := portal.LocalKey(keyPath)
		if err != nil {
			return err
		}
		p.APIKeys.Add(c.tenant, apiKey)
		p.Local = portal.NewLocalSignIn(c.tenant)
		p.Secure = false
	}
	srv, err := serveWeb(ctx, ln, p, en.log)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	if p.Local != nil {
		fmt.Fprintf(c.stderr, "Portail des agents : ouvrez ce lien dans votre navigateur pour vous connecter (il ne sert qu'une fois) :\n\n    %s\n\n"+
			"Clé d'API de la collectivité %s (pour vos logiciels, et pour vous reconnecter) : %s\nArrêt : Ctrl+C.\n", p.Local.Link(base), c.tenant, keyPath)
	} else {
		fmt.Fprintf(c.stderr, "Portail des agents : %s\n", base)
	}
	select {
	case <-ctx.Done():
	case err = <-en.roleErr:
		if err == nil {
			err = errors.New("a pipeline role stopped")
		}
		err = fmt.Errorf("pipeline stopped: %w", err)
	}
	srv.stop()
	return err
}

// loopback tells whether addr listens on a loopback address only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// newPortal builds the portal of cfg on a runner's S3, ledger and upload
// events.
func newPortal(ctx context.Context, e env, cfg pipeline.Config, st *pipeline.Runner, log zerolog.Logger, key []byte) (*portal.Portal, error) {
	p := &portal.Portal{S3: st.S3, Ledger: st.Ledger, Events: st.Uploads, Log: log, SessionKey: key, Secure: true,
		APIKeys: &portal.APIKeys{}, Exporter: &pipeline.Exporter{}}
	if cfg.WebAPIKeysDir != "" {
		if err := portal.LoadAPIKeys(cfg.WebAPIKeysDir, p.APIKeys); err != nil {
			return nil, err
		}
	}
	if oidcConfigured(cfg) {
		o, err := signIn(ctx, e, cfg, key)
		if err != nil {
			return nil, err
		}
		p.OIDC, p.Secure = o, o.Secure
	}
	return p, nil
}

// webServer is the portal's HTTP server.
type webServer struct {
	srv *http.Server
	wg  sync.WaitGroup
}

// serveWeb serves p on ln until stop.
func serveWeb(ctx context.Context, ln net.Listener, p *portal.Portal, log zerolog.Logger) (*webServer, error) {
	h, err := p.Handler()
	if err != nil {
		return nil, err
	}
	// Uploads of 200 MB over a town hall's line, and exports of large
	// batches, take minutes: the request and answer timeouts are long,
	// the header's short.
	ws := &webServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 15 * time.Minute,
		WriteTimeout: 15 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}}
	ws.wg.Add(1)
	go func() {
		defer ws.wg.Done()
		if err := ws.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Str("component", "web").Msg("portal stopped")
		}
	}()
	log.Info().Str("component", "web").Str("addr", ln.Addr().String()).Msg("serving the portal")
	return ws, nil
}

// stop lets requests in flight end (30 s at most), then closes.
func (ws *webServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ws.srv.Shutdown(ctx); err != nil {
		ws.srv.Close()
	}
	ws.wg.Wait()
}
