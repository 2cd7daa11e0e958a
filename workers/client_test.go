package workers

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

var lefebvre = schemas.Identity{
	NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS", "GÉRÔME", "JEAN-PHILIPPE"}, Sexe: "F",
	AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27,
	CodePaysNaissance: "99100", CodeCommuneNaissance: "08480",
}

func TestQueryQuotientFamilial(t *testing.T) {
	for _, tc := range []struct {
		name   string
		period schemas.Period
		id     schemas.Identity
		want   url.Values
	}{
		{"nominal without period", schemas.Period{}, lefebvre, url.Values{
			"recipient": {"13002526500013"}, "nomNaissance": {"LEFEBVRE"}, "prenoms[]": {"ALEXIS", "GÉRÔME", "JEAN-PHILIPPE"},
			"anneeDateNaissance": {"1982"}, "moisDateNaissance": {"12"}, "jourDateNaissance": {"27"}, "sexeEtatCivil": {"F"},
			"codeCogInseePaysNaissance": {"99100"}, "codeCogInseeCommuneNaissance": {"08480"},
		}},
		{"with period, partial date, triplet", schemas.Period{Year: 2026, Month: 9}, schemas.Identity{
			NomNaissance: "BERNARD", NomUsage: "DURAND", Prenoms: []string{"ELODIE"}, Sexe: "F", AnneeNaissance: 1990, MoisNaissance: 3,
			CodePaysNaissance: "99100", NomCommuneNaissance: "Sedan", CodeDepartementNaissance: "08",
		}, url.Values{
			"recipient": {"13002526500013"}, "nomNaissance": {"BERNARD"}, "nomUsage": {"DURAND"}, "prenoms[]": {"ELODIE"},
			"anneeDateNaissance": {"1990"}, "moisDateNaissance": {"3"}, "sexeEtatCivil": {"F"},
			"codeCogInseePaysNaissance": {"99100"}, "nomCommuneNaissance": {"Sedan"}, "codeCogInseeDepartementNaissance": {"08"},
			"annee": {"2026"}, "mois": {"9"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := QueryQuotientFamilial("13002526500013", tc.period, tc.id); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("query = %v\nwant    %v", got, tc.want)
			}
		})
	}
}

func TestClient_QuotientFamilial_Classify(t *testing.T) {
	ok200, err := os.ReadFile("testdata/qf-200-nominal.json")
	if err != nil {
		t.Fatal(err)
	}
	errBody := func(code string, meta string) string {
		return `{"errors":[{"code":"` + code + `","title":"Titre","detail":"Détail","meta":{` + meta + `}}]}`
	}
	for _, tc := range []struct {
		name      string
		status    int
		body      string
		header    map[string]string
		want      schemas.Status
		code      string
		retryable bool
		after     time.Duration
	}{
		{"200", 200, string(ok200), nil, schemas.StatusOK, "", false, 0},
		{"404", 404, errBody("37003", `"provider":"CNAV"`), nil, schemas.StatusNotFound, "37003", false, 0},
		{"422 00355 (period too old since 2026-09-09)", 422, errBody("00355", ""), nil, schemas.StatusInvalidInput, "00355", false, 0},
		{"422 35560", 422, errBody("35560", `"provider":"CNAF & MSA"`), nil, schemas.StatusIdentityUnresolved, "35560", false, 0},
		{"422 35563", 422, errBody("35563", `"provider":"CNAF & MSA"`), nil, schemas.StatusIdentityUnresolved, "35563", false, 0},
		{"422 civility", 422, errBody("00420", ""), nil, schemas.StatusInvalidInput, "00420", false, 0},
		{"401", 401, errBody("00101", ""), nil, schemas.StatusUnauthorized, "00101", false, 0},
		{"403", 403, errBody("00100", ""), nil, schemas.StatusUnauthorized, "00100", false, 0},
		{"429", 429, errBody("00429", ""), map[string]string{"Retry-After": "3"}, schemas.StatusProviderError, "00429", true, 3 * time.Second},
		{"502", 502, errBody("37999", `"provider":"CNAV"`), nil, schemas.StatusProviderError, "37999", true, 0},
		{"503 retry_in", 503, errBody("37020", `"retry_in":30`), nil, schemas.StatusProviderError, "37020", true, 30 * time.Second},
		{"504", 504, errBody("37002", ""), nil, schemas.StatusProviderError, "37002", true, 0},
		{"502 from a gateway, not JSON", 502, "<html>Bad Gateway</html>", nil, schemas.StatusProviderError, schemas.CodeBadResponse, true, 0},
		{"410", 410, "n'est plus disponible", nil, schemas.StatusProviderError, schemas.CodeBadResponse, false, 0},
		{"200 unreadable", 200, "{", nil, schemas.StatusProviderError, schemas.CodeBadResponse, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gotQuery url.Values
			var gotAuth string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != QuotientFamilialPath {
					t.Errorf("path %s", r.URL.Path)
				}
				gotQuery, gotAuth = r.URL.Query(), r.Header.Get("Authorization")
				w.Header().Set("X-Request-ID", "req-1")
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c := &Client{BaseURL: srv.URL}
			o, err := c.QuotientFamilial(context.Background(), "tok", "13002526500013", schemas.Period{}, lefebvre)
			if err != nil {
				t.Fatal(err)
			}
			if gotAuth != "Bearer tok" || gotQuery.Get("token") != "" || len(gotQuery["prenoms[]"]) != 3 {
				t.Fatalf("auth %q, query %v", gotAuth, gotQuery)
			}
			if o.Status != tc.want || o.Code != tc.code || o.Retryable != tc.retryable || o.RetryAfter != tc.after || o.RequestID != "req-1" {
				t.Fatalf("outcome = %+v", o)
			}
			if tc.status != 200 && !o.UnknownCode && !strings.HasSuffix(o.Message, "Titre ("+tc.code+")") {
				t.Errorf("message %q: not the agent's message then the API's title", o.Message)
			}
			if tc.status == 200 && tc.want == schemas.StatusOK {
				qf := o.QF
				if qf == nil || *qf.Valeur != 2550 || qf.Fournisseur != "CNAF" || *qf.Annee != 2023 || *qf.MoisCalcul != 12 || qf.Enfants != 0 || o.Provider != "CNAF" {
					t.Fatalf("QF = %+v", qf)
				}
			}
		})
	}
}

func TestClient_TransportErrorHidesQueryAndToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	base := srv.URL
	srv.Close() // connection refused from now on
	c := &Client{BaseURL: base, HTTP: &http.Client{Timeout: time.Second}}
	_, err := c.QuotientFamilial(context.Background(), "secret-token", "13002526500013", schemas.Period{}, lefebvre)
	if err == nil {
		t.Fatal("no error from a closed server")
	}
	for _, leak := range []string{"secret-token", "LEFEBVRE", "ALEXIS", "1982", "08480", "nomNaissance", "?"} {
		if strings.Contains(err.Error(), leak) {
			t.Fatalf("error %q contains %q", err, leak)
		}
	}
}

// qfAnswer is a 200 answer of the QF route as the API sends it: the
// nominal body of the catalogue, compacted, with one child, and the headers
// every answer carries.
type qfAnswer struct {
	body   []byte
	header http.Header
}

func newQFAnswer(tb testing.TB) qfAnswer {
	tb.Helper()
	raw, err := os.ReadFile("testdata/qf-200-nominal.json")
	if err != nil {
		tb.Fatal(err)
	}
	var compact bytes.Buffer
	if err := stdjson.Compact(&compact, raw); err != nil {
		tb.Fatal(err)
	}
	body := bytes.Replace(compact.Bytes(), []byte(`"enfants":[]`),
		[]byte(`"enfants":[{"nom_naissance":"LEFEBVRE","nom_usage":null,"prenoms":"LOUISE","date_naissance":"2012-03-04","sexe":"F"}]`), 1)
	return qfAnswer{body: body, header: http.Header{
		"Content-Type":        {"application/json; charset=utf-8"},
		"X-Request-Id":        {"6f1c2b9e-3d4a-4c8e-9b7f-2a5d8e1c0f43"},
		"Ratelimit-Limit":     {"20"},
		"Ratelimit-Remaining": {"19"},
		"Ratelimit-Reset":     {"1"},
		"X-Response-Cached":   {"false"},
	}}
}

// ServeHTTP answers any request with the fixed answer.
func (a qfAnswer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	for k, v := range a.header {
		w.Header()[k] = v
	}
	w.Write(a.body)
}

// RoundTrip answers in memory, as a transport would after reading the
// answer off the wire (a header map and a body of its own).
func (a qfAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: a.header.Clone(), Body: io.NopCloser(bytes.NewReader(a.body)), ContentLength: int64(len(a.body)), Request: r}, nil
}

// benchToken is a token as long as the API's (a signed JWT with every
// scope).
func benchToken(tb testing.TB) string {
	tb.Helper()
	tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// BenchmarkClient_CallQF measures one QF call on loopback, net/http's own
// work included.
func BenchmarkClient_CallQF(b *testing.B) {
	srv := httptest.NewServer(newQFAnswer(b))
	defer srv.Close()
	benchCallQF(b, &Client{BaseURL: srv.URL})
}

// benchCallQF calls the QF route through c in a loop, checking each answer.
func benchCallQF(b *testing.B, c *Client) {
	tok := benchToken(b)
	job := schemas.Job{Check: schemas.CheckQuotientFamilial, Recipient: "13002526500013", Identity: lefebvre}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		o, err := c.Call(ctx, tok, job)
		if err != nil || o.Status != schemas.StatusOK || o.QF == nil || o.QF.Enfants != 1 {
			b.Fatalf("outcome %+v, error %v", o, err)
		}
	}
}

// BenchmarkClient_CallQFInMemory measures the client alone: the answer
// comes from memory rather than over a connection.
func BenchmarkClient_CallQFInMemory(b *testing.B) {
	benchCallQF(b, &Client{BaseURL: "http://api.test", HTTP: &http.Client{Transport: newQFAnswer(b)}})
}

// TestClient_Request: what goes on the wire is the GET of route's path
// and encoded query, with the token in the Authorization header only and
// the JSON and user-agent headers.
func TestClient_Request(t *testing.T) {
	for _, ua := range []string{"", "apbatch-test/1"} {
		var got *http.Request
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r.Clone(context.Background())
			w.WriteHeader(http.StatusNotFound)
		}))
		c := &Client{BaseURL: srv.URL + "/", UserAgent: ua}
		job := schemas.Job{Check: schemas.CheckQuotientFamilial, Recipient: "13002526500013", Period: schemas.Period{Year: 2026, Month: 9}, Identity: lefebvre}
		for range 2 { // the second call reuses the first's buffers
			if _, err := c.Call(context.Background(), "tok", job); err != nil {
				t.Fatal(err)
			}
			q := QueryQuotientFamilial(job.Recipient, job.Period, job.Identity)
			wantUA := ua
			if wantUA == "" {
				wantUA = "apbatch"
			}
			if want := QuotientFamilialPath + "?" + q.Encode(); got.Method != http.MethodGet || got.RequestURI != want {
				t.Errorf("%s %s\nwant GET %s", got.Method, got.RequestURI, want)
			}
			if got.Header.Get("Authorization") != "Bearer tok" || got.Header.Get("Accept") != "application/json" || got.Header.Get("User-Agent") != wantUA {
				t.Errorf("headers %v", got.Header)
			}
		}
		srv.Close()
	}
}

// TestClient_OutcomeOwnsItsText: an outcome keeps its texts when the
// client reads the next answer into the same buffer.
func TestClient_OutcomeOwnsItsText(t *testing.T) {
	answers := []string{
		`{"errors":[{"code":"37999","title":"Erreur du fournisseur","detail":"Le fournisseur a répondu une erreur.","meta":{"provider":"CNAF","retry_in":30}}]}`,
		`{"errors":[{"code":"00000","title":"xxxxxxxxxxxxxxxxxxxxxx","detail":"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy","meta":{"provider":"ZZZZ","retry_in":99}}]}`,
	}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte(answers[n%2]))
		n++
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	job := schemas.Job{Check: schemas.CheckQuotientFamilial, Recipient: "13002526500013", Identity: lefebvre}
	first, err := c.Call(context.Background(), "tok", job)
	if err != nil {
		t.Fatal(err)
	}
	want := first
	want.Code, want.Message, want.Provider = strings.Clone(first.Code), strings.Clone(first.Message), strings.Clone(first.Provider)
	for range 3 {
		if _, err := c.Call(context.Background(), "tok", job); err != nil {
			t.Fatal(err)
		}
	}
	if first.Code != "37999" || first.Provider != "CNAF" || first.Code != want.Code || first.Message != want.Message || first.Provider != want.Provider {
		t.Fatalf("first outcome changed: %+v", first)
	}
}

// oneByteReader yields its text a byte at a time, then err.
type oneByteReader struct {
	text string
	err  error
}

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.text == "" {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.text[0]
	r.text = r.text[1:]
	return 1, nil
}

func TestAppendBody_AsReadAll(t *testing.T) {
	broken := errors.New("connection reset")
	for _, tc := range []struct {
		text  string
		err   error
		limit int
	}{
		{"", io.EOF, 10}, {"abc", io.EOF, 10}, {"abcdef", io.EOF, 3}, {"abc", io.EOF, 3},
		{"abc", broken, 10}, {"abcdef", broken, 3}, {strings.Repeat("x", 5000), io.EOF, 4097},
	} {
		want, wantErr := io.ReadAll(io.LimitReader(&oneByteReader{tc.text, tc.err}, int64(tc.limit)))
		for _, dst := range [][]byte{nil, make([]byte, 0, 2), []byte("kept")} {
			prefix := string(dst)
			got, err := appendBody(dst, &oneByteReader{tc.text, tc.err}, tc.limit)
			if string(got) != prefix+string(want) || err != wantErr {
				t.Errorf("%q (%v), limit %d: %q, %v; want %q, %v", tc.text, tc.err, tc.limit, got, err, prefix+string(want), wantErr)
			}
		}
	}
}

// BenchmarkClassifyQF measures the reading of a QF answer: the envelope
// pass (data kept raw), the data pass (decodeQF), and both (classify).
func BenchmarkClassifyQF(b *testing.B) {
	a := newQFAnswer(b)
	now := time.Now()
	b.Run("envelope", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v body
			if err := unmarshalShared(a.body, &v); err != nil || len(v.Data) == 0 {
				b.Fatal(err)
			}
		}
	})
	var v body
	if err := unmarshalShared(a.body, &v); err != nil {
		b.Fatal(err)
	}
	b.Run("data", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var o Outcome
			if !decodeQF(v.Data, now, &o) {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("classify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if o := classify(http.StatusOK, a.header, a.body, now, decodeQF); o.Status != schemas.StatusOK {
				b.Fatalf("outcome %+v", o)
			}
		}
	})
}

// TestClient_ErrorCatalogue: the client reads answers with the catalogue
// version it is given: 422 00355 is an unidentified person before
// 2026-09-09, a period too old from then on.
func TestClient_ErrorCatalogue(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		w.Write([]byte(`{"errors":[{"code":"00355","title":"Impossible d'identifier l'allocataire","detail":"x","meta":{}}]}`))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		version string
		want    schemas.Status
		kind    schemas.ErrorKind
	}{
		{"2026-04-28", schemas.StatusIdentityUnresolved, schemas.KindIdentityUnresolved},
		{"2026-08-26", schemas.StatusIdentityUnresolved, schemas.KindIdentityUnresolved},
		{"2026-09-09", schemas.StatusInvalidInput, schemas.KindPeriodRejected},
		{"", schemas.StatusInvalidInput, schemas.KindPeriodRejected},
	} {
		c := &Client{BaseURL: srv.URL, ErrorCatalogue: tc.version}
		o, err := c.QuotientFamilial(context.Background(), "tok", "13002526500013", schemas.Period{}, lefebvre)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != tc.want || o.Kind != tc.kind || o.UnknownCode || o.Retryable {
			t.Errorf("catalogue %q: %s %s unknown %v", tc.version, o.Status, o.Kind, o.UnknownCode)
		}
	}
}
