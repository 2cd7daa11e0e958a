package schemas

import (
	"fmt"

	json "github.com/segmentio/encoding/json"
)

// EncodeResult returns r's JSON encoding, the value of a result message.
func EncodeResult(r *Result) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("schemas: encode result: %w", err)
	}
	return b, nil
}

// EncodeJob returns j's JSON encoding, the value of a job message (see
// Job.MarshalJSON: a sealed job has no "identity").
func EncodeJob(j *Job) ([]byte, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("schemas: encode job: %w", err)
	}
	return b, nil
}

// EncodeIdentity returns id's JSON encoding, as a job seals it. The caller
// clears it once sealed.
func EncodeIdentity(id *Identity) ([]byte, error) {
	b, err := json.Marshal(id)
	if err != nil {
		// The identity's values are not quoted: the error reaches logs.
		return nil, fmt.Errorf("schemas: encode identity: %T", err)
	}
	return b, nil
}
