package sandbox

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

const titleUnprocessable = "Entité non traitable"

var (
	departement = regexp.MustCompile(`^(0[1-9]|[1-8][0-9]|9[0-5]|2A|2B|97[1-4]|976)$`)
	fourDigits  = regexp.MustCompile(`^[0-9]{4}$`)
)

// The checks of every identity request are written out rather than
// regular expressions (the tests hold the expressions they follow).

// isCivilityName matches ^[a-zA-ZÀ-ÖØ-öø-ÿ' -]+$: Latin letters, with
// the accented ones of Latin-1 (not × nor ÷), apostrophes, spaces and
// hyphens.
func isCivilityName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', r == '\'', r == ' ', r == '-':
		case 'À' <= r && r <= 'ÿ' && r != '×' && r != '÷':
		default:
			return false
		}
	}
	return true
}

// allDigits reports whether s is only ASCII digits.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isPaysCOG matches ^(99[0-9]{3}|92352)$: a foreign country's COG code.
func isPaysCOG(s string) bool {
	return len(s) == 5 && (s == "92352" || s[:2] == "99" && allDigits(s[2:]))
}

// isCommuneCOG matches ^([013-9][0-9]|2[AB1-9])[0-9]{3}$: a commune's
// COG code, Corsica's 2A and 2B included.
func isCommuneCOG(s string) bool {
	if len(s) != 5 || !allDigits(s[2:]) {
		return false
	}
	switch d, c := s[0], s[1]; {
	case d == '2':
		return c == 'A' || c == 'B' || '1' <= c && c <= '9'
	default:
		return '0' <= d && d <= '9' && '0' <= c && c <= '9'
	}
}

// ValidSIRET reports whether s is 14 digits passing the Luhn check (La
// Poste's establishments, SIREN 356000000, use a sum of digits divisible by 5).
func ValidSIRET(s string) bool {
	if len(s) != 14 || !allDigits(s) {
		return false
	}
	if strings.HasPrefix(s, "356000000") {
		sum := 0
		for _, c := range s {
			sum += int(c - '0')
		}
		return sum%5 == 0
	}
	sum := 0
	for i := 0; i < 14; i++ {
		d := int(s[13-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// validateQF applies the QF route's parameter rules and returns every error.
func validateQF(q map[string][]string, now time.Time) []apiError {
	var errs []apiError
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	if !ValidSIRET(get("recipient")) {
		errs = append(errs, paramError("00210", titleUnprocessable, "Le paramètre recipient n'est pas un siret valide", "recipient"))
	}
	if nom := get("nomNaissance"); nom == "" || !isCivilityName(nom) {
		errs = append(errs, paramError("00420", titleUnprocessable, "Le nom de naissance est manquant", "nomNaissance"))
	}
	if nu := get("nomUsage"); nu != "" && !isCivilityName(nu) {
		errs = append(errs, paramError("00366", titleUnprocessable, "Un ou plusieurs paramètres de civilité ne sont pas correctement formatés", "nomUsage"))
	}
	prenoms := q["prenoms[]"]
	badPrenom := len(prenoms) == 0 || len(prenoms) > 3
	for _, p := range prenoms {
		if !isCivilityName(p) {
			badPrenom = true
		}
	}
	if badPrenom {
		errs = append(errs, paramError("00367", titleUnprocessable, "Le ou les prénoms sont manquants.", "prenoms"))
	}
	// sexeEtatCivil is optional on the CNAV routes since 2026-05-28
	// (datagouv/apistration pull request #154); a value must be M or F.
	if sexe := strings.ToUpper(get("sexeEtatCivil")); sexe != "" && sexe != "M" && sexe != "F" {
		errs = append(errs, paramError("00427", titleUnprocessable, "Le sexe de l'état civil est manquant", "sexeEtatCivil"))
	}
	pays := get("codeCogInseePaysNaissance")
	if !isPaysCOG(pays) {
		errs = append(errs, paramError("00400", titleUnprocessable, "Le code pays INSEE n'est pas correctement formaté", "codeCogInseePaysNaissance"))
	}
	annee, anneeOK := dateErrors(q, now, &errs)
	commune, nomCommune, dept := get("codeCogInseeCommuneNaissance"), get("nomCommuneNaissance"), strings.ToUpper(get("codeCogInseeDepartementNaissance"))
	switch {
	case commune != "":
		if !isCommuneCOG(strings.ToUpper(commune)) {
			errs = append(errs, paramError("00365", titleUnprocessable, "Le lieu de naissance n'est pas correctement formaté", "codeCogInseeCommuneNaissance"))
		}
		if dept != "" && !departement.MatchString(dept) {
			errs = append(errs, paramError("00428", titleUnprocessable, "Le code cog du département de naissance est manquant ou invalide", "codeCogInseeDepartementNaissance"))
		}
	case nomCommune != "" || dept != "":
		if dept == "" || !departement.MatchString(dept) {
			errs = append(errs, paramError("00428", titleUnprocessable, "Le code cog du département de naissance est manquant ou invalide", "codeCogInseeDepartementNaissance"))
		}
		if nomCommune == "" || annee == 0 || !anneeOK {
			errs = append(errs, paramError("00365", titleUnprocessable, "Le lieu de naissance n'est pas correctement formaté", "nomCommuneNaissance"))
		}
	case pays == "99100":
		errs = append(errs, paramError("00365", titleUnprocessable, "Le lieu de naissance n'est pas correctement formaté", "codeCogInseeCommuneNaissance"))
	}
	if v := get("annee"); v != "" {
		y, err := strconv.Atoi(v)
		if !fourDigits.MatchString(v) || err != nil || y < now.Year()-2 || y > now.Year() {
			errs = append(errs, paramError("00356", titleUnprocessable, "L'année demandée doit être l'année en cours (N), N-1 ou N-2.", "annee"))
		}
	}
	if v := get("mois"); v != "" {
		m, err := strconv.Atoi(v)
		y, yerr := strconv.Atoi(get("annee"))
		if yerr != nil {
			y = now.Year()
		}
		if err != nil || m < 1 || m > 12 || (y == now.Year() && m > int(now.Month())) {
			errs = append(errs, paramError("00354", titleUnprocessable, "Le mois demandé est incorrect ou est dans le futur.", "mois"))
		}
	}
	return errs
}

// dateErrors checks the birth date parts and returns the year.
func dateErrors(q map[string][]string, now time.Time, errs *[]apiError) (int, bool) {
	part := func(k string, lo, hi int) (int, bool, bool) {
		v := q[k]
		if len(v) == 0 || strings.TrimSpace(v[0]) == "" {
			return 0, false, true
		}
		n, err := strconv.Atoi(strings.TrimSpace(v[0]))
		return n, true, err == nil && n >= lo && n <= hi
	}
	y, hasY, okY := part("anneeDateNaissance", 1900, now.Year())
	m, hasM, okM := part("moisDateNaissance", 1, 12)
	d, hasD, okD := part("jourDateNaissance", 1, 31)
	ok := okY && okM && okD
	if ok && hasY && hasM && hasD {
		t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
		today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		if t.Day() != d || !t.Before(today) {
			ok = false
		}
	}
	if !ok {
		*errs = append(*errs, paramError("00363", titleUnprocessable, "La date de naissance n'est pas correctement formatté", "anneeDateNaissance"))
	}
	return y, ok
}

var (
	inePatterns = []*regexp.Regexp{
		regexp.MustCompile(`^[0-9]{9}[A-HJK]{2}$`),
		regexp.MustCompile(`^[0-9]{10}[A-HJ-NPR-Z]$`),
		regexp.MustCompile(`^[0-9A-Z]{10}[0-9]$`),
		regexp.MustCompile(`^[0-9]{4}A[0-9]{5}[A-HJ-NPR-Z]$`),
	}
)

func first(q map[string][]string, k string) string {
	if v := q[k]; len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

func recipientErrors(q map[string][]string) []apiError {
	if !ValidSIRET(first(q, "recipient")) {
		return []apiError{paramError("00210", titleUnprocessable, "Le paramètre recipient n'est pas un siret valide", "recipient")}
	}
	return nil
}

// validateRecipientOnly checks the recipient of routes whose identity comes
// from elsewhere (FranceConnect).
func validateRecipientOnly(q map[string][]string, _ time.Time) []apiError { return recipientErrors(q) }

// validateINE checks the recipient and the INE (four accepted formats).
func validateINE(q map[string][]string, _ time.Time) []apiError {
	errs := recipientErrors(q)
	ine := strings.ToUpper(first(q, "ine"))
	ok := false
	for _, p := range inePatterns {
		ok = ok || p.MatchString(ine)
	}
	if !ok {
		errs = append(errs, paramError("00360", titleUnprocessable, "L'INE n'est pas correctement formaté", "ine"))
	}
	return errs
}

// validateINEv4 adds v4's optional campaignYear to the INE rules.
func validateINEv4(q map[string][]string, now time.Time) []apiError {
	return append(validateINE(q, now), campaignYearErrors(q, now)...)
}

// validateFT checks the recipient and the France Travail identifiant.
func validateFT(q map[string][]string, _ time.Time) []apiError {
	errs := recipientErrors(q)
	if first(q, "identifiant") == "" {
		errs = append(errs, paramError("00380", titleUnprocessable, "L'identifiant France Travail est manquant", "identifiant"))
	}
	return errs
}

// civilityErrors checks the identity pivot shared by CNOUS and MESRI:
// names, full birth date, optional sex and birth place.
func civilityErrors(q map[string][]string, now time.Time, maxPrenoms int, sexRequired bool) []apiError {
	errs := recipientErrors(q)
	if nom := first(q, "nomNaissance"); nom == "" || !isCivilityName(nom) {
		errs = append(errs, paramError("00420", titleUnprocessable, "Le nom de naissance est manquant", "nomNaissance"))
	}
	prenoms := q["prenoms[]"]
	bad := len(prenoms) == 0 || len(prenoms) > maxPrenoms
	for _, p := range prenoms {
		bad = bad || !isCivilityName(p)
	}
	if bad {
		errs = append(errs, paramError("00421", titleUnprocessable, "Le(s) prenom(s) est manquant", "prenoms"))
	}
	for _, k := range []string{"anneeDateNaissance", "moisDateNaissance", "jourDateNaissance"} {
		if first(q, k) == "" {
			errs = append(errs, paramError("00425", titleUnprocessable, "La date de naissance est manquante ou incomplète", k))
			return errs
		}
	}
	_, _ = dateErrors(q, now, &errs)
	sexe := strings.ToUpper(first(q, "sexeEtatCivil"))
	if (sexRequired && sexe == "") || (sexe != "" && sexe != "M" && sexe != "F") {
		errs = append(errs, paramError("00427", titleUnprocessable, "Le sexe de l'état civil est manquant", "sexeEtatCivil"))
	}
	if c := first(q, "codeCogInseeCommuneNaissance"); c != "" && !isCommuneCOG(strings.ToUpper(c)) {
		errs = append(errs, paramError("00426", titleUnprocessable, "Le code cog de la commune de naissance est manquant", "codeCogInseeCommuneNaissance"))
	}
	return errs
}

// validateCNOUS: 1–3 first names, full birth date, optional sex.
func validateCNOUS(q map[string][]string, now time.Time) []apiError {
	return append(civilityErrors(q, now, 3, false), campaignYearErrors(q, now)...)
}

// campaignYearErrors checks CNOUS v4's optional campaignYear.
func campaignYearErrors(q map[string][]string, now time.Time) []apiError {
	v := first(q, "campaignYear")
	if v == "" {
		return nil
	}
	if y, err := strconv.Atoi(v); err != nil || y < 2021 || y > now.Year()-1 {
		return []apiError{paramError("00368", titleUnprocessable, "L'année de campagne (campaignYear) n'est pas correctement formatée: doit être comprise entre 2021 et l'année courante - 1", "campaignYear")}
	}
	return nil
}

// validateMESRI: exactly one first name, full birth date, sex required.
func validateMESRI(q map[string][]string, now time.Time) []apiError {
	return civilityErrors(q, now, 1, true)
}

// validateV2 is the legacy routes' check: recipient optional, valid if given.
func validateV2(q map[string][]string, _ time.Time) []apiError {
	if first(q, "recipient") == "" {
		return nil
	}
	return recipientErrors(q)
}

var (
	uaiPattern         = regexp.MustCompile(`^[0-9]{7}[0-9A-Za-z]$`)
	schoolYearPattern  = regexp.MustCompile(`^[0-9]{4}(-[0-9]{4})?$`)
	bcnDepartementCode = regexp.MustCompile(`^(0[0-9]{2}|0[0-9][AB]|97[1-6])$`)
	bcnRegionCode      = regexp.MustCompile(`^[0-9]{2}$`)
)

// validateMEN returns the MEN scolarités rules of API version v: identity
// with a full birth date and sex, anneeScolaire, and exactly one search
// perimeter: a school (codeEtablissement) or, from v4, départements or
// régions with a degreEtablissement.
func validateMEN(v int) func(q map[string][]string, now time.Time) []apiError {
	return func(q map[string][]string, now time.Time) []apiError {
		errs := civilityErrors(q, now, 3, true)
		if y := first(q, "anneeScolaire"); !schoolYearPattern.MatchString(y) {
			errs = append(errs, paramError("00411", titleUnprocessable, "L'année scolaire doit être au format AAAA ou AAAA-AAAA", "anneeScolaire"))
		}
		uai := first(q, "codeEtablissement")
		deps, regs := q["codesBcnDepartements[]"], q["codesBcnRegions[]"]
		if v < 4 {
			deps, regs = nil, nil
		}
		switch {
		case uai != "" && (len(deps) > 0 || len(regs) > 0):
			errs = append(errs, paramError("00419", titleUnprocessable, "Un code établissement ne peut pas être combiné à un périmètre de recherche", "codeEtablissement"))
		case len(deps) > 0 && len(regs) > 0:
			errs = append(errs, paramError("00413", titleUnprocessable, "Un seul type de périmètre (départements ou régions) peut être donné", "codesBcnDepartements"))
		case uai != "":
			if !uaiPattern.MatchString(uai) {
				errs = append(errs, paramError("00410", titleUnprocessable, "Le code établissement (UAI) n'est pas correctement formaté", "codeEtablissement"))
			}
		case len(deps) > 0 || len(regs) > 0:
			if d := first(q, "degreEtablissement"); d != "1D" && d != "2D" {
				errs = append(errs, paramError("00412", titleUnprocessable, "Le degré de l'établissement doit être 1D ou 2D avec un périmètre de recherche", "degreEtablissement"))
			}
			for _, d := range deps {
				if !bcnDepartementCode.MatchString(d) {
					errs = append(errs, paramError("00416", titleUnprocessable, "Le code département BCN MEN est invalide: valeur non reconnue", "codesBcnDepartements"))
					break
				}
			}
			for _, r := range regs {
				if !bcnRegionCode.MatchString(r) {
					errs = append(errs, paramError("00417", titleUnprocessable, "Le code région BCN MEN est invalide: valeur non reconnue", "codesBcnRegions"))
					break
				}
			}
		default:
			errs = append(errs, paramError("00410", titleUnprocessable, "Le code établissement (UAI) est manquant", "codeEtablissement"))
		}
		return errs
	}
}
