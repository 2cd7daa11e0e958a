package schemas

import (
	json "github.com/segmentio/encoding/json"

	"errors"
	"strconv"
)

// SealedIdentity is a job's Identity encrypted for its transit through
// Kafka (envelope encryption): Ciphertext is the identity's JSON sealed with
// AES-256-GCM under a data key, with Nonce and the job's IdentityAAD; DataKey
// is that data key wrapped by the key-encryption key named KeyID (a local
// key or a KMS key). Every field is opaque to whoever lacks the
// key-encryption key.
type SealedIdentity struct {
	// KeyID names the key-encryption key that wrapped DataKey, e.g.
	// "local:3f2a…" or "kms:alias/apbatch".
	KeyID string `json:"kid"`
	// DataKey is the wrapped data key.
	DataKey []byte `json:"dk"`
	// Nonce is the AES-GCM nonce (12 bytes).
	Nonce []byte `json:"n"`
	// Ciphertext is the sealed identity JSON and its 16-byte tag.
	Ciphertext []byte `json:"ct"`
}

// ErrUnsealable is wrapped by the errors of a sealed identity that can never
// be opened by the reader at hand: its key-encryption key is not in the
// reader's keyring, or the message was altered (wrong tag, moved to another
// job). Other opening errors (a KMS out of reach) are transient.
var ErrUnsealable = errors.New("sealed identity cannot be opened: unknown key or altered message")

// IdentityAAD returns the additional authenticated data a job's identity is
// sealed with: every field a worker acts on besides the identity (tenant,
// batch, campaign, check, period, lookup, recipient, and each row's number
// and reference), so that a sealed identity copied into another job, or a
// job altered on its way (its rows pointed at other lines, its SIRET
// changed), does not open and is never called. The label names this
// binding's version: jobs sealed under an earlier one do not open either.
func (j Job) IdentityAAD() []byte {
	b := make([]byte, 0, 128+len(j.Tenant)+len(j.BatchID)+len(j.Campaign)+len(j.Recipient)+24*len(j.Rows))
	b = append(b, "apbatch.job.identity.v2"...)
	field := func(s string) {
		b = append(b, 0)
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	for _, s := range []string{j.Tenant, j.BatchID, j.Campaign, string(j.Check), j.Period.String(), j.LookupID, j.Recipient} {
		field(s)
	}
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(len(j.Rows)), 10)
	for _, r := range j.Rows {
		b = append(b, 0)
		b = strconv.AppendInt(b, r.Number, 10)
		field(r.Reference)
	}
	return b
}

// MarshalJSON encodes the job; a sealed job's plain identity is left out
// whatever it holds.
func (j Job) MarshalJSON() ([]byte, error) {
	type fields Job // without this method
	if j.Sealed == nil {
		return json.Marshal(fields(j))
	}
	return json.Marshal(struct {
		fields
		// Shadows the embedded identity, and is left out.
		Identity *Identity `json:"identity,omitempty"`
	}{fields: fields(j)})
}
