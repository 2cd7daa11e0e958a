package schemas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CallRecord is one provider call, as the audit trail keeps it: who asked,
// when, for which batch and row, what the API answered. The person is only
// present as IdentityHMAC, a keyed hash that answers "was this person looked
// up" for whoever holds the key, and nothing else.
type CallRecord struct {
	At           time.Time `db:"at"`
	Tenant       string    `db:"tenant"`
	BatchID      string    `db:"batch_id"`
	RowNumber    int64     `db:"row_number"` // the lookup's first row
	Rows         int       `db:"rows"`       // rows the lookup answers
	Check        string    `db:"check_name"`
	Route        string    `db:"route"`
	HTTPStatus   int       `db:"http_status"` // 0: no answer
	ErrorCode    string    `db:"error_code"`
	RequestID    string    `db:"request_id"`
	LatencyMS    int64     `db:"latency_ms"`
	Attempt      int       `db:"attempt"`
	IdentityHMAC string    `db:"identity_hmac"`
}

// IdentityHMAC returns the keyed hash (HMAC-SHA256, hex) of an identity's
// normalised parameters: the civil identity, plus the INE or the France
// Travail username when the lookup uses them. An IdentityHasher gives the
// same hash without keying a new HMAC each time.
func IdentityHMAC(key []byte, id Identity) string {
	return (&identityHash{mac: hmac.New(sha256.New, key)}).of(id)
}

// IdentityHasher computes IdentityHMAC under one key, reusing its keyed
// hash states. Safe for concurrent use.
type IdentityHasher struct {
	key    []byte
	states sync.Pool // of *identityHash, keyed with key
}

// NewIdentityHasher returns a hasher keyed with a copy of key.
func NewIdentityHasher(key []byte) *IdentityHasher {
	return &IdentityHasher{key: slices.Clone(key)}
}

// Sum returns IdentityHMAC(key, id).
func (h *IdentityHasher) Sum(id Identity) string {
	s, _ := h.states.Get().(*identityHash)
	if s == nil {
		s = &identityHash{mac: hmac.New(sha256.New, h.key)}
	} else {
		s.mac.Reset()
	}
	sum := s.of(id)
	h.states.Put(s)
	return sum
}

// identityHash is a keyed hash and the buffers its input is normalised in.
type identityHash struct {
	mac        hash.Hash // keyed, reset
	in, prenom []byte
	sum        []byte
}

// of hashes id's parameters, each upper-cased, trimmed and followed by a
// zero byte.
func (s *identityHash) of(id Identity) string {
	in := s.in[:0]
	field := func(v string) {
		in = appendUpper(in, strings.TrimSpace(v))
		in = append(in, 0)
	}
	number := func(n int) {
		in = strconv.AppendInt(in, int64(n), 10)
		in = append(in, 0)
	}
	field(id.NomNaissance)
	field(id.NomUsage)
	s.prenom = s.prenom[:0]
	for i, p := range id.Prenoms {
		if i > 0 {
			s.prenom = append(s.prenom, ' ')
		}
		s.prenom = append(s.prenom, p...)
	}
	field(string(s.prenom))
	field(id.Sexe)
	number(id.AnneeNaissance)
	number(id.MoisNaissance)
	number(id.JourNaissance)
	field(id.CodePaysNaissance)
	field(id.CodeCommuneNaissance)
	field(id.NomCommuneNaissance)
	field(id.CodeDepartementNaissance)
	// The search keys other than the civil identity, only when set, so
	// that the hashes of civil identities stay what they were: a lookup by
	// INE or France Travail username is traced to that key.
	for _, kv := range [...][2]string{{"ine", id.INE}, {"identifiant", id.IdentifiantFT}} {
		if kv[1] != "" {
			in = append(in, kv[0]...)
			in = append(in, '=')
			field(kv[1])
		}
	}
	s.in = in
	s.mac.Write(in)
	s.sum = s.mac.Sum(s.sum[:0])
	var text [2 * sha256.Size]byte
	hex.Encode(text[:], s.sum)
	return string(text[:])
}
