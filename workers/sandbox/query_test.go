package sandbox

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
)

var querySamples = []string{"", "a=1", "a=1&a=2&b=3&a=4", "recipient=13002526500013&prenoms%5B%5D=ALEXIS&prenoms%5B%5D=G%C3%89R%C3%94ME&nomNaissance=LE+GALL",
	"a", "a=", "=1", "&&a=1&", "a=1;b=2&c=3", "a=%zz&b=2", "a%=1&b=2", "a=b=c", "a=1&" + strings.Repeat("x=1&", maxFastParams+1)}

// TestQueryValues_AsURLQuery: the parse is URL.Query's.
func TestQueryValues_AsURLQuery(t *testing.T) {
	for _, raw := range querySamples {
		if got, want := queryValues(raw), (&url.URL{RawQuery: raw}).Query(); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %v, want %v", raw, got, want)
		}
	}
}

func FuzzQueryValues(f *testing.F) {
	for _, s := range querySamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if got, want := queryValues(raw), (&url.URL{RawQuery: raw}).Query(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: %v, want %v", raw, got, want)
		}
	})
}
