package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	json "github.com/segmentio/encoding/json"

	"github.com/apbatch/apbatch/schemas"
)

// ProductionURL is API Particulier's production base URL.
const ProductionURL = "https://particulier.api.gouv.fr"

// QuotientFamilialPath is the v3 QF route by identity.
const QuotientFamilialPath = "/v3/dss/quotient_familial/identite"

// maxBody caps how much of a response is read.
const maxBody = 1 << 20

// Client calls API Particulier. The zero value calls production with a 15 s
// timeout (longer than the API's own 10 s wait for a provider, so that a
// slow answer is not abandoned and retried into a 409). Safe for concurrent
// use.
type Client struct {
	// BaseURL is the API's base URL. Default: ProductionURL.
	BaseURL string
	// HTTP is the HTTP client. Default: a client with a 15 s timeout that
	// keeps up to 256 idle connections to the API, so that calls in flight
	// reuse connections instead of paying a TLS handshake each (Go's
	// default transport keeps only 2 per host), and asks for answers
	// uncompressed (a few hundred bytes of JSON each).
	HTTP *http.Client
	// UserAgent is sent with every call. Default: "apbatch".
	UserAgent string
	// ErrorCatalogue is the version of the API's error catalogue its
	// answers are read with (schemas.Errors; a code's meaning depends on
	// it). Default: "", the latest.
	ErrorCatalogue string

	once sync.Once
	hc   *http.Client
	// accept and defaultUA are header values every request shares (no
	// request changes its headers' values).
	accept, defaultUA []string
	bufs              sync.Pool // of *buffer
}

// setup builds what the zero value leaves to defaults; once.
func (c *Client) setup() {
	c.hc = c.HTTP
	if c.hc == nil {
		c.hc = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			DisableCompression:    true,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: time.Second,
		}}
	}
	c.accept = []string{"application/json"}
	c.defaultUA = []string{"apbatch"}
}

// httpClient returns HTTP, or the default client built once.
func (c *Client) httpClient() *http.Client {
	c.once.Do(c.setup)
	return c.hc
}

// buffer holds a call's bytes: its URL, then its answer.
type buffer struct{ b []byte }

// maxPooledBuffer is the largest buffer kept for another call; a rare
// large answer does not stay in memory.
const maxPooledBuffer = 64 << 10

// buffer returns a buffer for one call; give it back with release once
// nothing refers to its bytes.
func (c *Client) buffer() *buffer {
	if b, ok := c.bufs.Get().(*buffer); ok {
		return b
	}
	return &buffer{b: make([]byte, 0, 2048)}
}

func (c *Client) release(b *buffer) {
	if cap(b.b) <= maxPooledBuffer {
		c.bufs.Put(b)
	}
}

// QuotientFamilial is the data of a 200 answer of the QF route.
type QuotientFamilial struct {
	Fournisseur string
	Valeur      *int64
	Annee       *int32
	Mois        *int32
	AnneeCalcul *int32
	MoisCalcul  *int32
	Enfants     int32
}

// Outcome is the classified answer of one call.
type Outcome struct {
	HTTPStatus int
	Status     schemas.Status
	// Code is the first error code (e.g. "37003", "00355"); "" on 200.
	Code string
	// Message is the catalogue's French message for the agent, then the
	// API's error titles with their codes, bounded (errorSummary): never
	// the free text (detail) that may echo the query.
	Message  string
	Provider string
	QF       *QuotientFamilial
	// Facts are the values of the other checks' answers.
	Facts schemas.Facts
	// Route is the path called.
	Route string
	// RequestID is the answer's X-Request-ID.
	RequestID string
	// Retryable is set when calling again later may succeed.
	Retryable bool
	// Kind is what the error means, from the error catalogue; "" on 200.
	Kind schemas.ErrorKind
	// UnknownCode is set when the catalogue knows no rule for the
	// answer's status and code (or its lack of one): Status comes from
	// the HTTP status's fallback.
	UnknownCode bool
	// RetryAfter is the wait the API asked for (Retry-After,
	// RateLimit-Reset or meta.retry_in), 0 if none.
	RetryAfter time.Duration
	// Header holds the answer's headers, for Budget.Observe.
	Header http.Header
}

// QueryQuotientFamilial builds the query of the QF route exactly as the API
// expects it: prenoms[] repeated, birth date parts and the sex only when
// set, the COG
// commune code or the name + département pair, annee/mois only with a period.
func QueryQuotientFamilial(recipient string, period schemas.Period, id schemas.Identity) url.Values {
	q := url.Values{}
	q.Set("recipient", recipient)
	q.Set("nomNaissance", id.NomNaissance)
	if id.NomUsage != "" {
		q.Set("nomUsage", id.NomUsage)
	}
	for _, p := range id.Prenoms {
		q.Add("prenoms[]", p)
	}
	if id.AnneeNaissance != 0 {
		q.Set("anneeDateNaissance", strconv.Itoa(id.AnneeNaissance))
		if id.MoisNaissance != 0 {
			q.Set("moisDateNaissance", strconv.Itoa(id.MoisNaissance))
			if id.JourNaissance != 0 {
				q.Set("jourDateNaissance", strconv.Itoa(id.JourNaissance))
			}
		}
	}
	if id.Sexe != "" {
		// Optional on the CNAV routes since 2026-05-28.
		q.Set("sexeEtatCivil", id.Sexe)
	}
	q.Set("codeCogInseePaysNaissance", id.CodePaysNaissance)
	if id.CodeCommuneNaissance != "" {
		q.Set("codeCogInseeCommuneNaissance", id.CodeCommuneNaissance)
	} else if id.NomCommuneNaissance != "" {
		q.Set("nomCommuneNaissance", id.NomCommuneNaissance)
		q.Set("codeCogInseeDepartementNaissance", id.CodeDepartementNaissance)
	}
	if !period.IsZero() {
		q.Set("annee", strconv.Itoa(period.Year))
		q.Set("mois", strconv.Itoa(period.Month))
	}
	return q
}

// QuotientFamilial calls the QF route once. The token travels only in the
// Authorization header. The error is for transport failures only; its text
// never holds the URL's query (names, birth dates).
func (c *Client) QuotientFamilial(ctx context.Context, token, recipient string, period schemas.Period, id schemas.Identity) (Outcome, error) {
	return c.Call(ctx, token, schemas.Job{Check: schemas.CheckQuotientFamilial, Recipient: recipient, Period: period, Identity: id})
}

// Call makes job's call once, on the route of its check. The token travels
// only in the Authorization header. The error is for transport failures
// and unknown checks; its text never holds the URL's query (names, birth
// dates).
func (c *Client) Call(ctx context.Context, token string, job schemas.Job) (Outcome, error) {
	return c.call(ctx, bearer(token), job, "")
}

// authorization is a token's Authorization header value. The pool builds
// it once per token rather than once per call (a token is a kilobyte or
// two).
type authorization []string

// bearer returns token's Authorization header value.
func bearer(token string) authorization { return authorization{"Bearer " + token} }

// call is Call with the token's header value built. delegation, when
// set, is sent as delegation_id: the editor token's delegation to use when
// several match the recipient (422 00212 otherwise).
func (c *Client) call(ctx context.Context, auth authorization, job schemas.Job, delegation string) (Outcome, error) {
	a, ok := adapterFor(job.Check)
	if !ok {
		return Outcome{}, fmt.Errorf("workers: unknown check %q", job.Check)
	}
	buf := c.buffer()
	defer c.release(buf)
	var path string
	buf.b, path = a.appendTarget(c.appendBase(buf.b[:0]), job)
	if delegation != "" {
		buf.b = appendQueryEscape(append(buf.b, "&delegation_id="...), delegation)
	}
	req, err := c.newRequest(ctx, auth, path, string(buf.b))
	if err != nil {
		return Outcome{}, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return Outcome{Route: path}, transportError(path, err)
	}
	defer resp.Body.Close()
	buf.b, err = appendBody(buf.b[:0], resp.Body, maxBody)
	if err != nil {
		return Outcome{Route: path}, transportError(path, err)
	}
	// The outcome does not refer to the buffer: classify copies what it
	// keeps.
	o := classifyIn(c.ErrorCatalogue, resp.StatusCode, resp.Header, buf.b, time.Now(), a.decode)
	o.Route = path
	return o, nil
}

// appendBase appends the API's base URL, without a trailing slash.
func (c *Client) appendBase(dst []byte) []byte {
	base := c.BaseURL
	if base == "" {
		base = ProductionURL
	}
	return append(dst, strings.TrimRight(base, "/")...)
}

// newRequest builds a GET of u (the API's base URL, path and query) with
// auth in the Authorization header: the token travels there only. Its
// error never holds the URL.
func (c *Client) newRequest(ctx context.Context, auth authorization, path, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("workers: build request to %s: invalid base URL", path)
	}
	c.once.Do(c.setup)
	ua := c.defaultUA
	if c.UserAgent != "" {
		ua = []string{c.UserAgent}
	}
	// Canonical keys, set as Header.Set would.
	req.Header["Authorization"] = auth
	req.Header["Accept"] = c.accept
	req.Header["User-Agent"] = ua
	return req, nil
}

// appendBody appends what r yields to dst, up to limit bytes (the rest is
// left unread), as io.ReadAll of an io.LimitReader would read it.
func appendBody(dst []byte, r io.Reader, limit int) ([]byte, error) {
	start := len(dst)
	for len(dst)-start < limit {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)] // grow
		}
		n, err := r.Read(dst[len(dst):min(cap(dst), start+limit)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// transportError describes a failed exchange without the request URL, which
// url.Error would include with its query.
func transportError(path string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("workers: call %s: %w", path, err)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("workers: call %s: timeout: %w", path, ErrTransport)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Errorf("workers: call %s: %s: %w", path, oe.Op, ErrTransport)
	}
	return fmt.Errorf("workers: call %s: connection failed: %w", path, ErrTransport)
}

// headerRequestID is X-Request-ID as net/http keys it, so that reading it
// does not canonicalise the name again (an allocation per call).
const headerRequestID = "X-Request-Id"

// errTrailing is unmarshalShared's error for bytes after the JSON value.
var errTrailing = errors.New("workers: data after the JSON value")

// unmarshalShared is json.Unmarshal (same values, same failures), except
// that the json.RawMessage values it fills share raw's bytes instead of
// copying them: for raw members read while raw is unchanged.
func unmarshalShared(raw []byte, v any) error {
	rest, err := json.Parse(raw, v, json.DontCopyRawMessage)
	if len(rest) != 0 && err == nil {
		err = errTrailing
	}
	return err
}

// ErrTransport marks a call that got no HTTP answer.
var ErrTransport = errors.New("no answer from the API")

// apiError is one entry of a v3 JSON:API error body.
type apiError struct {
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"` // never copied: it may echo the query
	Meta   struct {
		Provider string          `json:"provider"`
		RetryIn  json.RawMessage `json:"retry_in"`
	} `json:"meta"`
}

// body is a v3 answer: data on success, errors otherwise.
type body struct {
	Data   json.RawMessage `json:"data"`
	Errors []apiError      `json:"errors"`
}

// classify turns an answer into an Outcome under the latest error
// catalogue.
func classify(status int, h http.Header, raw []byte, now time.Time, decode func(json.RawMessage, time.Time, *Outcome) bool) Outcome {
	return classifyIn("", status, h, raw, now, decode)
}

// classifyIn turns an answer into an Outcome: a 200 by its data, an error
// by the rule of its HTTP status and first error code in version of the
// error catalogue (schemas.Errors; "" for the latest).
func classifyIn(version string, status int, h http.Header, raw []byte, now time.Time, decode func(json.RawMessage, time.Time, *Outcome) bool) Outcome {
	o := Outcome{HTTPStatus: status, RequestID: h.Get(headerRequestID), Header: h}
	var b body
	// The raw members (data, retry_in) are read before raw is.
	jsonErr := unmarshalShared(raw, &b)
	// A 200 answers with its data: an errors member beside it (no route
	// sends one) must not give an ok result an error code.
	if status != http.StatusOK && len(b.Errors) > 0 {
		e := b.Errors[0]
		// Only codes and titles travel (errorSummary): detail and meta
		// may echo the person's identity.
		o.Code = errorCode(e.Code)
		o.Provider = providerName(e.Meta.Provider)
		o.Message = errorSummary(b.Errors)
		if s, err := strconv.ParseFloat(strings.Trim(string(e.Meta.RetryIn), `"`), 64); err == nil && s > 0 && s < maxWaitSeconds {
			o.RetryAfter = time.Duration(s * float64(time.Second))
		}
	}
	if t := RetryAfter(h, now); !t.IsZero() && t.Sub(now) > o.RetryAfter {
		o.RetryAfter = t.Sub(now)
	}
	if status == http.StatusTooManyRequests {
		if t := ResetTime(h, now); t.Sub(now) > o.RetryAfter {
			o.RetryAfter = t.Sub(now)
		}
	}
	if status == http.StatusOK {
		if jsonErr != nil || len(b.Data) == 0 || string(b.Data) == "null" || !decode(b.Data, now, &o) {
			o.Status = schemas.StatusProviderError
			o.Kind = schemas.KindProviderFailure
			o.Code = schemas.CodeBadResponse
			o.Message = "réponse 200 sans les données attendues"
			return o
		}
		o.Status = schemas.StatusOK
		return o
	}
	// The catalogue alone says what an error means: its rule for the
	// status and code in the catalogue's version, else the status's
	// fallback (the code is then unknown, and counted).
	rule, known := schemas.Errors().Lookup(version, status, o.Code)
	o.Kind, o.Status, o.Retryable, o.UnknownCode = rule.Kind, rule.Status, rule.Retryable, !known
	if known {
		// The agent's message first, the API's titles after.
		if o.Message != "" {
			o.Message = rule.Message + " — " + o.Message
		} else {
			o.Message = rule.Message + " (" + o.Code + ")"
		}
	}
	if o.Code == "" {
		if jsonErr != nil {
			o.Code = schemas.CodeBadResponse
		} else {
			o.Code = "HTTP_" + strconv.Itoa(status)
		}
	}
	if o.Message == "" {
		o.Message = fmt.Sprintf("réponse HTTP %d de l'API", status)
	}
	return o
}

// QuotientFamilialPing is the ping key of the QF route's providers.
const QuotientFamilialPing = "cnaf_msa_quotient_familial"

// Ping asks GET {BaseURL}/api/{name}/ping (no token, not rate-limited)
// whether a provider is up.
func (c *Client) Ping(ctx context.Context, name string) (bool, error) {
	base := c.BaseURL
	if base == "" {
		base = ProductionURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/"+name+"/ping", nil)
	if err != nil {
		return false, fmt.Errorf("workers: ping %s: %w", name, err)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return false, transportError("/api/"+name+"/ping", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body); err != nil {
		return false, nil
	}
	return resp.StatusCode == http.StatusOK && body.Status == "ok", nil
}
