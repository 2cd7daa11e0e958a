package schemas

import (
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// sameResultDecode fails unless DecodeResult gives exactly the library's
// value and error for b.
func sameResultDecode(t *testing.T, b []byte) {
	t.Helper()
	want, werr := decodeResultJSON(b)
	got, gerr := DecodeResult(b)
	sameOutcome(t, b, got, gerr, want, werr)
}

// sameJobDecode is sameResultDecode for jobs.
func sameJobDecode(t *testing.T, b []byte) {
	t.Helper()
	want, werr := decodeJobJSON(b)
	got, gerr := DecodeJob(b)
	sameOutcome(t, b, got, gerr, want, werr)
}

// sameIdentityDecode is sameResultDecode for sealed identities.
func sameIdentityDecode(t *testing.T, b []byte) {
	t.Helper()
	want, werr := decodeIdentityJSON(b)
	got, gerr := DecodeIdentity(b)
	sameOutcome(t, b, got, gerr, want, werr)
}

func sameOutcome[T any](t *testing.T, b []byte, got T, gerr error, want T, werr error) {
	t.Helper()
	if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
		t.Fatalf("%q: error %v, library's %v", b, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %+v\nwant %+v (library)", b, got, want)
	}
}

// fields fills a message's fields from a fuzzer's values: bit i of present
// says whether the i-th field (depth first) is set.
type fields struct {
	s1, s2  string
	n       int64
	m       int32
	present uint64
	i       int
}

func (f *fields) next() bool {
	f.i++
	return f.present>>(f.i%64)&1 == 1
}

func (f *fields) str() string {
	if f.i%2 == 0 {
		return f.s1
	}
	return f.s2
}

func (f *fields) int() int64 {
	if f.i%2 == 0 {
		return f.n
	}
	return int64(f.m)
}

// fill sets v's fields (times excepted) with reflection: the decoders
// under test are hand-written, the test that drives them is not, so that a
// field added to a message is fuzzed without touching the test.
func (f *fields) fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			return
		}
		for i := range v.NumField() {
			f.fill(v.Field(i))
		}
	case reflect.Pointer:
		if f.next() {
			v.Set(reflect.New(v.Type().Elem()))
			f.fill(v.Elem())
		}
	case reflect.Slice:
		switch on, empty := f.next(), f.next(); {
		case on:
			v.Set(reflect.MakeSlice(v.Type(), 2, 2))
			if v.Type().Elem().Kind() == reflect.Uint8 {
				v.SetBytes([]byte(f.str()))
				return
			}
			f.fill(v.Index(0))
			f.fill(v.Index(1))
		case empty:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		}
	case reflect.String:
		if f.next() {
			v.SetString(f.str())
		}
	case reflect.Int, reflect.Int32, reflect.Int64:
		if f.next() {
			v.SetInt(f.int())
		}
	case reflect.Bool:
		v.SetBool(f.next())
	default:
		panic("fields: no filler for " + v.Type().String())
	}
}

// validStrings reports whether s1 and s2 survive encoding (json.Marshal
// replaces invalid UTF-8).
func (f *fields) validStrings() bool { return utf8.ValidString(f.s1) && utf8.ValidString(f.s2) }

// resultSeeds are encoder outputs the fuzzers start from.
func resultSeeds(t testing.TB) [][]byte {
	t.Helper()
	full := fullResult()
	full.Provider = "MSA"
	odd := fullResult()
	odd.Reference, odd.ErrorMessage, odd.Tenant = "a\"b\\c\n\t<&>\u2028", "é à « » ’ 💶 \x00\x1f\x7f", "\xff\xfe"
	odd.CheckedAt = time.Date(2026, 1, 2, 3, 4, 5, 60, time.FixedZone("", -(9*3600+30*60)))
	neg := Result{Version: -1, RowNumber: -1 << 63, Attempts: 1<<31 - 1, QFValue: ptrTo[int64](1<<63 - 1),
		QFYear: ptrTo[int32](-1 << 31), Check: "other", Status: "", CheckedAt: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)}
	var out [][]byte
	for _, r := range []Result{sampleResult(), full, {}, odd, neg} {
		b, err := AppendResult(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// jobSeeds are encoder outputs the fuzzers start from.
func jobSeeds(t testing.TB) [][]byte {
	t.Helper()
	id := Identity{NomNaissance: "LEFEBVRE", NomUsage: "MARTIN", Prenoms: []string{"ALEXIS", "JEAN PIERRE"}, Sexe: "F",
		AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480",
		NomCommuneNaissance: "Charleville", CodeDepartementNaissance: "08", INE: "123456789AB", IdentifiantFT: "jdupont",
		CodeEtablissement: "0751234A", AnneeScolaire: "2026-2027"}
	plain := sampleJob()
	plain.Version, plain.Sealed, plain.Identity = 1, nil, id
	odd := plain
	odd.Identity.NomNaissance, odd.Identity.Prenoms, odd.Period = "ÉLO\"ÏSE\\ \u2028 <>&", []string{}, Period{Month: 3}
	odd.Rows = []RowRef{{Number: 1}, {Number: -2, Reference: "R\n2"}, {Number: 1<<63 - 1}}
	empty := sampleJob()
	empty.Sealed, empty.Period, empty.Rows = &SealedIdentity{Nonce: []byte{}}, Period{Year: 2026}, []RowRef{}
	var out [][]byte
	for _, j := range []Job{sampleJob(), plain, {}, odd, empty} {
		out = append(out, AppendJob(nil, &j))
	}
	return out
}

func TestFastDecode_EncoderOutput(t *testing.T) {
	for _, b := range resultSeeds(t) {
		if _, ok := fastDecodeResult(b); !ok {
			t.Errorf("fast path refused %s", b)
		}
		sameResultDecode(t, b)
	}
	for _, b := range jobSeeds(t) {
		if _, ok := fastDecodeJob(b); !ok {
			t.Errorf("fast path refused %s", b)
		}
		sameJobDecode(t, b)
	}
	for _, b := range identitySeeds(t) {
		if _, ok := fastDecodeIdentity(b); !ok {
			t.Errorf("fast path refused %s", b)
		}
		sameIdentityDecode(t, b)
	}
}

// identitySeeds are the identities of the plain job seeds.
func identitySeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, b := range jobSeeds(t) {
		j, err := decodeJobJSON(b)
		if err == nil && j.Sealed == nil {
			out = append(out, AppendIdentity(nil, &j.Identity))
		}
	}
	if len(out) < 2 {
		t.Fatalf("%d identity seeds", len(out))
	}
	return out
}

// TestFastDecode_Fallback: valid JSON in another layout, or values the
// fast path leaves to the library, give the library's outcome.
func TestFastDecode_Fallback(t *testing.T) {
	r := sampleResult()
	res, err := AppendResult(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	j := sampleJob()
	job := AppendJob(nil, &j)
	for _, tc := range []struct {
		name        string
		old, new    string
		fast, isJob bool
	}{
		{name: "leading space", old: `{`, new: ` {`},
		{name: "space after colon", old: `"tenant":`, new: `"tenant": `},
		{name: "trailing space", old: `Z"}`, new: `Z"} `},
		{name: "trailing byte", old: `Z"}`, new: `Z"}x`},
		{name: "fields swapped", old: `"tenant":"ville-a","campaign":"2026-09"`, new: `"campaign":"2026-09","tenant":"ville-a"`},
		{name: "unknown field", old: `"tenant"`, new: `"x":1,"tenant"`},
		{name: "repeated field", old: `"tenant":"ville-a"`, new: `"tenant":"ville-a","tenant":"ville-b"`},
		{name: "key case", old: `"tenant"`, new: `"Tenant"`},
		{name: "null pointer", old: `"qf_value":850`, new: `"qf_value":null`},
		{name: "null string", old: `"provider":"CNAF"`, new: `"provider":null`},
		{name: "float", old: `"qf_value":850`, new: `"qf_value":850.0`},
		{name: "exponent", old: `"qf_value":850`, new: `"qf_value":8e2`},
		{name: "minus zero", old: `"qf_value":850`, new: `"qf_value":-0`},
		{name: "leading zero", old: `"qf_value":850`, new: `"qf_value":0850`},
		{name: "int32 overflow", old: `"qf_year":2026`, new: `"qf_year":2147483648`},
		{name: "int64 overflow", old: `"qf_value":850`, new: `"qf_value":9223372036854775808`},
		{name: "int64 underflow", old: `"qf_value":850`, new: `"qf_value":-9223372036854775809`},
		{name: "surrogate pair", old: `"CNAF"`, new: `"\ud83d\udcb6"`},
		{name: "lone surrogate", old: `"CNAF"`, new: `"\ud83d"`},
		{name: "bad escape", old: `"CNAF"`, new: `"\x"`},
		{name: "raw control character", old: `"CNAF"`, new: "\"C\tNAF\""},
		{name: "invalid UTF-8", old: `"CNAF"`, new: "\"C\xffNAF\""},
		{name: "bad time", old: `2026-09-14`, new: `2026-13-14`},
		{name: "escaped time", old: `2026-09-14`, new: `2026\u002d09-14`},
		{name: "unterminated", old: `Z"}`, new: `Z`},
		{name: "primary false", old: `"primary":true`, new: `"primary":false`, fast: true},
		{name: "optional empty string", old: `"provider":"CNAF"`, new: `"provider":""`, fast: true},
		{name: "escapes", old: `"CNAF"`, new: `"\"\\\/\b\f\n\r\t\u00e9\u2028\u0000\uFFFD"`, fast: true},
		{name: "raw HTML and DEL", old: `"CNAF"`, new: "\"<&>\x7f\u2028é\"", fast: true},
		{name: "min int64", old: `"qf_value":850`, new: `"qf_value":-9223372036854775808`, fast: true},
		{name: "no rows", old: `"rows":[{"n":12345,"ref":"SYN-0012345"}]`, new: `"rows":[]`, fast: true, isJob: true},
		{name: "rows null", old: `"rows":[{"n":12345,"ref":"SYN-0012345"}]`, new: `"rows":null`, fast: true, isJob: true},
		{name: "row with space", old: `"rows":[{"n":12345,`, new: `"rows":[ {"n":12345,`, isJob: true},
		{name: "sealed and identity", old: `,"rows"`, new: `,"identity":{},"rows"`, isJob: true},
		{name: "empty period", old: `"period":{"annee":2026,"mois":9}`, new: `"period":{}`, fast: true, isJob: true},
		{name: "months first", old: `"period":{"annee":2026,"mois":9}`, new: `"period":{"mois":9,"annee":2026}`, isJob: true},
		{name: "bytes as array", old: `"n":"AAAAAAAAAAAAAAAA"`, new: `"n":[1,2]`, isJob: true},
		{name: "bad base64", old: `"n":"AAAAAAAAAAAAAAAA"`, new: `"n":"AAA"`, isJob: true},
		{name: "null key id", old: `"kid":"local:3f2a9c1b2f9e8d7c"`, new: `"kid":null`, isJob: true},
		{name: "job version 3", old: `{"v":2`, new: `{"v":3`, fast: true, isJob: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := string(res)
			if tc.isJob {
				msg = string(job)
			}
			if !strings.Contains(msg, tc.old) {
				t.Fatalf("%q not in %s", tc.old, msg)
			}
			b := []byte(strings.Replace(msg, tc.old, tc.new, 1))
			var ok bool
			if tc.isJob {
				_, ok = fastDecodeJob(b)
				sameJobDecode(t, b)
			} else {
				_, ok = fastDecodeResult(b)
				sameResultDecode(t, b)
			}
			if ok != tc.fast {
				t.Fatalf("fast path taken = %v, want %v for %s", ok, tc.fast, b)
			}
		})
	}
}

// FuzzDecodeResult: (a) on any bytes, DecodeResult's outcome is the
// library's; (b) a result built from fuzzed fields and encoded by
// AppendResult takes the fast path and decodes to itself.
func FuzzDecodeResult(f *testing.F) {
	for i, b := range resultSeeds(f) {
		f.Add(b, "quotient_familial", "ok", int64(i), int32(2026), int64(1790000000123456789), ^uint64(0)>>i, int16(0))
	}
	f.Add([]byte(`{"v":1}`), "é\n\"<", "\u2028", int64(-1), int32(-1<<31), int64(0), uint64(0x5555555555555555), int16(-330))
	f.Fuzz(func(t *testing.T, raw []byte, s1, s2 string, n int64, m int32, nanos int64, present uint64, zone int16) {
		sameResultDecode(t, raw)

		var r Result
		fs := fields{s1: s1, s2: s2, n: n, m: m, present: present}
		fs.fill(reflect.ValueOf(&r).Elem())
		r.CheckedAt = time.Unix(0, nanos).In(time.FixedZone("", int(zone)*60)) // RFC 3339 offsets are minutes
		b, err := AppendResult(nil, &r)
		if err != nil {
			return // a year RFC 3339 cannot write
		}
		got, ok := fastDecodeResult(b)
		if !ok {
			t.Fatalf("fast path refused the encoder's %s", b)
		}
		sameResultDecode(t, b)
		if !got.CheckedAt.Equal(r.CheckedAt) {
			t.Fatalf("checked_at %v, want %v", got.CheckedAt, r.CheckedAt)
		}
		got.CheckedAt = r.CheckedAt
		if fs.validStrings() && !reflect.DeepEqual(got, r) {
			t.Fatalf("%s:\n got %+v\nwant %+v", b, got, r)
		}
	})
}

// FuzzDecodeJob: the same for jobs, sealed or not, and for the identities
// sealed jobs carry (raw is also read as one).
func FuzzDecodeJob(f *testing.F) {
	for i, b := range jobSeeds(f) {
		f.Add(b, "quotient_familial", "LEFEBVRE", int64(i), int32(2026), ^uint64(0)>>i)
	}
	for i, b := range identitySeeds(f) {
		f.Add(b, "99100", "JEAN PIERRE", int64(i), int32(12), ^uint64(0)>>(i+3))
	}
	f.Add([]byte(`{"v":2}`), "é\n\"<", "\u2028", int64(-1), int32(-1<<31), uint64(0x5555555555555555))
	f.Fuzz(func(t *testing.T, raw []byte, s1, s2 string, n int64, m int32, present uint64) {
		sameJobDecode(t, raw)
		sameIdentityDecode(t, raw)

		var j Job
		fs := fields{s1: s1, s2: s2, n: n, m: m, present: present}
		fs.fill(reflect.ValueOf(&j).Elem())
		if j.Sealed != nil {
			j.Identity = Identity{} // not on the wire
		}
		b := AppendJob(nil, &j)
		got, ok := fastDecodeJob(b)
		if !ok {
			t.Fatalf("fast path refused the encoder's %s", b)
		}
		sameJobDecode(t, b)
		if fs.validStrings() && !reflect.DeepEqual(got, j) {
			t.Fatalf("%s:\n got %+v\nwant %+v", b, got, j)
		}

		fs.fill(reflect.ValueOf(&j.Identity).Elem())
		b = AppendIdentity(nil, &j.Identity)
		id, ok := fastDecodeIdentity(b)
		if !ok {
			t.Fatalf("fast path refused the encoder's %s", b)
		}
		sameIdentityDecode(t, b)
		if fs.validStrings() && !reflect.DeepEqual(id, j.Identity) {
			t.Fatalf("%s:\n got %+v\nwant %+v", b, id, j.Identity)
		}
	})
}

// TestPlainRun: eight bytes at a time, plainRun stops at the first byte a
// byte-by-byte scan stops at, whatever the byte and its place.
func TestPlainRun(t *testing.T) {
	for c := range 256 {
		special := c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf
		for at := range 20 {
			s := []byte(strings.Repeat("a~ ", 7))
			s[at] = byte(c)
			want := len(s)
			if special {
				want = at
			}
			if got := plainRun(s); got != want {
				t.Fatalf("byte %#x at %d: plainRun = %d, want %d", c, at, got, want)
			}
		}
	}
}
