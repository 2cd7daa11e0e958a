package sandbox

import (
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// fnv64a is hash/fnv's 64-bit FNV-1a, on the stack.
type fnv64a uint64

func newFNV64a() fnv64a { return 14695981039346656037 }

func (h *fnv64a) writeString(s string) {
	for i := 0; i < len(s); i++ {
		*h ^= fnv64a(s[i])
		*h *= 1099511628211
	}
}

func (h *fnv64a) writeBytes(b []byte) {
	for _, c := range b {
		*h ^= fnv64a(c)
		*h *= 1099511628211
	}
}

// writeInt writes n in decimal, as fmt's %d does.
func (h *fnv64a) writeInt(n int) {
	var buf [20]byte
	h.writeBytes(strconv.AppendInt(buf[:0], int64(n), 10))
}

// writeLower writes strings.ToLower(s).
func (h *fnv64a) writeLower(s string) {
	var buf [64]byte
	h.writeBytes(appendLower(buf[:0], s))
}

// appendLower appends strings.ToLower(s) to b: each rune lower-cased,
// invalid UTF-8 bytes as U+FFFD.
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		b = utf8.AppendRune(b, unicode.ToLower(r))
		i += size
	}
	return b
}

// paramsKey hashes the parameters of a request that designate a person:
// "key=values joined by commas;" for each of keyParams, then
// "prenom=first first name;".
func paramsKey(q map[string][]string) uint64 {
	h := newFNV64a()
	for _, k := range keyParams {
		h.writeString(k)
		h.writeString("=")
		for i, v := range q[k] {
			if i > 0 {
				h.writeString(",")
			}
			h.writeString(v)
		}
		h.writeString(";")
	}
	if p := q["prenoms"]; len(p) > 0 {
		h.writeString("prenom=")
		h.writeString(p[0])
		h.writeString(";")
	}
	return uint64(h)
}

// identityKey is paramsKey of the parameter set that designates someone
// born on birth whose roster carries dateParts of the date (3: the day, 2:
// the month, 1: the year only), computed without building the set.
func identityKey(nom, sexe, prenom string, birth time.Time, dateParts int) uint64 {
	h := newFNV64a()
	h.writeString("nomNaissance=")
	h.writeLower(nom)
	h.writeString(";sexeEtatCivil=")
	h.writeLower(sexe)
	h.writeString(";anneeDateNaissance=")
	h.writeInt(birth.Year())
	h.writeString(";moisDateNaissance=")
	if dateParts >= 2 {
		h.writeInt(int(birth.Month()))
	}
	h.writeString(";jourDateNaissance=")
	if dateParts == 3 {
		h.writeInt(birth.Day())
	}
	h.writeString(";prenom=")
	h.writeLower(prenom)
	h.writeString(";")
	return uint64(h)
}
