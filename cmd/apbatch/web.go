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

	listen, tenant, checks, period, recipient string
	tariff, columns                           string
	web                                       webFlags
}

// webFlags configure the portal, in "web" and in "serve --roles web".
type webFlags struct {
	apiKeysDir                               string
	oidcIssuer, oidcClientID, oidcRedirect   string
	oidcTenantClaim, oidcTenants, oidcScopes string
}

func (w *webFlags) register(fs *flag.FlagSet, e env) {
	fs.StringVar(&w.apiKeysDir, "web-api-keys-dir", e.envOr("APBATCH_WEB_API_KEYS_DIR", ""), "web role: folder of one API key per tenant, files <tenant>.key or <tenant> (a mounted Secret) (APBATCH_WEB_API_KEYS_DIR)")
	fs.StringVar(&w.oidcIssuer, "oidc-issuer", e.envOr("APBATCH_OIDC_ISSUER", ""), "web role: OpenID Connect issuer URL (ProConnect or any provider) (APBATCH_OIDC_ISSUER); its client secret in APBATCH_OIDC_CLIENT_SECRET")
	fs.StringVar(&w.oidcClientID, "oidc-client-id", e.envOr("APBATCH_OIDC_CLIENT_ID", ""), "web role: OpenID Connect client id (APBATCH_OIDC_CLIENT_ID)")
	fs.StringVar(&w.oidcRedirect, "oidc-redirect-url", e.envOr("APBATCH_OIDC_REDIRECT_URL", ""), "web role: the portal's redirect URL registered with the provider, https://<host>/connexion/retour (APBATCH_OIDC_REDIRECT_URL)")
	fs.StringVar(&w.oidcTenantClaim, "oidc-tenant-claim", e.envOr("APBATCH_OIDC_TENANT_CLAIM", "siret"), "web role: the claim naming the agent's organisation (APBATCH_OIDC_TENANT_CLAIM)")
	fs.StringVar(&w.oidcTenants, "oidc-tenants", e.envOr("APBATCH_OIDC_TENANTS", ""), "web role: claim values and their tenants, siret=tenant,... (APBATCH_OIDC_TENANTS)")
	fs.StringVar(&w.oidcScopes, "oidc-scopes", e.envOr("APBATCH_OIDC_SCOPES", ""), "web role: scopes asked, comma-separated (APBATCH_OIDC_SCOPES; default: openid, email, siret)")
}

// oidcConfigured tells whether OpenID Connect sign-in is configured.
func (w *webFlags) oidcConfigured() bool { return w.oidcIssuer != "" }

// signIn builds the OpenID Connect sign-in.
func (w *webFlags) signIn(ctx context.Context, e env, key []byte) (*portal.OIDC, error) {
	if w.oidcClientID == "" || w.oidcRedirect == "" || w.oidcTenants == "" {
		return nil, errors.New("OpenID Connect: give --oidc-client-id, --oidc-redirect-url and --oidc-tenants (or their APBATCH_OIDC_* variables) with --oidc-issuer")
	}
	tenants, err := portal.ParseTenantMap(w.oidcTenants)
	if err != nil {
		return nil, fmt.Errorf("--oidc-tenants: %w", err)
	}
	o := &portal.OIDC{Issuer: w.oidcIssuer, ClientID: w.oidcClientID, ClientSecret: e.getenv("APBATCH_OIDC_CLIENT_SECRET"),
		RedirectURL: w.oidcRedirect, TenantClaim: w.oidcTenantClaim, Tenants: tenants, Key: key, Secure: true}
	if w.oidcScopes != "" {
		for _, s := range strings.Split(w.oidcScopes, ",") {
			if s = strings.TrimSpace(s); s != "" {
				o.Scopes = append(o.Scopes, s)
			}
		}
	}
	if strings.HasPrefix(w.oidcRedirect, "http://") {
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
	fs.StringVar(&c.listen, "listen", c.envOr("APBATCH_WEB_ADDR", "127.0.0.1:8080"), "address of the portal (APBATCH_WEB_ADDR); without OpenID Connect, a loopback address only")
	fs.StringVar(&c.tenant, "tenant", "demo", "collectivité of the local mode's sign-in link and API key")
	fs.StringVar(&c.checks, "checks", "qf", "checks ticked by default on the upload form: "+schemas.CheckNames())
	fs.StringVar(&c.period, "period", "", "QF month to ask for, YYYY-MM (default: the API's current month)")
	fs.StringVar(&c.recipient, "recipient", "", "SIRET of the collectivité, sent with every call (default with the embedded sandbox: "+dinumSIRET+")")
	fs.StringVar(&c.tariff, "tariff", "", "tariff grid (YAML) of --tenant to store before serving, as run's --tariff (agents may also upload one on the settings page)")
	fs.StringVar(&c.columns, "columns", "", "column mapping (YAML) of --tenant to store before serving, as run's --columns")
	c.web.register(fs, c.env)
	c.engineFlags.register(fs, c.getenv)
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
	if !pipeline.ValidTenant(c.tenant) {
		return fmt.Errorf("--tenant: use letters, digits, '.', '_' or '-' (got %q)", c.tenant)
	}
	checks, err := schemas.ParseChecks(c.checks)
	if err != nil {
		return fmt.Errorf("--checks: %w", err)
	}
	if _, err := pipeline.ParsePeriod(c.period); err != nil {
		return fmt.Errorf("--period: %w", err)
	}
	if c.recipient == "" {
		if c.providerURL != "" {
			return errors.New("--recipient: give the collectivité's SIRET (14 digits) when calling a real API")
		}
		c.recipient = dinumSIRET
	}
	if !siretPattern.MatchString(c.recipient) {
		return fmt.Errorf("--recipient: %q is not a SIRET (14 digits)", c.recipient)
	}
	if !c.web.oidcConfigured() && !loopback(c.listen) {
		return fmt.Errorf("--listen %s: without OpenID Connect (--oidc-issuer) the portal listens on a loopback address only, e.g. 127.0.0.1:8080", c.listen)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w (another program uses this port? try --listen 127.0.0.1:8081)", err)
	}
	defer ln.Close()
	en, err := c.engineFlags.start(ctx, c.env, func(cfg *stackConfig) {
		cfg.Period, cfg.Recipient, cfg.Checks = c.period, c.recipient, checks
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
	key, err := portal.SessionKey(c.getenv("APBATCH_WEB_SESSION_KEY"), filepath.Join(c.dataDir, "web-session.key"))
	if err != nil {
		return err
	}
	p, err := c.web.portal(ctx, c.env, en.st, en.log, key)
	if err != nil {
		return err
	}
	p.Checks = checks
	p.Tokens = func(_ context.Context, tenant string) portal.TokenStatus {
		return portal.TokenStatusOf(func(t string) (string, error) { tok, _, err := en.tokens(t); return tok, err }, tenant, time.Now())
	}
	if p.TmpDir, err = pipeline.MakeTmpDir(c.dataDir); err != nil {
		return err
	}
	p.Exporter.TmpDir = p.TmpDir
	keyPath := filepath.Join(c.dataDir, "web-api.key")
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

// portal builds the portal on a stack's S3, ledger and upload events.
func (w *webFlags) portal(ctx context.Context, e env, st *stack, log zerolog.Logger, key []byte) (*portal.Portal, error) {
	p := &portal.Portal{S3: st.s3, Ledger: st.ledger, Events: st.uploads, Log: log, SessionKey: key, Secure: true,
		APIKeys: &portal.APIKeys{}, Exporter: &pipeline.Exporter{}}
	if w.apiKeysDir != "" {
		if err := portal.LoadAPIKeys(w.apiKeysDir, p.APIKeys); err != nil {
			return nil, err
		}
	}
	if w.oidcConfigured() {
		o, err := w.signIn(ctx, e, key)
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
