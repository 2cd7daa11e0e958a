package schemas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
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
// Travail username when the lookup uses them.
func IdentityHMAC(key []byte, id Identity) string {
	m := hmac.New(sha256.New, key)
	for _, v := range []string{id.NomNaissance, id.NomUsage, strings.Join(id.Prenoms, " "), id.Sexe,
		strconv.Itoa(id.AnneeNaissance), strconv.Itoa(id.MoisNaissance), strconv.Itoa(id.JourNaissance),
		id.CodePaysNaissance, id.CodeCommuneNaissance, id.NomCommuneNaissance, id.CodeDepartementNaissance} {
		m.Write([]byte(strings.ToUpper(strings.TrimSpace(v))))
		m.Write([]byte{0})
	}
	// The search keys other than the civil identity, only when set, so
	// that the hashes of civil identities stay what they were: a lookup by
	// INE or France Travail username is traced to that key.
	for _, kv := range [][2]string{{"ine", id.INE}, {"identifiant", id.IdentifiantFT}} {
		if kv[1] != "" {
			m.Write([]byte(kv[0] + "=" + strings.ToUpper(strings.TrimSpace(kv[1]))))
			m.Write([]byte{0})
		}
	}
	return hex.EncodeToString(m.Sum(nil))
}
