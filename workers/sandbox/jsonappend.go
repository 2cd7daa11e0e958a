package sandbox

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// The synthetic answers are written by appending to a byte slice rather
// than by marshalling maps: they are the sandbox's hottest path. Their
// bytes are those json.Marshal gives for the same maps (keys in sorted
// order, HTML characters escaped), which the tests check.

// appendJSONString appends s as a JSON string, escaped as json.Marshal
// escapes it.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendJSONText(b, s)
	return append(b, '"')
}

// appendJSONText appends the escaped content of s, without quotes. Text
// that needs no escaping (the synthetic names and codes) is copied; any
// other is left to encoding/json.
func appendJSONText(b []byte, s string) []byte {
	if !needsEscape(s) {
		return append(b, s...)
	}
	q, err := json.Marshal(s)
	if err != nil || len(q) < 2 {
		// A string always marshals; keep the answer well-formed anyway.
		return b
	}
	return append(b, q[1:len(q)-1]...)
}

// needsEscape reports whether json.Marshal would write s other than as
// its own bytes: control or HTML characters, quotes, backslashes, invalid
// UTF-8, and the line and paragraph separators U+2028 and U+2029.
func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			return true
		}
		i += size
	}
	return false
}

// appendJSONNullableInt appends *v, or null when v is nil.
func appendJSONNullableInt(b []byte, v *int) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, int64(*v), 10)
}

// appendJSONDate appends t as a "2006-01-02" JSON string.
func appendJSONDate(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, "2006-01-02")
	return append(b, '"')
}
