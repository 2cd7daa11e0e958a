package sandbox

import "net/http"

// apiError is one entry of a v3 JSON:API error body. Source is omitted when
// nil, as production omits it.
type apiError struct {
	Code   string         `json:"code"`
	Title  string         `json:"title"`
	Detail string         `json:"detail"`
	Source map[string]any `json:"source,omitempty"`
	Meta   map[string]any `json:"meta"`
}

func paramError(code, title, detail, param string) apiError {
	return apiError{Code: code, Title: title, Detail: detail, Source: map[string]any{"parameter": param}, Meta: map[string]any{}}
}

// Wording from the operator's error catalogue.
var (
	errTokenInvalid = apiError{Code: "00101", Title: "Interdit", Detail: "Votre token n'est pas valide ou n'est pas renseigné",
		Source: map[string]any{"parameter": "token"}, Meta: map[string]any{}}
	errTokenExpired = apiError{Code: "00103", Title: "Jeton expiré",
		Detail: "Votre token est expiré. Vous devez refaire une demande à API Particulier, un guide est disponible sur https://particulier.api.gouv.fr/faq#comment-renouveler-mon-jeton-arrivant-a-expiration",
		Source: map[string]any{"parameter": "token"}, Meta: map[string]any{}}
	errTokenBlacklisted = apiError{Code: "00105", Title: "Jeton sur liste noire",
		Detail: "Votre jeton est sur liste noire, celui-ci a certainement été divulgué sur un canal non-sécurisé. Vous pouvez trouver un jeton valide sur votre espace personnel.",
		Source: map[string]any{"parameter": "token"}, Meta: map[string]any{}}
	errInsufficientScopes = apiError{Code: "00100", Title: "Privilèges insuffisants",
		Detail: "Votre token est valide mais vos privilèges sont insuffisants. Listez vos privilèges sur /api/introspect",
		Source: map[string]any{"parameter": "token"}, Meta: map[string]any{}}
	errTooManyRequests = apiError{Code: "00429", Title: "Trop de requêtes", Detail: "Vous avez effectué trop de requêtes", Meta: map[string]any{}}
)

func writeErrors(w http.ResponseWriter, status int, errs ...apiError) int {
	return writeJSON(w, status, map[string]any{"errors": errs})
}

// writeV2Error writes the legacy v2 flat error body.
func writeV2Error(w http.ResponseWriter, status int, kind, detail string) int {
	return writeJSON(w, status, map[string]string{"error": kind, "reason": detail, "message": detail})
}
