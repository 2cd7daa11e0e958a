package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/xuri/excelize/v2"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// samplePath is the sample roster the README runs.
const samplePath = "../../deploy/samples/cantine-demo.csv"

// syncBuffer is a bytes.Buffer safe for the concurrent writes of loggers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// resultRow reads result files with an independent Parquet library.
type resultRow struct {
	BatchID       string    `parquet:"batch_id"`
	RowNumber     int64     `parquet:"row_number"`
	Reference     *string   `parquet:"reference,optional"`
	Check         string    `parquet:"check_name"`
	Status        string    `parquet:"status"`
	ErrorCode     *string   `parquet:"error_code,optional"`
	ErrorMessage  *string   `parquet:"error_message,optional"`
	Provider      *string   `parquet:"provider,optional"`
	QFValue       *int64    `parquet:"qf_value,optional"`
	ChildrenCount *int32    `parquet:"children_count,optional"`
	NeedsReview   bool      `parquet:"needs_review"`
	Tranche       *string   `parquet:"tranche,optional"`
	Tarif         *int64    `parquet:"tarif,optional"`
	RequestID     *string   `parquet:"request_id,optional"`
	Attempts      int32     `parquet:"attempts"`
	CheckedAt     time.Time `parquet:"checked_at,timestamp(millisecond)"`
}

// sampleRow is one data row of the sample, by canonical column.
type sampleRow map[string]string

func readSample(t *testing.T) []sampleRow {
	t.Helper()
	f, err := os.Open(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var rows []sampleRow
	for _, rec := range recs[1:] {
		row := sampleRow{}
		for i, h := range recs[0] {
			if i < len(rec) {
				row[strings.TrimPrefix(h, "\ufeff")] = rec[i]
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func runApbatch(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if len(args) > 0 && args[0] == "run" && !slices.ContainsFunc(args, func(a string) bool {
		return a == "--out" || a == "--workbook" || strings.HasPrefix(a, "--out=") || strings.HasPrefix(a, "--workbook=")
	}) {
		// Not in the package's folder: run writes resultats.xlsx in the
		// current folder by default.
		args = append([]string{"run", "--workbook", filepath.Join(t.TempDir(), "resultats.xlsx")}, args[1:]...)
	}
	var out, errb syncBuffer
	e := env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = runMain(ctx, e, args)
	return code, out.String(), errb.String()
}

func TestRun_SampleEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	outDir := filepath.Join(dir, "out")
	sumPath := filepath.Join(dir, "summary.json")
	code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", dataDir, "--out", outDir,
		"--summary-json", sumPath, "--log-level", "debug", "--flush-interval", "1s",
		"--tariff", "../../deploy/samples/tarifs-cantine.yaml", samplePath)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	var sum summary
	body, err := os.ReadFile(sumPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &sum); err != nil {
		t.Fatal(err)
	}
	sample := readSample(t)
	if sum.RowsTotal != int64(len(sample)) {
		t.Fatalf("rows_total = %d, sample has %d rows", sum.RowsTotal, len(sample))
	}
	if sum.BatchID == "" || len(sum.ResultFiles) == 0 {
		t.Fatalf("summary lacks batch_id or result_files: %s", body)
	}

	// Read every published part with an independent reader.
	var manifest schemas.Manifest
	mb, err := os.ReadFile(filepath.Join(outDir, sum.BatchID, "_manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mb, &manifest); err != nil {
		t.Fatal(err)
	}
	byRow := map[int64]resultRow{}
	for _, f := range manifest.Files {
		rows, err := parquet.ReadFile[resultRow](filepath.Join(outDir, sum.BatchID, filepath.Base(f.Key)))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if _, dup := byRow[r.RowNumber]; dup {
				t.Fatalf("row %d written twice", r.RowNumber)
			}
			byRow[r.RowNumber] = r
		}
	}
	if len(byRow) != len(sample) || manifest.RowsTotal != int64(len(sample)) {
		t.Fatalf("%d result rows (manifest %d) for %d input rows", len(byRow), manifest.RowsTotal, len(sample))
	}
	// The town's grid prices every QF answer: a bracket for a usable QF,
	// the grid's policy for no dossier; bad rows get no price.
	if manifest.Tariff != "cantine-2026-09" {
		t.Errorf("manifest tariff %q", manifest.Tariff)
	}
	for n, r := range byRow {
		priced := r.Tranche != nil && r.Tarif != nil
		switch {
		case r.Status == "ok" || r.Status == "not_found" || r.Status == "identity_unresolved":
			if !priced {
				t.Errorf("row %d (%s) has no price", n, r.Status)
			}
		case priced:
			t.Errorf("row %d (%s) priced %s", n, r.Status, *r.Tranche)
		}
		if r.Status == "ok" && r.QFValue != nil && *r.QFValue <= 400 && (r.Tranche == nil || *r.Tranche != "A" || *r.Tarif != 80) {
			t.Errorf("row %d: QF %d in bracket %v", n, *r.QFValue, r.Tranche)
		}
	}

	// Expected outcomes, found by identity in the sample.
	find := func(nom, prenoms string) resultRow {
		t.Helper()
		for i, s := range sample {
			if s["nom_naissance"] == nom && s["prenoms"] == prenoms {
				return byRow[int64(i+2)] // the line: header = 1
			}
		}
		t.Fatalf("sample has no %s %s", nom, prenoms)
		return resultRow{}
	}
	lefebvre := find("LEFEBVRE", "ALEXIS GÉRÔME JEAN-PHILIPPE")
	if lefebvre.Status != "ok" || lefebvre.QFValue == nil || *lefebvre.QFValue != 2550 || *lefebvre.Provider != "CNAF" {
		t.Errorf("LEFEBVRE: %+v", lefebvre)
	}
	if lefebvre.RequestID == nil || lefebvre.Attempts != 1 || lefebvre.CheckedAt.IsZero() {
		t.Errorf("LEFEBVRE request id, attempts, checked_at: %+v", lefebvre)
	}
	bernard := find("BERNARD", "ELODIE")
	if bernard.Status != "ok" || bernard.QFValue == nil || *bernard.QFValue != 650 || bernard.ChildrenCount == nil || *bernard.ChildrenCount != 1 {
		t.Errorf("BERNARD ELODIE: %+v", bernard)
	}
	notFound, invalid := 0, 0
	for n, r := range byRow {
		if r.Check != "quotient_familial" || r.BatchID != sum.BatchID {
			t.Errorf("row %d: check %q batch %q", n, r.Check, r.BatchID)
		}
		switch r.Status {
		case "not_found":
			notFound++
		case "invalid_input":
			invalid++
			if r.ErrorMessage == nil || !strings.Contains(*r.ErrorMessage, "ligne ") || !strings.Contains(*r.ErrorMessage, "colonne") {
				t.Errorf("row %d: invalid without a clear message: %+v", n, r)
			}
		}
	}
	// Two lines are rejected (an impossible date, a French birth without
	// its commune); a line without a sex is not since the CNAV routes take
	// none (2026-05-28).
	if notFound == 0 || invalid < 2 {
		t.Errorf("not_found = %d, invalid_input = %d; want at least 1 and 2", notFound, invalid)
	}
	if petit := find("PETIT", "HUGO"); petit.Status == "invalid_input" {
		t.Errorf("PETIT HUGO, without a sex, rejected: %+v", petit)
	}
	// The official identity cases the provider cannot match answer 422
	// 35560 (identity not recognised), no longer 404.
	if r := find("DUPONT", "ALEXIS"); r.Status != "identity_unresolved" {
		t.Errorf("DUPONT ALEXIS: %+v", r)
	}
	if sum.RowsByStatus[schemas.StatusNotFound] != int64(notFound) || sum.RowsByStatus[schemas.StatusInvalidInput] != int64(invalid) {
		t.Errorf("summary by status %v disagrees with files", sum.RowsByStatus)
	}
	// Duplicate identities cost one call.
	if sum.ProviderCalls >= sum.RowsTotal-int64(invalid) {
		t.Errorf("provider_calls = %d for %d valid rows: duplicates were not shared", sum.ProviderCalls, sum.RowsTotal-int64(invalid))
	}

	// No token, identity or query string in the logs.
	logs := stdout + stderr
	leaks := []string{"eyJ", "Bearer", "nomNaissance", "prenoms[]", "anneeDateNaissance"}
	for _, s := range sample {
		if s["reference"] == "" {
			continue
		}
		for _, col := range []string{"nom_naissance", "prenoms", "date_naissance"} {
			if v := s[col]; len(v) >= 4 {
				leaks = append(leaks, v)
			}
		}
	}
	for _, leak := range leaks {
		if strings.Contains(logs, leak) {
			t.Errorf("logs contain %q", leak)
		}
	}
	// The token is in no stored byte: Kafka segments, the ledger, S3 objects.
	err = filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("eyJhbGciOi")) || bytes.Contains(b, []byte("Bearer")) {
			t.Errorf("%s holds a token", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Every provider call is in the audit trail, the person only as a keyed hash.
	store, err := ledger.Open(ctx, "sqlite://"+filepath.Join(dataDir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	calls, err := store.BatchCalls(ctx, sum.BatchID)
	store.Close()
	if err != nil || int64(len(calls)) != sum.ProviderCalls {
		t.Fatalf("%d audited calls for %d provider calls (%v)", len(calls), sum.ProviderCalls, err)
	}
	for _, c := range calls {
		if len(c.IdentityHMAC) != 64 || c.RequestID == "" || c.HTTPStatus == 0 || c.Route != "/v3/dss/quotient_familial/identite" {
			t.Fatalf("audit record %+v", c)
		}
	}
	dbBytes, _ := os.ReadFile(filepath.Join(dataDir, "ledger.db"))
	walBytes, _ := os.ReadFile(filepath.Join(dataDir, "ledger.db-wal"))
	for _, name := range []string{"LEFEBVRE", "BERNARD", "ELODIE", "GÉRÔME"} { // not digits: hex hashes hold digits
		if bytes.Contains(dbBytes, []byte(name)) || bytes.Contains(walBytes, []byte(name)) {
			t.Errorf("the ledger holds %q", name)
		}
	}

	// Running again with the same file reuses the finished batch.
	code, stdout2, stderr2 := runApbatch(t, ctx, "run", "--data-dir", dataDir, "--summary-json", sumPath, samplePath)
	if code != 0 {
		t.Fatalf("second run: exit %d\n%s\n%s", code, stdout2, stderr2)
	}
	var sum2 summary
	body, _ = os.ReadFile(sumPath)
	json.Unmarshal(body, &sum2)
	if sum2.BatchID != sum.BatchID || sum2.RowsTotal != sum.RowsTotal || sum2.ProviderCalls != sum.ProviderCalls {
		t.Fatalf("second run: %+v, first %+v", sum2, sum)
	}
}

// TestRun_TownRoster runs the shipped roster as a town hall exports it
// (Windows-1252, French headers, one line per child with the allocataire's
// identity, typos) with the sample tariff grid.
func TestRun_TownRoster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	sumPath := filepath.Join(dir, "summary.json")
	code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", filepath.Join(dir, "data"), "--flush-interval", "1s",
		"--summary-json", sumPath, "--out", filepath.Join(dir, "out"), "--tariff", "../../deploy/samples/tarifs-cantine.yaml",
		"../../deploy/samples/cantine-mairie.csv")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var sum summary
	body, _ := os.ReadFile(sumPath)
	if err := json.Unmarshal(body, &sum); err != nil {
		t.Fatal(err)
	}
	// 18 child lines, 14 families: two with a typo, 12 looked up once each
	// (siblings share their parent's call).
	want := map[schemas.Status]int64{schemas.StatusOK: 14, schemas.StatusNotFound: 1, schemas.StatusIdentityUnresolved: 1, schemas.StatusInvalidInput: 2}
	if sum.RowsTotal != 18 || sum.ProviderCalls != 12 || len(sum.RowsByStatus) != len(want) || sum.Batches[0].CallsSaved != 4 {
		t.Fatalf("summary: %s", body)
	}
	for st, n := range want {
		if sum.RowsByStatus[st] != n {
			t.Errorf("%s: %d rows, want %d", st, sum.RowsByStatus[st], n)
		}
	}
	var rows []resultRow
	err := filepath.WalkDir(filepath.Join(dir, "out"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		got, err := parquet.ReadFile[resultRow](p)
		rows = append(rows, got...)
		return err
	})
	if err != nil || len(rows) != 18 {
		t.Fatalf("%d rows: %v", len(rows), err)
	}
	for _, r := range rows {
		if r.Reference == nil || !strings.HasPrefix(*r.Reference, "F0") {
			t.Errorf("row %d: reference %v", r.RowNumber, r.Reference)
		}
		if (r.Status == "invalid_input") == (r.Tranche != nil) {
			t.Errorf("row %d (%s): tranche %v", r.RowNumber, r.Status, r.Tranche)
		}
		if r.Status == "invalid_input" && (r.ErrorMessage == nil || !strings.Contains(*r.ErrorMessage, "colonne « ")) {
			t.Errorf("row %d: message %v", r.RowNumber, r.ErrorMessage)
		}
	}

	if code, out, errs := runApbatch(t, ctx, "status", "--data-dir", filepath.Join(dir, "data")); code != 0 ||
		!strings.Contains(out, "cantine-mairie.csv  terminé  18/18") {
		t.Errorf("status: %d\n%s%s", code, out, errs)
	}

	// Agents get the roster back with the results after its columns.
	for _, name := range []string{"resultats.csv", "resultats.xlsx", "resultats.parquet"} {
		path := filepath.Join(dir, name)
		if code, out, errs := runApbatch(t, ctx, "results", "--data-dir", filepath.Join(dir, "data"), "-o", path); code != 0 {
			t.Fatalf("results %s: %d %s %s", name, code, out, errs)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "resultats.csv"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	lines := strings.Split(strings.TrimSuffix(text, "\r\n"), "\r\n")
	if !strings.HasPrefix(text, "\ufeffN° famille;Enfant;Classe;NOM DE NAISSANCE") || len(lines) != 19 ||
		!strings.HasSuffix(lines[0], ";Statut;Quotient familial;Tranche;Tarif;À vérifier;Message") ||
		!strings.Contains(lines[1], "F001;Sébastien;CM2;DA SILVA;") || !strings.Contains(lines[1], ";vérifié;798;C;2,40;;") {
		t.Fatalf("csv export:\n%s", text)
	}
	xf, err := excelize.OpenFile(filepath.Join(dir, "resultats.xlsx"))
	if err != nil {
		t.Fatal(err)
	}
	defer xf.Close()
	xrows, err := xf.GetRows(xf.GetSheetList()[0])
	if err != nil || len(xrows) != 19 || xrows[1][9] != "vérifié" || xrows[1][11] != "C" {
		t.Fatalf("xlsx export: %v %v", xrows, err)
	}
	pq, err := parquet.ReadFile[resultRow](filepath.Join(dir, "resultats.parquet"))
	if err != nil || len(pq) != 18 || pq[0].RowNumber != 2 || pq[17].RowNumber != 19 {
		t.Fatalf("parquet export: %d rows, %v", len(pq), err)
	}
}

// TestRun_RosterCSVAndXLSXAgree: the shipped roster and the same sheet as
// an Excel workbook (dates as dates, codes as numbers) give the same
// results, row by row, siblings deduplicated in both.
func TestRun_RosterCSVAndXLSXAgree(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	sumPath := filepath.Join(dir, "summary.json")
	code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", filepath.Join(dir, "data"), "--flush-interval", "1s",
		"--out", out, "--summary-json", sumPath, "--tariff", "../../deploy/samples/tarifs-cantine.yaml",
		"../../deploy/samples/cantine-mairie.csv", "../../deploy/samples/cantine-mairie.xlsx")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var sum summary
	body, _ := os.ReadFile(sumPath)
	if err := json.Unmarshal(body, &sum); err != nil || len(sum.Batches) != 2 {
		t.Fatalf("summary %s: %v", body, err)
	}
	byFile := map[string]map[int64]resultRow{}
	for _, b := range sum.Batches {
		if b.CallsSaved != 4 {
			t.Errorf("%s: %d calls saved, want 4", b.Source, b.CallsSaved)
		}
		rows := map[int64]resultRow{}
		err := filepath.WalkDir(filepath.Join(out, b.BatchID), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !strings.HasSuffix(p, ".parquet") {
				return err
			}
			got, err := parquet.ReadFile[resultRow](p)
			for _, r := range got {
				rows[r.RowNumber] = r
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		byFile[filepath.Ext(b.Source)] = rows
	}
	csvRows, xlsxRows := byFile[".csv"], byFile[".xlsx"]
	if len(csvRows) != 18 || len(xlsxRows) != 18 {
		t.Fatalf("%d and %d rows", len(csvRows), len(xlsxRows))
	}
	str := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	num := func(p *int64) string {
		if p == nil {
			return "<nil>"
		}
		return strconv.FormatInt(*p, 10)
	}
	for n, c := range csvRows {
		x := xlsxRows[n]
		if c.Status != x.Status || str(c.Reference) != str(x.Reference) || num(c.QFValue) != num(x.QFValue) ||
			str(c.Tranche) != str(x.Tranche) || num(c.Tarif) != num(x.Tarif) || str(c.ErrorCode) != str(x.ErrorCode) {
			t.Errorf("row %d: csv %s %s %s, xlsx %s %s %s", n, c.Status, num(c.QFValue), str(c.Tranche), x.Status, num(x.QFValue), str(x.Tranche))
		}
	}
}

func TestRun_FlagErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", []string{"run"}, "donnez au moins un fichier"},
		{"missing file", []string{"run", "nope.csv"}, "impossible de lire nope.csv"},
		{"bad period", []string{"run", "--period", "2026-13", samplePath}, "--period"},
		{"bad recipient", []string{"run", "--recipient", "123", samplePath}, "--recipient"},
		{"real API without recipient", []string{"run", "--provider-url", "https://example.invalid", samplePath}, "--recipient"},
		{"bad tenant", []string{"run", "--tenant", "../x", samplePath}, "--tenant"},
		{"flag after the file", []string{"run", samplePath, "--period", "2026-13"}, "--period"},
		{"flags after two files", []string{"run", samplePath, samplePath, "--recipient", "123", "--force"}, "--recipient"},
		{"after --, a file", []string{"run", "--", "--tariff"}, "impossible de lire --tariff"},
		{"negative header row", []string{"run", samplePath, "--header-row", "-2"}, "--header-row -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{tc.args[0], "--data-dir", t.TempDir()}, tc.args[1:]...)
			code, stdout, stderr := runApbatch(t, ctx, args...)
			if code == 0 || !strings.Contains(stdout+stderr, tc.want) {
				t.Fatalf("exit %d, output:\n%s%s", code, stdout, stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	code, stdout, _ := runApbatch(t, context.Background(), "help", "run")
	if code != 0 || !strings.Contains(stdout, "-provider-url") || !strings.Contains(stdout, "-summary-json") {
		t.Fatalf("help run: exit %d\n%s", code, stdout)
	}
}

func TestSandbox_PrintToken(t *testing.T) {
	code, stdout, stderr := runApbatch(t, context.Background(), "sandbox", "--print-token")
	tok := strings.TrimSpace(stdout)
	if code != 0 || strings.Count(tok, ".") != 2 {
		t.Fatalf("exit %d: %q %s", code, stdout, stderr)
	}
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/v3/dss/quotient_familial/identite?recipient=13002526500013&nomNaissance=X&prenoms[]=Y&sexeEtatCivil=M&codeCogInseePaysNaissance=99350", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	sb.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound { // valid token, no such person
		t.Fatalf("sandbox refused the printed token: %d %s", rec.Code, rec.Body)
	}
}

func TestRun_RefusedFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "liste.csv")
	if err := os.WriteFile(bad, []byte("nom_naissance;prenom;naissance\nDUPONT;JEAN;2014\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", filepath.Join(dir, "data"), bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"liste.csv", "colonnes manquantes : code_insee_commune_naissance", "colonnes trouvées : nom_naissance, prenom, naissance"} {
		if !strings.Contains(stdout+stderr, want) {
			t.Errorf("output lacks %q:\n%s\n%s", want, stdout, stderr)
		}
	}
	if strings.Contains(stdout+stderr, "DUPONT") {
		t.Error("output echoes a name")
	}
}

// TestRun_Rehearsal generates a synthetic roster and runs it: every row gets
// the outcome the sandbox's population holds for it.
func TestRun_Rehearsal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	roster := filepath.Join(dir, "roster.csv")
	if code, out, errs := runApbatch(t, ctx, "sandbox", "gen", "--population", "80", "--seed", "5", "-o", roster); code != 0 {
		t.Fatalf("gen: %d %s %s", code, out, errs)
	}
	sumPath := filepath.Join(dir, "summary.json")
	code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", filepath.Join(dir, "data"), "--sandbox-population", "80",
		"--sandbox-seed", "5", "--flush-interval", "1s", "--summary-json", sumPath, roster)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var sum summary
	body, _ := os.ReadFile(sumPath)
	if err := json.Unmarshal(body, &sum); err != nil {
		t.Fatal(err)
	}
	pop := sandbox.NewPopulation(80, 5)
	want := map[schemas.Status]int64{}
	for i := 0; i < pop.Len(); i++ {
		switch pop.Person(i).Outcome {
		case sandbox.OutcomeNoFile:
			want[schemas.StatusNotFound]++
		case sandbox.OutcomeUnknown:
			want[schemas.StatusIdentityUnresolved]++
		default:
			want[schemas.StatusOK]++
		}
	}
	if sum.RowsTotal != 80 {
		t.Fatalf("rows_total %d", sum.RowsTotal)
	}
	for st, n := range want {
		if sum.RowsByStatus[st] != n {
			t.Errorf("%s: %d rows, population holds %d", st, sum.RowsByStatus[st], n)
		}
	}
}

func TestBench_Smoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, stdout, stderr := runApbatch(t, ctx, "bench", "--scenario", "one-token,raw", "--duration", "2s", "--raw-rows", "300")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"SCENARIO", "MAX IN 1S", "one-token  40 ", "raw        300 ", "µs per row"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if code, _, _ := runApbatch(t, ctx, "bench", "--scenario", "nope"); code == 0 {
		t.Error("unknown scenario accepted")
	}
}

func TestAudit_Purge(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runApbatch(t, context.Background(), "audit", "purge", "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "removed 0 call records older than") {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	if code, _, _ := runApbatch(t, context.Background(), "audit"); code == 0 {
		t.Fatal("audit without a subcommand succeeded")
	}
}

// TestRun_ResumeAfterInterrupt: a run stopped mid-batch (as by Ctrl-C) is
// finished by "apbatch run" with no file, from the broker, bucket and
// ledger it left in --data-dir; every row is published once.
func TestRun_ResumeAfterInterrupt(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	roster := filepath.Join(dir, "roster.csv")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if code, out, errs := runApbatch(t, ctx, "sandbox", "gen", "--population", "200", "--seed", "9", "-o", roster); code != 0 {
		t.Fatalf("gen: %d %s %s", code, out, errs)
	}
	first, stop := context.WithCancel(ctx)
	go func() {
		// Stop once some results are published: mid-batch.
		for first.Err() == nil {
			time.Sleep(200 * time.Millisecond)
			if code, out, _ := runApbatch(t, ctx, "status", "--data-dir", data); code == 0 && strings.Contains(out, " vérification en cours ") &&
				!strings.Contains(out, " 0/200") {
				stop()
			}
		}
	}()
	code, _, stderr := runApbatch(t, first, "run", "--data-dir", data, "--sandbox-population", "200", "--sandbox-seed", "9",
		"--flush-interval", "500ms", roster)
	stop()
	if code == 0 || !strings.Contains(stderr, "relancez la même commande pour reprendre") {
		t.Fatalf("interrupted run: exit %d\n%s", code, stderr)
	}
	sumPath := filepath.Join(dir, "summary.json")
	code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", data, "--sandbox-population", "200", "--sandbox-seed", "9",
		"--flush-interval", "500ms", "--summary-json", sumPath, "--out", filepath.Join(dir, "out"))
	if code != 0 || !strings.Contains(stderr, "reprise de 1 lot(s) inachevé(s)") {
		t.Fatalf("resume: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var sum summary
	body, _ := os.ReadFile(sumPath)
	if err := json.Unmarshal(body, &sum); err != nil || sum.RowsTotal != 200 {
		t.Fatalf("summary %s: %v", body, err)
	}
	seen := map[int64]bool{}
	err := filepath.WalkDir(filepath.Join(dir, "out"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		rows, err := parquet.ReadFile[resultRow](p)
		for _, r := range rows {
			if seen[r.RowNumber] {
				t.Errorf("row %d published twice", r.RowNumber)
			}
			seen[r.RowNumber] = true
		}
		return err
	})
	if err != nil || len(seen) != 200 {
		t.Fatalf("%d rows published: %v", len(seen), err)
	}
	// Nothing left to resume.
	if code, _, stderr := runApbatch(t, ctx, "run", "--data-dir", data); code == 0 || !strings.Contains(stderr, "aucun lot inachevé") {
		t.Errorf("second resume: %d %s", code, stderr)
	}
	// The same file again is the same batch, unless forced.
	again := func(extra ...string) string {
		path := filepath.Join(dir, "again.json")
		args := append([]string{"run", "--data-dir", data, "--sandbox-population", "200", "--sandbox-seed", "9", "--flush-interval", "500ms",
			"--summary-json", path}, extra...)
		if code, out, errs := runApbatch(t, ctx, append(args, roster)...); code != 0 {
			t.Fatalf("again %v: %d %s %s", extra, code, out, errs)
		}
		var s summary
		b, _ := os.ReadFile(path)
		json.Unmarshal(b, &s)
		return s.BatchID
	}
	if id := again(); id != sum.BatchID {
		t.Errorf("same file: batch %s, want the finished %s", id, sum.BatchID)
	}
	if id := again("--force"); id == sum.BatchID || id == "" {
		t.Errorf("--force reused batch %s", id)
	}
}

// TestRun_FrenchSummary: run's summary is in French and lists the lines to
// correct (line, column, what to do), 20 at most and how many more, then
// ends with the path of the results workbook; a --out ending in .xlsx is
// that workbook, not a folder.
func TestRun_FrenchSummary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	sample, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(sample), "\n"), "\n")
	// 25 lines with an impossible birth date, after the sample's own rows.
	roster := append([]string(nil), lines...)
	for i := 0; i < 25; i++ {
		f := strings.Split(lines[1+i%(len(lines)-1)], ";")
		f[5] = "31/02/2015" // date_naissance
		roster = append(roster, strings.Join(f, ";"))
	}
	path := filepath.Join(dir, "liste.csv")
	if err := os.WriteFile(path, []byte(strings.Join(roster, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	workbook := filepath.Join(dir, "resultats.xlsx")
	sumPath := filepath.Join(dir, "summary.json")
	code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", filepath.Join(dir, "data"), "--flush-interval", "500ms",
		"--summary-json", sumPath, "--out", workbook, path)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var sum summary
	body, _ := os.ReadFile(sumPath)
	if err := json.Unmarshal(body, &sum); err != nil || len(sum.Batches) != 1 {
		t.Fatalf("summary %s: %v", body, err)
	}
	invalid := int(sum.RowsByStatus[schemas.StatusInvalidInput])
	if invalid < 25 || sum.Batches[0].Corrections != invalid || sum.Batches[0].Workbook != workbook {
		t.Fatalf("%d invalid rows, summary %s", invalid, body)
	}
	for _, want := range []string{"liste.csv (lot " + sum.BatchID + ") : terminé", fmt.Sprintf("%d lignes : vérifié ", sum.RowsTotal),
		"appels au fournisseur", "  Lignes à corriger :\n", "colonne « date_naissance » : ",
		fmt.Sprintf("\n    et %d autres, voir resultats.xlsx\n", invalid-20)} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, "\n    ligne "); n != 20 {
		t.Errorf("%d lines to correct shown, want 20:\n%s", n, stdout)
	}
	out := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if last := out[len(out)-1]; last != "Classeur des résultats : "+workbook {
		t.Errorf("last line %q, want the workbook's path", last)
	}
	for _, english := range []string{"lookups", "UNRESOLVED", "INVALID", "s3://", "ETA", "elapsed", "rows"} {
		if strings.Contains(stdout+stderr, english) {
			t.Errorf("output holds %q:\n%s\n%s", english, stdout, stderr)
		}
	}
	if st, err := os.Stat(workbook); err != nil || st.IsDir() {
		t.Fatalf("--out %s: %v, a folder: %v", workbook, err, err == nil && st.IsDir())
	}
	f, err := excelize.OpenFile(workbook)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
