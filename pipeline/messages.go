package pipeline

import (
	"fmt"
	"strings"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// The catalogue of what agents read from the command line and in exports,
// in French: run's progress and summary, the messages of run, results,
// status, cancel and token check, and the workbook's headers and sheets.
// Operators' help stays in English, beside each command's flags. Format
// strings take their arguments in the order their comment gives; error
// formats are lowercase without a final stop, as Go's errors are, and are
// printed after "apbatch <command> : ".
const (
	// MsgProgress: calls made, calls needed, results published, results
	// expected, time elapsed (FormatDuration).
	MsgProgress = "apbatch : %d/%d consultations faites, %d/%d résultats publiés, %s écoulées"
	// MsgProgressETA ends MsgProgress while the batch runs: the time left
	// (FormatETA, or "inconnue").
	MsgProgressETA = ", fin estimée : %s"
	// MsgETAUnknown is the time left before the first answers.
	MsgETAUnknown = "inconnue"
	// MsgResuming: the number of unfinished batches resumed.
	MsgResuming = "apbatch : reprise de %d lot(s) inachevé(s)"
	// MsgRepriced: the file, the batch verified before, the grid's
	// version, the new batch.
	MsgRepriced = "apbatch : %s déjà vérifié (lot %s) ; nouveaux tarifs de la grille « %s » appliqués aux résultats enregistrés, sans nouvel appel : lot %s"
	// MsgTokenExpiresSoon: who (MsgTokenOf), days left, the tenant.
	MsgTokenExpiresSoon = "apbatch : attention : %s expire dans %d jours : renouvelez-le (apbatch token check --tenant %s)"

	// MsgNoFile is printed when run has no file and nothing to resume.
	MsgNoFile = "apbatch run : donnez au moins un fichier à vérifier (par exemple deploy/samples/cantine-mairie.csv)"
	// MsgNothingToResume: the data folder.
	MsgNothingToResume = "apbatch run : aucun lot inachevé dans %s ; donnez un fichier à vérifier"
	// ErrFmtCannotRead: the path given.
	ErrFmtCannotRead = "impossible de lire %s : vérifiez le chemin"
	// ErrFmtTenantCampaign: --tenant and --campaign as given.
	ErrFmtTenantCampaign = "--tenant/--campaign : lettres, chiffres, « . », « _ » ou « - » seulement (reçu %q, %q)"
	// ErrFmtNoRecipient has no argument.
	ErrFmtNoRecipient = "--recipient : donnez le SIRET de la collectivité (14 chiffres) pour appeler la vraie API"
	// ErrFmtBadRecipient: the value given.
	ErrFmtBadRecipient = "--recipient : %q n'est pas un SIRET (14 chiffres)"
	// ErrFmtOtherChecks: the file, the campaign, the checks it was
	// verified with, the batch.
	ErrFmtOtherChecks = "%s a déjà été vérifié pour la campagne %s avec --checks %s (lot %s) ; pour d'autres vérifications du même fichier, donnez une autre --campaign"
	// ErrFmtOtherMapping: the file, the campaign, the batch.
	ErrFmtOtherMapping = "%s a déjà été vérifié pour la campagne %s (lot %s) avec une autre correspondance de colonnes ; " +
		"la nouvelle peut changer les identités lues et demande de nouveaux appels : relancez avec --force (ou une autre --campaign)"
	// ErrFmtInterrupted wraps the context's error.
	ErrFmtInterrupted = "interrompu ; relancez la même commande pour reprendre : %w"
	// ErrFmtStopped wraps the role's error.
	ErrFmtStopped = "le traitement s'est arrêté : %w"
	// ErrRoleStopped is the role's error when it gave none.
	ErrRoleStopped = "un des rôles du traitement s'est arrêté"
	// ErrFmtRefusedFiles: how many files, then their reasons, one a line.
	ErrFmtRefusedFiles = "%d fichier(s) refusé(s) :\n  %s"
	// ErrFmtOutIsFile: the path of --out.
	ErrFmtOutIsFile = "--out %s : ce chemin est un fichier ; donnez un dossier pour les fichiers Parquet, ou un nom en .xlsx pour le classeur seul"
	// ErrFmtWorkbook: the workbook's path, the cause.
	ErrFmtWorkbook = "classeur %s : %w"

	// MsgTokenOf: the tenant, where its token was found.
	MsgTokenOf = "le jeton d'API de la collectivité %q (%s)"
	// ErrFmtTokenUnusable: who (MsgTokenOf), why, the tenant.
	ErrFmtTokenUnusable = "%s est inutilisable : %s (apbatch token check --tenant %s le montre)"
	// ErrFmtTokenScopes: who, the checks it cannot serve, what each lacks,
	// its scopes, the tenant.
	ErrFmtTokenScopes = "%s ne permet pas --checks %s : %s ; ses droits sont %s. Demandez ces droits sur l'habilitation du jeton, " +
		"ou lancez sans ces vérifications (apbatch token check --tenant %s liste ce qu'il permet)"
	// MsgScopeNeeds: the check, the scopes it lacks.
	MsgScopeNeeds = "%s demande %s"
	// ErrFmtTokenExpiresFirst: who, the expiry, the calls, the rate, the
	// time they take.
	ErrFmtTokenExpiresFirst = "%s expire le %s, avant la fin du lot : environ %d appels à %.3g par seconde prennent %s. " +
		"Renouvelez d'abord le jeton, ou découpez le fichier"

	// MsgSummaryFile: the roster, the batch, its state (StateLabel).
	MsgSummaryFile = "%s (lot %s) : %s"
	// MsgSummaryRefused: the reason.
	MsgSummaryRefused = "  refusé : %s"
	// MsgSummaryRows: the rows, then the counts by status (StatusCounts).
	MsgSummaryRows = "  %d lignes : %s"
	// MsgSummaryRowsByCheck: the rows, their counts by check following.
	MsgSummaryRowsByCheck = "  %d lignes, par vérification :"
	// MsgSummaryByCheck: the check's label, the counts by status.
	MsgSummaryByCheck = "    %s : %s"
	// MsgSummaryCalls: the provider calls made, those saved.
	MsgSummaryCalls = "  %d appels au fournisseur, %d évités (personnes en double)"
	// MsgSummaryChanges: the changes, the previous campaign, their kinds.
	MsgSummaryChanges = "  %d changement(s) depuis la campagne %s%s"
	// MsgSummaryCorrections introduces the lines to correct.
	MsgSummaryCorrections = "  Lignes à corriger :"
	// MsgSummaryCorrection: the line, the column ("" for the whole line),
	// what to do.
	MsgSummaryCorrection = "    ligne %d%s : %s"
	// MsgSummaryColumn: the column as the file's header names it.
	MsgSummaryColumn = ", colonne « %s »"
	// MsgSummaryMore: the corrections not shown, the workbook's name.
	MsgSummaryMore = "    et %d autres, voir %s"
	// MsgSummaryParquet: the folder the result files were copied to.
	MsgSummaryParquet = "Fichiers Parquet des résultats copiés dans %s"
	// MsgSummaryWorkbook: the workbook's path. The summary's last line.
	MsgSummaryWorkbook = "Classeur des résultats : %s"

	// MsgStatusHeader is the header of apbatch status's table.
	MsgStatusHeader = "LOT\tCOLLECTIVITÉ\tFICHIER\tÉTAT\tRÉSULTATS\tVÉRIFIÉS\tNON TROUVÉS\tÀ CORRIGER\tERREURS\tAPPELS/S\tFIN ESTIMÉE"
	// MsgStatusStalled is a stalled batch's state.
	MsgStatusStalled = "bloqué"
	// MsgStatusNone: no batch in the ledger.
	MsgStatusNone = "aucun lot pour l'instant"
	// MsgStatusDetail: the batch, the file, its state, the reason.
	MsgStatusDetail = "%s (%s) %s : %s"
	// ErrFmtNoBatch: the batch.
	ErrFmtNoBatch = "aucun lot %s dans le registre ; apbatch status liste les lots"
	// ErrFmtNoLedger: the data folder.
	ErrFmtNoLedger = "aucun registre dans %s : lancez d'abord un lot (apbatch run), ou donnez --data-dir ou --db"

	// MsgCancelUsage is printed when cancel has no batch.
	MsgCancelUsage = "apbatch cancel : donnez l'identifiant du lot à annuler (apbatch status les liste)"
	// ErrFmtNotCancellable: the batch, its state (StateLabel).
	ErrFmtNotCancellable = "le lot %s est déjà %s : il n'y a rien à annuler"
	// MsgCancelled: the batch, the file, results published, expected.
	MsgCancelled = "lot %s (%s) annulé : %d résultats publiés sur %s attendus ; plus aucun appel ne sera fait pour ce lot."
	// MsgCancelledResults: the batch.
	MsgCancelledResults = "Résultats obtenus avant l'annulation : apbatch results -o resultats.xlsx %s"

	// MsgResultsUsage is printed when results has no -o.
	MsgResultsUsage = "apbatch results : donnez le fichier à écrire avec -o, par exemple -o resultats.xlsx"
	// MsgResultsWritten: the rows, the batch, the file, the format.
	MsgResultsWritten = "%d lignes du lot %s écrites dans %s (%s)"
	// ErrFmtNoFinishedBatch: the data folder.
	ErrFmtNoFinishedBatch = "aucun lot terminé dans %s"
	// ErrFmtFormat: the extension or format asked for.
	ErrFmtFormat = "format « %s » inconnu : les résultats s'écrivent en .xlsx (Excel), .csv ou .parquet"
	// ErrFmtNotFinished: the batch, its state (StateLabel).
	ErrFmtNotFinished = "le lot %s n'est pas terminé (état : %s)"
)

// apbatch token check's report, one line each; the labels line up.
const (
	// TokenWhat: which token (TokenDefault or TokenOfTenant), where it was
	// found.
	TokenWhat = "jeton :           %s, trouvé dans %s"
	// TokenDefault names the default token.
	TokenDefault = "jeton par défaut"
	// TokenOfTenant: the tenant.
	TokenOfTenant = "jeton de la collectivité %q"
	// TokenEmbedded is where run's embedded sandbox token comes from.
	TokenEmbedded = "le bac à sable intégré"
	// TokenEmbeddedDefault is where token check finds no token at all.
	TokenEmbeddedDefault = "le bac à sable intégré (aucun jeton donné : celui qu'apbatch run utilise avec lui)"
	// TokenClaimsUnreadable: what is wrong.
	TokenClaimsUnreadable = "contenu :         illisible : %s"
	// TokenID, TokenSubject, TokenIssued: the value.
	TokenID      = "id (jti) :        %s"
	TokenSubject = "sujet :           %s"
	TokenIssued  = "émis le :         %s"
	// TokenNoExpiry has no argument.
	TokenNoExpiry = "expire le :       (aucune expiration dans le jeton)"
	// TokenProlonged: the expiry written in the token.
	TokenProlonged = "expire le :       %s, date passée, mais l'API accepte encore le jeton : prolongé sur le portail de l'opérateur ? (la nouvelle date n'est pas écrite dans le jeton)"
	// TokenExpired: the expiry, days since.
	TokenExpired = "expire le :       %s (expiré depuis %d jours)"
	// TokenExpires: the expiry, days left.
	TokenExpires = "expire le :       %s (dans %d jours)"
	// TokenScopesAPI: the scopes, the introspection URL.
	TokenScopesAPI = "droits :          %s (selon %s)"
	// TokenScopesOwn: the scopes, why the API did not give them.
	TokenScopesOwn = "droits :          %s (lus dans le jeton : %s)"
	// TokenAllows: the checks allowed.
	TokenAllows = "permet :          %s"
	// TokenNotServed: the checks refused, each TokenLacks.
	TokenNotServed = "ne permet pas :   %s"
	// TokenLacks: the check, the scopes it lacks.
	TokenLacks = "%s (il manque %s)"
	// TokenUnusable: why.
	TokenUnusable = "erreur : le jeton est inutilisable : %s"
	// TokenCannotServe: the checks.
	TokenCannotServe = "erreur : le jeton ne permet pas --checks %s"
	// TokenRenew: days left, the reminder reached, the advice.
	TokenRenew = "attention : le jeton expire dans %d jours (moins de %d jours) : %s"
	// TokenPlanRenewal and TokenRenewNow are the advice of TokenRenew.
	TokenPlanRenewal = "prévoyez son renouvellement (prolongez-le sur le portail de l'opérateur)"
	TokenRenewNow    = "renouvelez-le maintenant"
	// TokenOK ends the report of a token fine to use.
	TokenOK = "ok"
	// TokenNone stands for an empty list.
	TokenNone = "(aucun)"
	// TokenRefused: HTTP status, code, message, TokenRenewAdvice.
	TokenRefused = "l'API le refuse (HTTP %d %s : %s)%s"
	// TokenRenewAdvice ends the reason of a refused or expired token.
	TokenRenewAdvice = " ; renouvelez-le sur le portail de l'opérateur, puis mettez à jour son fichier ou son Secret"
	// TokenNotAToken: what is wrong.
	TokenNotAToken = "ce n'est pas un jeton API Particulier (%s) ; le fichier ou la variable ne doit contenir que le jeton"
	// TokenExpiredOn: the expiry, TokenRenewAdvice.
	TokenExpiredOn = "il a expiré le %s%s"
	// TokenSandboxRefuses: the sandbox's message.
	TokenSandboxRefuses = "le bac à sable intégré n'accepte pas ce jeton (%s) ; donnez --provider-url pour interroger l'API"
	// TokenNoIntrospect: the error.
	TokenNoIntrospect = "l'API n'a pas répondu à /api/introspect : %s"
)

// Export headers and values.
const (
	HeaderStatus    = "Statut"
	HeaderQF        = "Quotient familial"
	HeaderTranche   = "Tranche"
	HeaderTarif     = "Tarif"
	HeaderReview    = "À vérifier"
	HeaderMessage   = "Message"
	HeaderResult    = "Résultat"
	ValueYes        = "oui"
	ValueNo         = "non"
	ValueNotChecked = "non vérifiée (lot annulé)"

	SheetResults = "Résultats"
	SheetSummary = "Synthèse"
)

// Synthèse sheet.
const (
	SummaryTitle       = "Synthèse du lot"
	SummaryFile        = "Fichier"
	SummaryBatch       = "Lot"
	SummaryCampaign    = "Campagne"
	SummaryState       = "État"
	SummaryGrid        = "Grille tarifaire"
	SummaryByStatus    = "Lignes par statut"
	SummaryCheck       = "Vérification"
	SummaryRows        = "Lignes"
	SummaryByTranche   = "Familles par tranche"
	SummaryFamilies    = "Familles"
	SummaryChildren    = "Lignes (enfants)"
	SummaryPrice       = "Tarif par repas"
	SummaryRevenue     = "Recette attendue par repas"
	SummaryTotal       = "Total"
	SummaryNoTranche   = "sans tranche"
	SummaryChanges     = "Changements depuis la dernière campagne"
	SummaryPrevious    = "Campagne précédente"
	SummaryChange      = "Changement"
	SummaryNoChanges   = "aucun lot d'une campagne précédente à comparer"
	SummaryLegend      = "Couleurs de la feuille Résultats"
	SummaryLegendCheck = "à vérifier ou à corriger"
	SummaryLegendNF    = "non trouvé"
)

// ChangeLabel names a diff's change kind in French.
func ChangeLabel(kind string) string {
	switch kind {
	case schemas.ChangeAdded:
		return "nouvelle ligne"
	case schemas.ChangeRemoved:
		return "ligne retirée"
	case schemas.ChangeStatus:
		return "statut"
	case schemas.ChangeTranche:
		return "tranche"
	case schemas.ChangeTarif:
		return "tarif"
	case schemas.ChangeQF:
		return "quotient familial"
	}
	return kind
}

// ChangeKindsLabel lists a diff's counts by kind, "" when none:
// " (statut 1, tranche 3)".
func ChangeKindsLabel(byKind map[string]int64) string {
	var kinds []string
	for _, k := range schemas.ChangeKinds {
		if n := byKind[k]; n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", ChangeLabel(k), n))
		}
	}
	if len(kinds) == 0 {
		return ""
	}
	return " (" + strings.Join(kinds, ", ") + ")"
}

// StatusCounts lists counts by status in French, in the order of
// schemas.Statuses, skipping zeros: "vérifié 14, non trouvé 1".
func StatusCounts(by map[schemas.Status]int64) string {
	var parts []string
	for _, s := range schemas.Statuses {
		if n := by[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s.Label(), n))
		}
	}
	if len(parts) == 0 {
		return "aucun résultat"
	}
	return strings.Join(parts, ", ")
}

// FormatDuration writes an elapsed time as agents read it: "8 s",
// "2 min 05 s", "1 h 03 min".
func FormatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min %02d s", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%d h %02d min", int(d/time.Hour), int(d%time.Hour/time.Minute))
}
