package schemas

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"

	json "github.com/segmentio/encoding/json"
)

// The hot messages (Job, Result, and the Identity a job seals) have
// hand-written encoders: appending fields to a buffer costs a fraction of
// reflection. Their output is byte for byte what json.Marshal writes
// (TestAppend* and FuzzAppend* hold them to it): a reader sees no change.

// AppendResult appends r's JSON encoding, as json.Marshal writes it, to b.
func AppendResult(b []byte, r *Result) ([]byte, error) {
	if y := r.CheckedAt.Year(); y < 0 || y > 9999 {
		// Beyond RFC 3339: json.Marshal's own error.
		v, err := json.Marshal(r)
		return append(b, v...), err
	}
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(r.Version), 10)
	b = appendField(b, "batch_id", r.BatchID)
	b = appendField(b, "tenant", r.Tenant)
	b = appendField(b, "campaign", r.Campaign)
	b = append(b, `,"row_number":`...)
	b = strconv.AppendInt(b, r.RowNumber, 10)
	b = appendOptField(b, "reference", r.Reference)
	b = appendField(b, "check", string(r.Check))
	b = appendField(b, "status", string(r.Status))
	b = appendOptField(b, "error_code", r.ErrorCode)
	b = appendOptField(b, "error_message", r.ErrorMessage)
	b = appendOptField(b, "provider", r.Provider)
	b = appendOptInt(b, "qf_value", r.QFValue)
	b = appendOptInt(b, "qf_year", r.QFYear)
	b = appendOptInt(b, "qf_month", r.QFMonth)
	b = appendOptInt(b, "qf_calc_year", r.QFCalcYear)
	b = appendOptInt(b, "qf_calc_month", r.QFCalcMonth)
	b = appendOptInt(b, "children_count", r.ChildrenCount)
	b = append(b, `,"needs_review":`...)
	b = strconv.AppendBool(b, r.NeedsReview)
	b = appendOptField(b, "request_id", r.RequestID)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	if r.Primary {
		b = append(b, `,"primary":true`...)
	}
	b = append(b, `,"checked_at":"`...)
	b = r.CheckedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendOptField(b, "tranche", r.Tranche)
	b = appendOptInt(b, "tarif_cents", r.TarifCents)
	f := &r.Facts
	b = appendOptBool(b, "beneficiary", f.Beneficiary)
	b = appendOptField(b, "benefit_since", f.BenefitSince)
	b = appendOptBool(b, "c2s_with_participation", f.C2SWithParticipation)
	b = appendOptBool(b, "benefit_increased", f.BenefitIncreased)
	b = appendOptBool(b, "scholarship_holder", f.ScholarshipHolder)
	b = appendOptField(b, "scholarship_level", f.ScholarshipLevel)
	b = appendOptField(b, "scholarship_start", f.ScholarshipStart)
	b = appendOptInt(b, "scholarship_months", f.ScholarshipMonths)
	b = appendOptBool(b, "student_enrolled", f.StudentEnrolled)
	b = appendOptField(b, "student_regime", f.StudentRegime)
	b = appendOptField(b, "establishment_uai", f.EstablishmentUAI)
	b = appendOptBool(b, "jobseeker_registered", f.JobseekerRegistered)
	b = appendOptInt(b, "jobseeker_category", f.JobseekerCategory)
	b = appendOptField(b, "jobseeker_since", f.JobseekerSince)
	b = appendOptBool(b, "pupil_enrolled", f.PupilEnrolled)
	b = appendOptField(b, "school_year", f.SchoolYear)
	b = appendOptField(b, "pupil_status", f.PupilStatus)
	b = appendOptField(b, "boarding_regime", f.BoardingRegime)
	return append(b, '}'), nil
}

// EncodeResult returns r's JSON encoding, as json.Marshal writes it.
func EncodeResult(r *Result) ([]byte, error) {
	return AppendResult(make([]byte, 0, 512), r)
}

// AppendJob appends j's JSON encoding, as json.Marshal writes it (see
// Job.MarshalJSON: a sealed job has no "identity"), to b.
func AppendJob(b []byte, j *Job) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(j.Version), 10)
	b = appendField(b, "batch_id", j.BatchID)
	b = appendField(b, "tenant", j.Tenant)
	b = appendField(b, "campaign", j.Campaign)
	b = appendField(b, "check", string(j.Check))
	b = appendField(b, "lookup_id", j.LookupID)
	b = appendField(b, "recipient", j.Recipient)
	// omitempty does not omit a struct: the zero period is {}.
	b = append(b, `,"period":{`...)
	if j.Period.Year != 0 {
		b = append(b, `"annee":`...)
		b = strconv.AppendInt(b, int64(j.Period.Year), 10)
	}
	if j.Period.Month != 0 {
		if j.Period.Year != 0 {
			b = append(b, ',')
		}
		b = append(b, `"mois":`...)
		b = strconv.AppendInt(b, int64(j.Period.Month), 10)
	}
	b = append(b, '}')
	if s := j.Sealed; s != nil {
		b = append(b, `,"sealed":{"kid":`...)
		b = appendString(b, s.KeyID)
		b = append(b, `,"dk":`...)
		b = appendBytes(b, s.DataKey)
		b = append(b, `,"n":`...)
		b = appendBytes(b, s.Nonce)
		b = append(b, `,"ct":`...)
		b = appendBytes(b, s.Ciphertext)
		b = append(b, '}')
	} else {
		b = append(b, `,"identity":`...)
		b = AppendIdentity(b, &j.Identity)
	}
	b = append(b, `,"rows":`...)
	if j.Rows == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, r := range j.Rows {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"n":`...)
			b = strconv.AppendInt(b, r.Number, 10)
			b = appendOptField(b, "ref", r.Reference)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// AppendIdentity appends id's JSON encoding, as json.Marshal writes it, to b.
func AppendIdentity(b []byte, id *Identity) []byte {
	b = append(b, `{"nom_naissance":`...)
	b = appendString(b, id.NomNaissance)
	b = appendOptField(b, "nom_usage", id.NomUsage)
	b = append(b, `,"prenoms":`...)
	if id.Prenoms == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, p := range id.Prenoms {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, p)
		}
		b = append(b, ']')
	}
	b = appendField(b, "sexe", id.Sexe)
	b = appendOptInt(b, "annee_naissance", optInt(id.AnneeNaissance))
	b = appendOptInt(b, "mois_naissance", optInt(id.MoisNaissance))
	b = appendOptInt(b, "jour_naissance", optInt(id.JourNaissance))
	b = appendField(b, "code_pays_naissance", id.CodePaysNaissance)
	b = appendOptField(b, "code_commune_naissance", id.CodeCommuneNaissance)
	b = appendOptField(b, "nom_commune_naissance", id.NomCommuneNaissance)
	b = appendOptField(b, "code_departement_naissance", id.CodeDepartementNaissance)
	b = appendOptField(b, "ine", id.INE)
	b = appendOptField(b, "identifiant_france_travail", id.IdentifiantFT)
	b = appendOptField(b, "code_etablissement", id.CodeEtablissement)
	b = appendOptField(b, "annee_scolaire", id.AnneeScolaire)
	return append(b, '}')
}

// optInt is nil for 0 (omitempty), else &v.
func optInt(v int) *int {
	if v == 0 {
		return nil
	}
	return &v
}

// appendField appends ,"name":"value".
func appendField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

// appendOptField appends ,"name":"value" unless value is "" (omitempty).
func appendOptField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	return appendField(b, name, value)
}

func appendOptInt[T int | int32 | int64](b []byte, name string, v *T) []byte {
	if v == nil {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, int64(*v), 10)
}

func appendOptBool(b []byte, name string, v *bool) []byte {
	if v == nil {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendBool(b, *v)
}

// appendBytes appends a []byte as json.Marshal does: standard base64 in
// quotes, null for nil.
func appendBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// appendString appends s quoted. A string with nothing to escape (the
// usual case: names, ids, French messages) is copied as is; any other goes
// through json.Marshal, so that escapes are exactly its own.
func appendString(b []byte, s string) []byte {
	if plain(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	v, _ := json.Marshal(s) // a string always encodes
	return append(b, v...)
}

// plain reports whether s is valid UTF-8 that json.Marshal copies
// unescaped: no control character, quote, backslash, HTML-sensitive <, >
// or &, nor U+2028 and U+2029.
func plain(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += size
	}
	return true
}
