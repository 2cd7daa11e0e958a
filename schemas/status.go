package schemas

// Status is the outcome of one input row. Every input row ends with exactly
// one result carrying one of these statuses.
type Status string

// Result statuses.
const (
	// StatusOK: the provider answered 200; the result carries its values.
	StatusOK Status = "ok"
	// StatusNotFound: the person was identified but has no dossier (404).
	StatusNotFound Status = "not_found"
	// StatusIdentityUnresolved: the provider could not identify the person (422 00355).
	StatusIdentityUnresolved Status = "identity_unresolved"
	// StatusInvalidInput: the row failed client-side validation, or the
	// provider rejected a parameter (422).
	StatusInvalidInput Status = "invalid_input"
	// StatusProviderError: a non-retryable provider error, or retries exhausted.
	StatusProviderError Status = "provider_error"
	// StatusUnauthorized: the token was refused (401) or lacks the scopes (403).
	StatusUnauthorized Status = "unauthorized"
)

// Statuses lists every status, in the order summaries print them.
var Statuses = []Status{StatusOK, StatusNotFound, StatusIdentityUnresolved, StatusInvalidInput, StatusProviderError, StatusUnauthorized}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	for _, k := range Statuses {
		if s == k {
			return true
		}
	}
	return false
}

// Client-side error codes, used in results when no provider code applies.
// Provider codes (5 characters, e.g. "00355", "37003") are copied as received.
const (
	// CodeInvalidRow marks a row rejected by apbatch's own validation.
	CodeInvalidRow = "APB_INVALID_ROW"
	// CodeRetriesExhausted marks a retryable provider failure that did not
	// succeed within the retry budget; the last provider code is in the message.
	CodeRetriesExhausted = "APB_RETRIES_EXHAUSTED"
	// CodeTransport marks a network failure with no HTTP answer.
	CodeTransport = "APB_TRANSPORT"
	// CodeBadResponse marks a provider answer apbatch could not decode.
	CodeBadResponse = "APB_BAD_RESPONSE"
)

// CodeNoToken marks rows of a tenant for which no API token is configured.
const CodeNoToken = "APB_NO_TOKEN"

// CodeSeal marks rows whose job's sealed identity this worker could not
// open: its key is not in the worker's keyring (rotated out, another
// deployment's) or the message was altered.
const CodeSeal = "APB_SEAL"

// Label names s in French, as agents read it.
func (s Status) Label() string {
	switch s {
	case StatusOK:
		return "vérifié"
	case StatusNotFound:
		return "non trouvé"
	case StatusIdentityUnresolved:
		return "identité à préciser"
	case StatusInvalidInput:
		return "ligne à corriger"
	case StatusProviderError:
		return "erreur du fournisseur"
	case StatusUnauthorized:
		return "non autorisé"
	}
	return string(s)
}

// ReviewReason says why a quotient familial result needs review (its
// NeedsReview), in French, for the agent who reads it; "" when it needs
// none. qf is the value the provider returned (nil: none).
func ReviewReason(qf *int64) string {
	switch {
	case qf == nil:
		return "la CAF ou la MSA n'a pas donné de quotient familial pour ce mois : demandez à la famille son attestation, ou vérifiez un autre mois (--period)"
	case *qf == 0:
		return "quotient familial égal à 0 (ressources non déclarées ou droits en cours d'étude) : vérifiez la situation de la famille avant d'appliquer un tarif"
	}
	return ""
}
