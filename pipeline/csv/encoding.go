package csv

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// Encodings a file may be read in; "" (auto) detects it.
const (
	EncodingAuto        = ""
	EncodingUTF8        = "utf-8"
	EncodingUTF16       = "utf-16"
	EncodingWindows1252 = "windows-1252"
	EncodingISO885915   = "iso-8859-15"
)

// Encodings lists the names --encoding accepts.
var Encodings = []string{EncodingUTF8, EncodingUTF16, EncodingWindows1252, EncodingISO885915}

// sniffSize is how much of a file encoding detection reads.
const sniffSize = 64 << 10

// decode returns r as UTF-8, and the encoding it found or was told: a BOM
// says UTF-8 or UTF-16; otherwise a start that is not valid UTF-8 is
// Windows-1252 (what Excel and most family-management software export in
// France; it is ISO-8859-15 for every letter a name holds).
func decode(r io.Reader, name, enc string) (io.Reader, string, error) {
	br := bufio.NewReaderSize(r, sniffSize)
	head, _ := br.Peek(sniffSize)
	var e encoding.Encoding
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case EncodingAuto:
		switch {
		case bytes.HasPrefix(head, []byte("\xef\xbb\xbf")):
			br.Discard(3)
			return br, EncodingUTF8, nil
		case bytes.HasPrefix(head, []byte("\xff\xfe")), bytes.HasPrefix(head, []byte("\xfe\xff")):
			enc, e = EncodingUTF16, unicode.UTF16(unicode.LittleEndian, unicode.ExpectBOM)
		case validUTF8Prefix(head):
			return br, EncodingUTF8, nil
		default:
			enc, e = EncodingWindows1252, charmap.Windows1252
		}
	case EncodingUTF8, "utf8":
		if bytes.HasPrefix(head, []byte("\xef\xbb\xbf")) {
			br.Discard(3)
		}
		return br, EncodingUTF8, nil
	case EncodingUTF16, "utf16":
		enc, e = EncodingUTF16, unicode.UTF16(unicode.LittleEndian, unicode.UseBOM)
	case EncodingWindows1252, "cp1252":
		enc, e = EncodingWindows1252, charmap.Windows1252
	case EncodingISO885915, "latin9", "latin-9":
		enc, e = EncodingISO885915, charmap.ISO8859_15
	default:
		return nil, "", &FileError{File: name, Message: fmt.Sprintf("encodage « %s » inconnu ; choisissez parmi %s (ou laissez la détection automatique)", enc, strings.Join(Encodings, ", "))}
	}
	return transform.NewReader(br, e.NewDecoder()), enc, nil
}

// validUTF8Prefix reports whether b is UTF-8, allowing a rune cut at its end.
func validUTF8Prefix(b []byte) bool {
	for i := 0; i < 3 && len(b) > 0 && !utf8.Valid(b); i++ {
		b = b[:len(b)-1]
	}
	return utf8.Valid(b)
}

// binary reports whether b looks like a binary file rather than text: NUL
// bytes (more than one in 64), or the signatures of the formats people upload by mistake.
func binary(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		return "une archive ZIP ou un classeur Excel (.xlsx)"
	case bytes.HasPrefix(b, []byte("\xd0\xcf\x11\xe0")):
		return "un ancien classeur Excel (.xls)"
	case bytes.HasPrefix(b, []byte("%PDF")):
		return "un PDF"
	case bytes.Count(b, []byte{0}) > len(b)/64:
		// Text has no NUL byte; a stray one spoils its line only (the
		// reader refuses that row), many of them a binary file.
		return "un fichier binaire"
	}
	return ""
}
