package csv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// sheetRow is row n of a sheet, its cells as inline strings from column A
// ("" for an empty cell, left out as Excel does).
func sheetRow(n int, cells ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<row r="%d">`, n)
	for i, v := range cells {
		if v != "" {
			fmt.Fprintf(&b, `<c r="%c%d" t="inlineStr"><is><t>%s</t></is></c>`, 'A'+i, n, v)
		}
	}
	return b.String() + `</row>`
}

// readFile reads every row of a roster as the splitter does (OpenFile).
func readFile(name string, raw []byte, opts Options) (*Reader, []Row, error) {
	opts.Now = today
	r, err := OpenFile(context.Background(), bytes.NewReader(raw), name, opts)
	if err != nil {
		return nil, nil, err
	}
	var rows []Row
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r, rows, nil
		}
		if err != nil {
			return r, rows, err
		}
		rows = append(rows, row)
	}
}

// TestOpen_HeaderRow: the header is found below titles, dates and merged
// cells, or taken where HeaderRow says; rows keep the file's line numbers,
// and so do their messages.
func TestOpen_HeaderRow(t *testing.T) {
	const row = "A;LEFEBVRE;ALEXIS;F;1982-12-27;08480\n"
	const bad = "B;LEFEBVRE;ALEXIS;X;1982-12-27;08480\n"
	titleSheet := workbook(t, "", sheetRow(1, "Liste des inscrits — cantine 2027")+
		sheetRow(2, "Enfant", "", "", "Naissance")+ // merged group headers
		sheetRow(3, "Référence", "NOM DE NAISSANCE", "Prénom(s)", "Sexe", "Date de naissance", "Code INSEE naissance", "Remarque")+
		sheetRow(4, "A", "LEFEBVRE", "ALEXIS", "F", "1982-12-27", "08480")+ // no remark: padded to the header
		sheetRow(6, "B", "LEFEBVRE", "ALEXIS", "X", "1982-12-27", "08480"))
	for _, tc := range []struct {
		name      string
		file      string
		in        []byte
		headerRow int
		lines     []int
		invalid   string // a part of the second row's message
		wantErr   string
	}{
		{name: "header on line 1", file: "l.csv", in: []byte(hdr + row + bad), lines: []int{2, 3}, invalid: "ligne 3, colonne « sexe »"},
		{name: "title line above", file: "l.csv", in: []byte("Liste des inscrits cantine 2027\n" + hdr + row + bad), lines: []int{3, 4}, invalid: "ligne 4, colonne « sexe »"},
		{name: "title with separators, blank line, date",
			file: "l.csv", in: []byte("Commune de Charleville;;;;;\n;;;;;\nExport du 01/09/2027;;;;;\n" + hdr + row + bad), lines: []int{5, 6}, invalid: "ligne 6"},
		{name: "comma file under a title without separator", file: "l.csv",
			in: []byte("Inscrits\n" + strings.ReplaceAll(hdr+row+bad, ";", ",")), lines: []int{3, 4}, invalid: "ligne 4"},
		{name: "title with a stray quote", file: "l.csv", in: []byte("Liste \"cantine 2027\n" + hdr + row + bad), lines: []int{3, 4}, invalid: "ligne 4"},
		{name: "header row given", file: "l.csv", in: []byte("reference;nom\nx;y\n" + hdr + row + bad), headerRow: 3, lines: []int{4, 5}, invalid: "ligne 5"},
		{name: "header row given, comma", file: "l.csv", in: []byte("a;b;c\n" + strings.ReplaceAll(hdr+row+bad, ";", ",")), headerRow: 2, lines: []int{3, 4}, invalid: "ligne 4"},
		{name: "header row past the end", file: "l.csv", in: []byte(hdr + row), headerRow: 9, wantErr: "ligne d'en-tête demandée (ligne 9) est vide ou absente"},
		{name: "header row on a blank line", file: "l.csv", in: []byte("titre\n\n" + hdr + row), headerRow: 2, wantErr: "(ligne 2) est vide"},
		{name: "header row given on a data line", file: "l.csv", in: []byte(hdr + row), headerRow: 2, wantErr: "aucune des 6 colonnes de la ligne 2"},
		{name: "negative header row", file: "l.csv", in: []byte(hdr + row), headerRow: -1, wantErr: "invalide"},
		{name: "header past the first ten rows", file: "l.csv", in: []byte(strings.Repeat("titre\n", 10) + hdr + row), wantErr: "l'unique colonne de la première ligne n'est pas reconnue"},
		{name: "missing columns under a title", file: "l.csv", in: []byte("Liste\nnom;prenom\nA;B\n"), wantErr: "colonnes trouvées : nom, prenom, en-tête lu ligne 2"},
		{name: "sheet with title and merged cells", file: "l.xlsx", in: titleSheet, lines: []int{4, 6}, invalid: "ligne 6, colonne « Sexe »"},
		{name: "sheet, header row given", file: "l.xlsx", in: titleSheet, headerRow: 3, lines: []int{4, 6}, invalid: "ligne 6"},
		{name: "sheet, header row given on a title", file: "l.xlsx", in: titleSheet, headerRow: 1, wantErr: "l'unique colonne de la première ligne n'est pas reconnue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, rows, err := readFile(tc.file, tc.in, Options{HeaderRow: tc.headerRow})
			if tc.wantErr != "" {
				var fe *FileError
				if !errors.As(err, &fe) || !strings.Contains(fe.Message, tc.wantErr) {
					t.Fatalf("err = %v, want a FileError saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != len(tc.lines) {
				t.Fatalf("%d rows, want %d (header %q)", len(rows), len(tc.lines), r.Header())
			}
			for i, row := range rows {
				if row.Line != tc.lines[i] || row.Number != int64(tc.lines[i]) || len(row.Record) != len(r.Header()) {
					t.Errorf("row %d: line %d, %d fields; want line %d, %d fields", i, row.Line, len(row.Record), tc.lines[i], len(r.Header()))
				}
			}
			if bad := rows[0].Invalid(0); len(bad) > 0 {
				t.Errorf("first row: %v", bad)
			}
			if got := strings.Join(rows[1].Invalid(0), " | "); !strings.Contains(got, tc.invalid) {
				t.Errorf("second row: %q, want %q", got, tc.invalid)
			}
		})
	}
}

// TestOpen_NoKnownColumn: with no known column, the message lists the
// headers as read (not a row of data) and names the delimiter that would
// split them.
func TestOpen_NoKnownColumn(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		in         []byte
		want       []string
		not        []string
	}{
		{name: "unknown headers", file: "l.csv", in: []byte("Enfant;Classe;Régime\nx;y;z\n"),
			want: []string{"aucune des 3 colonnes de la première ligne", "en-têtes lus : « Enfant », « Classe », « Régime »", "ligne d'en-tête"}},
		{name: "data, not a header", file: "l.csv", in: []byte("DUPONT;JEAN;M;2014-05-10;08480\n"),
			want: []string{"aucune des 5 colonnes"}, not: []string{"DUPONT", "2014", "en-têtes lus"}},
		{name: "whole lines quoted", file: "l.csv", in: []byte("\"nom;prenoms;sexe;date_naissance\"\n\"A;B;M;2000\"\n"),
			want: []string{"en-têtes lus : « nom;prenoms;sexe;date_naissance »", "semble séparé par des points-virgules (;), mais chaque ligne est entre guillemets"}},
		{name: "line in one cell of a sheet", file: "l.xlsx", in: workbook(t, "", sheetRow(1, "nom,prenoms,sexe,date_naissance")+sheetRow(2, "A,B,M,2000")),
			want: []string{"séparées par des virgules (,)", "Données > Convertir", "séparateur « virgule »"}},
		{name: "unknown headers in one cell", file: "l.xlsx", in: workbook(t, "", sheetRow(1, "Enfant|Classe|Régime|Tarif")),
			want: []string{"séparées par des barres verticales (|)"}},
		{name: "a title is no separator", file: "l.xlsx", in: workbook(t, "", sheetRow(1, "Cantine, liste des inscrits")),
			want: []string{"« Cantine, liste des inscrits »"}, not: []string{"séparé"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readFile(tc.file, tc.in, Options{})
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FileError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(fe.Message, w) {
					t.Errorf("%q does not say %q", fe.Message, w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(fe.Message, w) {
					t.Errorf("%q says %q", fe.Message, w)
				}
			}
		})
	}
}
