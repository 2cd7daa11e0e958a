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
	// default transport keeps only 2 per host).
	HTTP *http.Client
	// UserAgent is sent with every call. Default: "apbatch".
	UserAgent string

	once sync.Once
	hc   *http.Client
}

// httpClient returns HTTP, or the default client built once.
func (c *Client) httpClient() *http.Client {
	c.once.Do(func() {
		c.hc = c.HTTP
		if c.hc == nil {
			c.hc = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				ForceAttemptHTTP2:     true,
				MaxIdleConns:          256,
				MaxIdleConnsPerHost:   256,
				IdleConnTimeout:       90 * time.Second,
				TLSHandshakeTimeout:   5 * time.Second,
				ExpectContinueTimeout: time.Second,
			}}
		}
	})
	return c.hc
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
	// Message joins the API's error details; it never holds personal data.
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
	// RetryAfter is the wait the API asked for (Retry-After,
	// RateLimit-Reset or meta.retry_in), 0 if none.
	RetryAfter time.Duration
	// Header holds the answer's headers, for Budget.Observe.
	Header http.Header
}

// QueryQuotientFamilial builds the query of the QF route exactly as the API
// expects it: prenoms[] repeated, birth date parts only when set, the COG
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
	q.Set("sexeEtatCivil", id.Sexe)
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
	a, ok := adapterFor(job.Check)
	if !ok {
		return Outcome{}, fmt.Errorf("workers: unknown check %q", job.Check)
	}
	path, q := a.route(job)
	req, err := c.newRequest(ctx, token, path, q)
	if err != nil {
		return Outcome{}, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return Outcome{Route: path}, transportError(path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return Outcome{Route: path}, transportError(path, err)
	}
	o := classify(resp.StatusCode, resp.Header, body, time.Now(), a.decode)
	o.Route = path
	return o, nil
}

// newRequest builds a GET of path with query q (nil for none) on the API,
// the token in the Authorization header only. Its error never holds the
// URL.
func (c *Client) newRequest(ctx context.Context, token, path string, q url.Values) (*http.Request, error) {
	base := c.BaseURL
	if base == "" {
		base = ProductionURL
	}
	u := strings.TrimRight(base, "/") + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("workers: build request to %s: invalid base URL", path)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	ua := c.UserAgent
	if ua == "" {
		ua = "apbatch"
	}
	req.Header.Set("User-Agent", ua)
	return req, nil
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

// ErrTransport marks a call that got no HTTP answer.
var ErrTransport = errors.New("no answer from the API")

// apiError is one entry of a v3 JSON:API error body.
type apiError struct {
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
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

// classify turns an answer into an Outcome (status first, then the last
// three digits of the error code, whose provider prefix varies).
func classify(status int, h http.Header, raw []byte, now time.Time, decode func(json.RawMessage, time.Time, *Outcome) bool) Outcome {
	o := Outcome{HTTPStatus: status, RequestID: h.Get("X-Request-ID"), Header: h}
	var b body
	jsonErr := json.Unmarshal(raw, &b)
	// A 200 answers with its data: an errors member beside it (no route
	// sends one) must not give an ok result an error code.
	if status != http.StatusOK && len(b.Errors) > 0 {
		e := b.Errors[0]
		o.Code = e.Code
		o.Provider = e.Meta.Provider
		var msgs []string
		for _, e := range b.Errors {
			m := strings.TrimSpace(e.Title)
			if e.Detail != "" && e.Detail != e.Title {
				m = strings.TrimSpace(m + " : " + e.Detail)
			}
			if m != "" {
				msgs = append(msgs, m)
			}
		}
		o.Message = strings.Join(msgs, " ; ")
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
	switch {
	case status == http.StatusOK:
		if jsonErr != nil || len(b.Data) == 0 || string(b.Data) == "null" || !decode(b.Data, now, &o) {
			o.Status = schemas.StatusProviderError
			o.Code = schemas.CodeBadResponse
			o.Message = "réponse 200 sans les données attendues"
			return o
		}
		o.Status = schemas.StatusOK
	case status == http.StatusNotFound:
		o.Status = schemas.StatusNotFound
	case status == http.StatusUnprocessableEntity && strings.HasSuffix(o.Code, "355"):
		o.Status = schemas.StatusIdentityUnresolved
	case status == http.StatusUnprocessableEntity, status == http.StatusBadRequest:
		o.Status = schemas.StatusInvalidInput
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		o.Status = schemas.StatusUnauthorized
	case status == http.StatusTooManyRequests, status == http.StatusConflict,
		status == http.StatusInternalServerError, status == http.StatusBadGateway,
		status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
		o.Status = schemas.StatusProviderError
		o.Retryable = true
	default:
		o.Status = schemas.StatusProviderError
	}
	if o.Status != schemas.StatusOK && o.Code == "" {
		if jsonErr != nil {
			o.Code = schemas.CodeBadResponse
		} else {
			o.Code = "HTTP_" + strconv.Itoa(status)
		}
	}
	if o.Message == "" && o.Status != schemas.StatusOK {
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
