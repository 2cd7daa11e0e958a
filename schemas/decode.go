package schemas

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/segmentio/encoding/iso8601"
)

// The hot messages have hand-written decoders too: they read the exact
// layout AppendResult, AppendJob and AppendIdentity write (fields in struct
// order, omitempty fields left out, no whitespace) in one pass. Anything
// else, even valid JSON (fields in another order, an unknown or repeated
// field, spaces, a null where the encoders write none, a number beyond the
// field's type, a surrogate escape...), makes them give up, and
// DecodeResult, DecodeJob and DecodeIdentity then use the library: what
// the fast path accepts it decodes exactly as the library does (FuzzDecode*
// hold it to that), and whatever it refuses keeps the library's result.

// fastDecoder reads one message laid out as the Append* encoders write it.
// Its methods do nothing once failed is set, so that a decoder reads as the
// list of fields it expects and checks failed once at the end.
type fastDecoder struct {
	b      []byte
	i      int
	failed bool
}

func (d *fastDecoder) fail() { d.failed = true }

// next reports whether the next byte is c, and consumes it if so.
func (d *fastDecoder) next(c byte) bool {
	if d.failed || d.i >= len(d.b) || d.b[d.i] != c {
		return false
	}
	d.i++
	return true
}

// expect consumes literal s, or fails.
func (d *fastDecoder) expect(s string) {
	if d.failed || !hasPrefix(d.b[d.i:], s) {
		d.fail()
		return
	}
	d.i += len(s)
}

// hasPrefix is bytes.HasPrefix for a string prefix, without converting it.
func hasPrefix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[:len(s)]) == s
}

// key consumes `"name":` if it comes next and reports whether it did; it
// does not fail when another name comes (an omitted optional field).
func (d *fastDecoder) key(name string) bool {
	if d.failed {
		return false
	}
	b := d.b[d.i:]
	n := len(name)
	if len(b) < n+3 || b[0] != '"' || string(b[1:1+n]) != name || b[1+n] != '"' || b[2+n] != ':' {
		return false
	}
	d.i += n + 3
	return true
}

// field consumes `,"name":` if it comes next and reports whether it did.
func (d *fastDecoder) field(name string) bool {
	if d.failed || d.i >= len(d.b) || d.b[d.i] != ',' {
		return false
	}
	d.i++
	if !d.key(name) {
		d.i--
		return false
	}
	return true
}

// need consumes `,"name":`, or fails.
func (d *fastDecoder) need(name string) {
	if !d.field(name) {
		d.fail()
	}
}

// end consumes the closing brace of the message, which must be its last byte.
func (d *fastDecoder) end() bool {
	return d.next('}') && d.i == len(d.b)
}

// rawString consumes a string without escapes and returns its bytes (which
// alias the message). It fails on an escape, a control character or
// invalid UTF-8; escaped reports the escape so that str can decode it.
func (d *fastDecoder) rawString() (s []byte, escaped bool) {
	if !d.next('"') {
		d.fail()
		return nil, false
	}
	b := d.b
	start, ascii := d.i, true
	for i := start; i < len(b); i++ {
		i += plainRun(b[i:])
		if i == len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			s = b[start:i]
			if !ascii && !utf8.Valid(s) {
				// The library replaces invalid bytes; the encoders never
				// write them.
				d.fail()
				return nil, false
			}
			d.i = i + 1
			return s, false
		case c == '\\':
			return nil, true
		case c < 0x20:
			d.fail()
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	d.fail()
	return nil, false
}

// plainRun returns how many bytes at the start of s a string holds as
// they are and are ASCII: from space to DEL, except the quote and the
// backslash. It tests eight bytes at a time (the "has a byte less than"
// trick: exact for bytes below 0x80, which the first term rules out).
func plainRun(s []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64(s[i:])
		quote, backslash := w^(ones*'"'), w^(ones*'\\')
		if (w|(w-ones*0x20)&^w|(quote-ones)&^quote|(backslash-ones)&^backslash)&highs != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			break
		}
	}
	return i
}

// str consumes a string and returns its value.
func (d *fastDecoder) str() string {
	s, escaped := d.rawString()
	if escaped {
		return d.unescape()
	}
	return string(s)
}

// unescape decodes the string starting at d.i (after its opening quote)
// that holds escapes. It knows the escapes JSON defines except UTF-16
// surrogates (the encoders write none: they write valid UTF-8 as is).
func (d *fastDecoder) unescape() string {
	b := d.b
	start := d.i
	out := make([]byte, 0, 64)
	i := start
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			// Escapes are ASCII: the raw bytes are valid UTF-8 when every
			// stretch between escapes is.
			if !utf8.Valid(b[start:i]) {
				d.fail()
				return ""
			}
			d.i = i + 1
			return string(out)
		case c < 0x20:
			d.fail()
			return ""
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			d.fail()
			return ""
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b[i+2:])
			if !ok || 0xd800 <= r && r <= 0xdfff {
				d.fail()
				return ""
			}
			out = utf8.AppendRune(out, r)
			i += 4
		default:
			d.fail()
			return ""
		}
		i += 2
	}
	d.fail()
	return ""
}

// hex4 reads the four hexadecimal digits of a \u escape.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// oneOf consumes a string and returns the element of known it equals
// (without allocating), or the string itself.
func oneOf[T ~string](d *fastDecoder, known []T) T {
	s, escaped := d.rawString()
	if escaped {
		return T(d.unescape())
	}
	for _, k := range known {
		if string(s) == string(k) {
			return k
		}
	}
	return T(s)
}

// integer consumes an integer written as strconv.AppendInt writes it.
// It fails on a number out of int64's range, a fraction or an exponent
// (left to the caller: what follows is then not the expected , or }),
// a leading zero or -0.
func (d *fastDecoder) integer() int64 {
	if d.failed {
		return 0
	}
	b, i := d.b, d.i
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	var v uint64
	for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		if i-start == 19 { // 19 digits always fit in a uint64
			d.fail()
			return 0
		}
		v = v*10 + uint64(b[i]-'0')
	}
	n := i - start
	switch {
	case n == 0, n > 1 && b[start] == '0', neg && v == 0,
		!neg && v > 1<<63-1, neg && v > 1<<63:
		d.fail()
		return 0
	}
	d.i = i
	if neg {
		return int64(-v)
	}
	return int64(v)
}

// number consumes an integer that must fit in T.
func number[T int | int32 | int64](d *fastDecoder) T {
	v := d.integer()
	if int64(T(v)) != v {
		d.fail()
	}
	return T(v)
}

// boolean consumes true or false.
func (d *fastDecoder) boolean() bool {
	if d.failed || d.i >= len(d.b) {
		d.fail()
		return false
	}
	switch b := d.b[d.i:]; {
	case hasPrefix(b, "true"):
		d.i += 4
		return true
	case hasPrefix(b, "false"):
		d.i += 5
		return false
	}
	d.fail()
	return false
}

// timestamp consumes a time as the library reads it: the string up to
// the next quote, parsed by its iso8601 package.
func (d *fastDecoder) timestamp() time.Time {
	if !d.next('"') {
		d.fail()
		return time.Time{}
	}
	b := d.b[d.i:]
	n := bytes.IndexByte(b, '"')
	if n < 0 || bytes.IndexByte(b[:n], '\\') >= 0 {
		d.fail()
		return time.Time{}
	}
	// iso8601.Parse keeps no reference to its input (the library hands it
	// the message's bytes the same way): no copy is needed.
	t, err := iso8601.Parse(unsafe.String(unsafe.SliceData(b), n))
	if err != nil {
		d.fail()
		return time.Time{}
	}
	d.i += n + 1
	return t
}

// base64Bytes consumes a []byte as the library reads it: null, or a
// standard base64 string (without escapes here).
func (d *fastDecoder) base64Bytes() []byte {
	if d.failed {
		return nil
	}
	if hasPrefix(d.b[d.i:], "null") {
		d.i += 4
		return nil
	}
	if !d.next('"') {
		d.fail()
		return nil
	}
	// No need to scan the string for escapes or control characters: the
	// decoder refuses a backslash and any byte beyond its alphabet, except
	// the line breaks it skips, which JSON refuses unescaped.
	s := d.b[d.i:]
	n := bytes.IndexByte(s, '"')
	if n < 0 {
		d.fail()
		return nil
	}
	s = s[:n]
	if bytes.IndexByte(s, '\n') >= 0 || bytes.IndexByte(s, '\r') >= 0 {
		d.fail()
		return nil
	}
	d.i += n + 1
	v := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(v, s)
	if err != nil {
		d.fail()
		return nil
	}
	return v[:n]
}

// optString reads an omitempty string field.
func (d *fastDecoder) optString(name string) string {
	if !d.field(name) {
		return ""
	}
	return d.str()
}

// optBool reads an omitempty *bool field.
func (d *fastDecoder) optBool(name string) *bool {
	if !d.field(name) {
		return nil
	}
	v := d.boolean()
	return &v
}

// optNumber reads an omitempty pointer to an integer field.
func optNumber[T int32 | int64](d *fastDecoder, name string) *T {
	if !d.field(name) {
		return nil
	}
	v := number[T](d)
	return &v
}

// Frequent values shared rather than copied: Result.Provider's, and the
// birth country of most identities.
var (
	providers = []string{"CNAF", "MSA"}
	france    = []string{"99100"}
)

// fastDecodeResult reads b as AppendResult writes it. ok is false when b
// is laid out otherwise: only the library can then tell what it holds.
func fastDecodeResult(b []byte) (r Result, ok bool) {
	d := fastDecoder{b: b}
	d.expect(`{"v":`)
	r.Version = number[int](&d)
	d.need("batch_id")
	r.BatchID = d.str()
	d.need("tenant")
	r.Tenant = d.str()
	d.need("campaign")
	r.Campaign = d.str()
	d.need("row_number")
	r.RowNumber = number[int64](&d)
	r.Reference = d.optString("reference")
	d.need("check")
	r.Check = oneOf(&d, Checks)
	d.need("status")
	r.Status = oneOf(&d, Statuses)
	r.ErrorCode = d.optString("error_code")
	r.ErrorMessage = d.optString("error_message")
	if d.field("provider") {
		r.Provider = oneOf(&d, providers)
	}
	r.QFValue = optNumber[int64](&d, "qf_value")
	r.QFYear = optNumber[int32](&d, "qf_year")
	r.QFMonth = optNumber[int32](&d, "qf_month")
	r.QFCalcYear = optNumber[int32](&d, "qf_calc_year")
	r.QFCalcMonth = optNumber[int32](&d, "qf_calc_month")
	r.ChildrenCount = optNumber[int32](&d, "children_count")
	d.need("needs_review")
	r.NeedsReview = d.boolean()
	r.RequestID = d.optString("request_id")
	d.need("attempts")
	r.Attempts = number[int32](&d)
	if d.field("primary") {
		r.Primary = d.boolean()
	}
	d.need("checked_at")
	r.CheckedAt = d.timestamp()
	r.Tranche = d.optString("tranche")
	r.TarifCents = optNumber[int64](&d, "tarif_cents")
	f := &r.Facts
	f.Beneficiary = d.optBool("beneficiary")
	f.BenefitSince = d.optString("benefit_since")
	f.C2SWithParticipation = d.optBool("c2s_with_participation")
	f.BenefitIncreased = d.optBool("benefit_increased")
	f.ScholarshipHolder = d.optBool("scholarship_holder")
	f.ScholarshipLevel = d.optString("scholarship_level")
	f.ScholarshipStart = d.optString("scholarship_start")
	f.ScholarshipMonths = optNumber[int32](&d, "scholarship_months")
	f.StudentEnrolled = d.optBool("student_enrolled")
	f.StudentRegime = d.optString("student_regime")
	f.EstablishmentUAI = d.optString("establishment_uai")
	f.JobseekerRegistered = d.optBool("jobseeker_registered")
	f.JobseekerCategory = optNumber[int32](&d, "jobseeker_category")
	f.JobseekerSince = d.optString("jobseeker_since")
	f.PupilEnrolled = d.optBool("pupil_enrolled")
	f.SchoolYear = d.optString("school_year")
	f.PupilStatus = d.optString("pupil_status")
	f.BoardingRegime = d.optString("boarding_regime")
	if !d.end() || d.failed {
		return Result{}, false
	}
	return r, true
}

// fastDecodeJob reads b as AppendJob writes it; ok is false when b is laid
// out otherwise.
func fastDecodeJob(b []byte) (j Job, ok bool) {
	d := fastDecoder{b: b}
	d.expect(`{"v":`)
	j.Version = number[int](&d)
	d.need("batch_id")
	j.BatchID = d.str()
	d.need("tenant")
	j.Tenant = d.str()
	d.need("campaign")
	j.Campaign = d.str()
	d.need("check")
	j.Check = oneOf(&d, Checks)
	d.need("lookup_id")
	j.LookupID = d.str()
	d.need("recipient")
	j.Recipient = d.str()
	d.need("period")
	d.expect("{")
	if d.key("annee") {
		j.Period.Year = number[int](&d)
		if d.field("mois") {
			j.Period.Month = number[int](&d)
		}
	} else if d.key("mois") {
		j.Period.Month = number[int](&d)
	}
	d.expect("}")
	switch {
	case d.field("sealed"):
		j.Sealed = d.sealed()
	case d.field("identity"):
		d.identity(&j.Identity)
	default:
		d.fail()
	}
	d.need("rows")
	j.Rows = d.rows()
	if !d.end() || d.failed {
		return Job{}, false
	}
	return j, true
}

// fastDecodeIdentity reads b as AppendIdentity writes it; ok is false when
// b is laid out otherwise. Its strings are copies: b can be cleared after.
func fastDecodeIdentity(b []byte) (id Identity, ok bool) {
	d := fastDecoder{b: b}
	d.identity(&id)
	if d.failed || d.i != len(b) {
		return Identity{}, false
	}
	return id, true
}

// sealed reads a SealedIdentity object.
func (d *fastDecoder) sealed() *SealedIdentity {
	var s SealedIdentity
	d.expect(`{"kid":`)
	s.KeyID = d.str()
	d.need("dk")
	s.DataKey = d.base64Bytes()
	d.need("n")
	s.Nonce = d.base64Bytes()
	d.need("ct")
	s.Ciphertext = d.base64Bytes()
	d.expect("}")
	return &s
}

// identity reads an Identity object as AppendIdentity writes it.
func (d *fastDecoder) identity(id *Identity) {
	d.expect(`{"nom_naissance":`)
	id.NomNaissance = d.str()
	id.NomUsage = d.optString("nom_usage")
	d.need("prenoms")
	id.Prenoms = d.strings()
	d.need("sexe")
	id.Sexe = d.str()
	if d.field("annee_naissance") {
		id.AnneeNaissance = number[int](d)
	}
	if d.field("mois_naissance") {
		id.MoisNaissance = number[int](d)
	}
	if d.field("jour_naissance") {
		id.JourNaissance = number[int](d)
	}
	d.need("code_pays_naissance")
	id.CodePaysNaissance = oneOf(d, france)
	id.CodeCommuneNaissance = d.optString("code_commune_naissance")
	id.NomCommuneNaissance = d.optString("nom_commune_naissance")
	id.CodeDepartementNaissance = d.optString("code_departement_naissance")
	id.INE = d.optString("ine")
	id.IdentifiantFT = d.optString("identifiant_france_travail")
	id.CodeEtablissement = d.optString("code_etablissement")
	id.AnneeScolaire = d.optString("annee_scolaire")
	d.expect("}")
}

// strings reads null or an array of strings; [] is an empty, non-nil
// slice, as the library makes it.
func (d *fastDecoder) strings() []string {
	if d.failed {
		return nil
	}
	if hasPrefix(d.b[d.i:], "null") {
		d.i += 4
		return nil
	}
	d.expect("[")
	v := []string{}
	if d.next(']') {
		return v
	}
	for !d.failed {
		v = append(v, d.str())
		if !d.next(',') {
			break
		}
	}
	d.expect("]")
	return v
}

// rows reads null or the array of a job's rows.
func (d *fastDecoder) rows() []RowRef {
	if d.failed {
		return nil
	}
	if hasPrefix(d.b[d.i:], "null") {
		d.i += 4
		return nil
	}
	d.expect("[")
	v := []RowRef{}
	if d.next(']') {
		return v
	}
	for !d.failed {
		var r RowRef
		d.expect(`{"n":`)
		r.Number = number[int64](d)
		r.Reference = d.optString("ref")
		d.expect("}")
		v = append(v, r)
		if !d.next(',') {
			break
		}
	}
	d.expect("]")
	return v
}
