package sandbox

import (
	"net/url"
	"strings"
)

// maxFastParams is the most parameters queryValues parses itself; a longer
// query is left to url.ParseQuery (and its own limit on parameters).
const maxFastParams = 64

// queryValues parses a raw query as URL.Query does: pairs split on "&",
// a pair with a semicolon or a bad escape skipped, each key's values in
// order. All value lists share one array, one allocation where
// url.ParseQuery makes one per key.
func queryValues(raw string) url.Values {
	if strings.Count(raw, "&")+1 > maxFastParams {
		q, _ := url.ParseQuery(raw)
		return q
	}
	var keysBuf, valuesBuf [maxFastParams]string
	keys, values := keysBuf[:0], valuesBuf[:0]
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			continue
		}
		if v, err = url.QueryUnescape(v); err != nil {
			continue
		}
		keys, values = append(keys, k), append(values, v)
	}
	q := make(url.Values, len(keys))
	all := make([]string, 0, len(values))
	for i, k := range keys {
		if _, done := q[k]; done {
			continue
		}
		from := len(all)
		for j := i; j < len(keys); j++ {
			if keys[j] == k {
				all = append(all, values[j])
			}
		}
		// A full slice expression: appending to one list never
		// overwrites the next.
		q[k] = all[from:len(all):len(all)]
	}
	return q
}
