package s3

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sigV4 verifies AWS Signature Version 4 on the requests of the embedded
// server, for one access key: in the Authorization header, or in the query
// of a presigned URL. It recomputes the signature from the request as
// received (method, path as sent, query, the signed headers, the payload
// hash the client declared) and compares it in constant time; the payload
// itself is not hashed again (the SDK declares UNSIGNED-PAYLOAD or the
// body's hash: either way, without the secret no request is accepted).
type sigV4 struct {
	accessKey, secretKey string
	// now is the clock requests' dates are checked against.
	now func() time.Time
}

// maxSkew is how far a signed request's date may be from the server's
// clock, as S3 allows.
const maxSkew = 15 * time.Minute

const sigAlgorithm = "AWS4-HMAC-SHA256"

// errUnsigned and errBadSignature are the verifier's refusals; neither
// names the credentials.
var (
	errUnsigned     = errors.New("request is not signed (AWS Signature Version 4 required)")
	errBadSignature = errors.New("signature does not match")
)

// verify returns nil when r is signed with the server's credentials.
func (v *sigV4) verify(r *http.Request) error {
	if auth := r.Header.Get("Authorization"); auth != "" {
		return v.verifyHeader(r, auth)
	}
	if r.URL.Query().Get("X-Amz-Algorithm") != "" {
		return v.verifyQuery(r)
	}
	return errUnsigned
}

func (v *sigV4) verifyHeader(r *http.Request, auth string) error {
	rest, ok := strings.CutPrefix(auth, sigAlgorithm+" ")
	if !ok {
		return errBadSignature
	}
	var credential, signed, signature string
	for _, part := range strings.Split(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = val
		case "SignedHeaders":
			signed = val
		case "Signature":
			signature = val
		}
	}
	date := r.Header.Get("X-Amz-Date")
	if date == "" {
		date = r.Header.Get("Date")
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		payload = "UNSIGNED-PAYLOAD"
	}
	return v.check(r, credential, signed, signature, date, payload, 0, false)
}

func (v *sigV4) verifyQuery(r *http.Request) error {
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != sigAlgorithm {
		return errBadSignature
	}
	expires, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || expires <= 0 || expires > 7*24*3600 {
		return errBadSignature
	}
	return v.check(r, q.Get("X-Amz-Credential"), q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Signature"), q.Get("X-Amz-Date"),
		"UNSIGNED-PAYLOAD", time.Duration(expires)*time.Second, true)
}

// check recomputes the signature of r. expires is a presigned URL's
// lifetime (0 for a signed header).
func (v *sigV4) check(r *http.Request, credential, signed, signature, date, payload string, expires time.Duration, presigned bool) error {
	// Credential = <key>/<yyyymmdd>/<region>/s3/aws4_request
	parts := strings.Split(credential, "/")
	if len(parts) != 5 || parts[3] != "s3" || parts[4] != "aws4_request" || signed == "" || len(signature) != 64 {
		return errBadSignature
	}
	if subtle.ConstantTimeCompare([]byte(parts[0]), []byte(v.accessKey)) != 1 {
		return errBadSignature
	}
	at, err := time.Parse("20060102T150405Z", date)
	if err != nil || !strings.HasPrefix(date, parts[1]) {
		return errBadSignature
	}
	now := v.now()
	if presigned {
		if now.Before(at.Add(-maxSkew)) || now.After(at.Add(expires)) {
			return errBadSignature
		}
	} else if d := now.Sub(at); d > maxSkew || d < -maxSkew {
		return errBadSignature
	}
	names := strings.Split(signed, ";")
	if !sort.StringsAreSorted(names) || !contains(names, "host") {
		return errBadSignature
	}
	var canon strings.Builder
	canon.WriteString(r.Method)
	canon.WriteByte('\n')
	path, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	if path == "" || path[0] != '/' {
		path = r.URL.EscapedPath()
	}
	canon.WriteString(path)
	canon.WriteByte('\n')
	canon.WriteString(canonicalQuery(rawQuery, presigned))
	canon.WriteByte('\n')
	for _, n := range names {
		canon.WriteString(n)
		canon.WriteByte(':')
		canon.WriteString(headerValue(r, n))
		canon.WriteByte('\n')
	}
	canon.WriteByte('\n')
	canon.WriteString(signed)
	canon.WriteByte('\n')
	canon.WriteString(payload)

	sum := sha256.Sum256([]byte(canon.String()))
	scope := strings.Join(parts[1:], "/")
	toSign := sigAlgorithm + "\n" + date + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	key := hmacSHA256([]byte("AWS4"+v.secretKey), parts[1])
	for _, p := range parts[2:] {
		key = hmacSHA256(key, p)
	}
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(signature))) != 1 {
		return errBadSignature
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// headerValue is a signed header's canonical value: its values trimmed,
// inner runs of spaces folded, joined by commas. Go's server keeps Host and
// Content-Length out of the header map.
func headerValue(r *http.Request, name string) string {
	switch name {
	case "host":
		return r.Host
	case "content-length":
		if v := r.Header.Get("Content-Length"); v != "" {
			return v
		}
		if r.ContentLength >= 0 {
			return strconv.FormatInt(r.ContentLength, 10)
		}
	case "transfer-encoding":
		return strings.Join(r.TransferEncoding, ",")
	}
	vals := r.Header.Values(name)
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

// canonicalQuery sorts the query's parameters by name then value, each
// encoded as SigV4 wants (RFC 3986 unreserved characters kept, the rest
// %XX); a presigned URL's own signature is left out.
func canonicalQuery(raw string, presigned bool) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var pairs []kv
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, val, _ := strings.Cut(p, "=")
		uk, err := url.PathUnescape(k)
		if err != nil {
			uk = k
		}
		uv, err := url.PathUnescape(val)
		if err != nil {
			uv = val
		}
		if presigned && uk == "X-Amz-Signature" {
			continue
		}
		pairs = append(pairs, kv{uriEncode(uk), uriEncode(uv)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// uriEncode encodes s as SigV4's canonical query does.
func uriEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// accessDenied answers a refused request as S3 does (403, AccessDenied).
func accessDenied(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusForbidden)
	w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<Error><Code>AccessDenied</Code><Message>` + err.Error() + `</Message></Error>`))
}
