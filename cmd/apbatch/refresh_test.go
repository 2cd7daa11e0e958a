package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	pq "github.com/parquet-go/parquet-go"
	"github.com/xuri/excelize/v2"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/parquet"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// readSummary reads a --summary-json file.
func readSummary(t *testing.T, path string) summary {
	t.Helper()
	var sum summary
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &sum); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return sum
}

// TestRefresh_OncePerCampaign: two towns' rosters refreshed for a new
// campaign make one batch per town; firing the refresh again starts
// nothing, and unchanged data gives an empty diff.
func TestRefresh_OncePerCampaign(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	roster := filepath.Join(dir, "cantine.csv")
	if code, out, errs := runApbatch(t, ctx, "sandbox", "gen", "--population", "30", "--seed", "5", "-o", roster); code != 0 {
		t.Fatalf("gen: %d %s %s", code, out, errs)
	}
	common := []string{"--data-dir", data, "--sandbox-population", "30", "--sandbox-seed", "5", "--flush-interval", "300ms"}
	first := map[string]string{}
	checks := map[string]string{"ville-a": "qf", "ville-b": "qf,rsa"}
	for _, town := range []string{"ville-a", "ville-b"} {
		sumPath := filepath.Join(dir, town+".json")
		args := append([]string{"run", "--tenant", town, "--campaign", "2026-09", "--checks", checks[town], "--summary-json", sumPath}, common...)
		if code, out, errs := runApbatch(t, ctx, append(args, roster)...); code != 0 {
			t.Fatalf("run %s: %d\n%s\n%s", town, code, out, errs)
		}
		first[town] = readSummary(t, sumPath).BatchID
	}

	sumPath := filepath.Join(dir, "refresh.json")
	code, out, errs := runApbatch(t, ctx, append([]string{"refresh", "--campaign", "2027-09", "--summary-json", sumPath}, common...)...)
	if code != 0 {
		t.Fatalf("refresh: %d\n%s\n%s", code, out, errs)
	}
	for _, town := range []string{"ville-a", "ville-b"} {
		if !strings.Contains(out, town+": new batch ") || !strings.Contains(out, "cantine.csv of campaign 2026-09 (batch "+first[town]+")") {
			t.Errorf("refresh output lacks %s's new batch:\n%s", town, out)
		}
	}
	sum := readSummary(t, sumPath)
	if len(sum.Batches) != 2 {
		t.Fatalf("%d batches refreshed: %+v", len(sum.Batches), sum)
	}
	for _, b := range sum.Batches {
		if b.State != ledger.StateComplete || b.Campaign != "2027-09" || b.RowsTotal != 30 || b.Source != "incoming/"+b.Tenant+"/2027-09/cantine.csv" {
			t.Errorf("refreshed batch %+v", b)
		}
		// The checks of the batch it copies, not the refresh's defaults.
		if want, _ := schemas.ParseChecks(checks[b.Tenant]); schemas.JoinChecks(b.Checks) != schemas.JoinChecks(want) {
			t.Errorf("%s: refreshed with checks %v, want %v", b.Tenant, b.Checks, want)
		}
		if b.Changes == nil || b.Changes.Total != 0 || b.Changes.PreviousBatchID != first[b.Tenant] || b.Changes.PreviousCampaign != "2026-09" {
			t.Errorf("%s: changes %+v, want none against %s", b.Tenant, b.Changes, first[b.Tenant])
		}
	}

	// Again, naming a town without any batch.
	code, out, errs = runApbatch(t, ctx, append([]string{"refresh", "--campaign", "2027-09", "--tenant", "ville-a,ville-b,ville-c"}, common...)...)
	if code != 0 {
		t.Fatalf("second refresh: %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"ville-a: already refreshed for campaign 2027-09", "ville-b: already refreshed for campaign 2027-09", "ville-c: no roster"} {
		if !strings.Contains(out, want) {
			t.Errorf("second refresh output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "new batch") {
		t.Errorf("second refresh started a batch:\n%s", out)
	}
	store, err := ledger.Open(ctx, "sqlite://"+filepath.Join(data, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, town := range []string{"ville-a", "ville-b"} {
		bs, err := store.TenantBatches(ctx, town, "2027-09")
		if err != nil || len(bs) != 1 {
			t.Errorf("%s: %d batches in 2027-09 (%v), want 1", town, len(bs), err)
		}
	}
	all, err := store.Batches(ctx)
	if err != nil || len(all) != 4 {
		t.Errorf("%d batches in the ledger (%v), want 4", len(all), err)
	}
}

// TestRefresh_Diff: after a campaign, the sources change for four people
// (three QF that cross a bracket, one dossier closed); the refresh's
// diff.parquet lists exactly them, with old and new values, and the
// manifest counts them.
func TestRefresh_Diff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	pop := sandbox.NewPopulation(60, 7)
	api, tok := fastSandbox(t, pop)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	roster := filepath.Join(dir, "cantine.csv")
	f, err := os.Create(roster)
	if err != nil {
		t.Fatal(err)
	}
	if err := pop.WriteCSV(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	const gridPath = "../../deploy/samples/tarifs-cantine.yaml"
	raw, err := os.ReadFile(gridPath)
	if err != nil {
		t.Fatal(err)
	}
	grid, err := schemas.ParseTariffGrid(raw)
	if err != nil {
		t.Fatal(err)
	}
	price := func(status schemas.Status, qf *int64) (*string, *int64) {
		r := schemas.Result{Check: schemas.CheckQuotientFamilial, Status: status, QFValue: qf}
		grid.Apply(&r)
		return &r.Tranche, r.TarifCents
	}

	provider := []string{"--data-dir", filepath.Join(dir, "data"), "--provider-url", api.URL, "--token-file", tokenFile,
		"--no-maintenance-skip", "--flush-interval", "300ms"}
	sumPath := filepath.Join(dir, "first.json")
	args := append([]string{"run", "--tenant", "ville", "--campaign", "2026-09", "--recipient", "13002526500013",
		"--tariff", gridPath, "--summary-json", sumPath}, provider...)
	if code, out, errs := runApbatch(t, ctx, append(args, roster)...); code != 0 {
		t.Fatalf("run: %d\n%s\n%s", code, out, errs)
	}
	firstID := readSummary(t, sumPath).BatchID

	// Three CNAF families cross a bracket, a fourth closes its dossier.
	type change struct {
		row            int64
		kind           string
		oldQF, newQF   *int64
		newStatus      schemas.Status
		oldTr, newTr   *string
		oldTar, newTar *int64
	}
	var want []change
	for i := 0; i < pop.Len() && len(want) < 4; i++ {
		per := pop.Person(i)
		if per.Outcome != sandbox.OutcomeCNAF {
			continue
		}
		old := int64(per.QF)
		c := change{row: int64(i + 2), oldQF: &old} // row_number is the line: header = 1
		c.oldTr, c.oldTar = price(schemas.StatusOK, &old)
		if len(want) < 3 {
			nqf := 1200
			if old > 700 {
				nqf = 300
			}
			if err := pop.Amend(i, sandbox.Change{QF: &nqf}); err != nil {
				t.Fatal(err)
			}
			n := int64(nqf)
			c.kind, c.newStatus, c.newQF = schemas.ChangeTranche, schemas.StatusOK, &n
			c.newTr, c.newTar = price(schemas.StatusOK, &n)
		} else {
			if err := pop.Amend(i, sandbox.Change{Outcome: sandbox.OutcomeNoFile}); err != nil {
				t.Fatal(err)
			}
			c.kind, c.newStatus = schemas.ChangeStatus, schemas.StatusNotFound
			c.newTr, c.newTar = price(schemas.StatusNotFound, nil)
		}
		want = append(want, c)
	}

	out := filepath.Join(dir, "out")
	sumPath = filepath.Join(dir, "refresh.json")
	code, stdout, errs := runApbatch(t, ctx, append([]string{"refresh", "--campaign", "2027-09", "--out", out, "--summary-json", sumPath}, provider...)...)
	if code != 0 {
		t.Fatalf("refresh: %d\n%s\n%s", code, stdout, errs)
	}
	if !strings.Contains(stdout, "4 changement(s) depuis la campagne 2026-09 (statut 1, tranche 3)") {
		t.Errorf("refresh output lacks the changes:\n%s", stdout)
	}
	sum := readSummary(t, sumPath)
	if len(sum.Batches) != 1 {
		t.Fatalf("summary %+v", sum)
	}
	b := sum.Batches[0]
	// The workbook's summary sheet lists them too.
	wb := filepath.Join(dir, "resultats.xlsx")
	if code, out, errs := runApbatch(t, ctx, "results", "--data-dir", filepath.Join(dir, "data"), "-o", wb, b.BatchID); code != 0 {
		t.Fatalf("results: %d\n%s\n%s", code, out, errs)
	}
	xf, err := excelize.OpenFile(wb)
	if err != nil {
		t.Fatal(err)
	}
	synth, err := xf.GetRows("Synthèse")
	xf.Close()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, r := range synth {
		text.WriteString(strings.Join(r, "|") + "\n")
	}
	for _, w := range []string{"Changements depuis la dernière campagne\nCampagne précédente|2026-09\n", "\nstatut|1\n", "\ntranche|3\n", "\nTotal|4\n"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("Synthèse lacks %q:\n%s", w, text.String())
		}
	}
	var m schemas.Manifest
	mb, err := os.ReadFile(filepath.Join(out, b.BatchID, "_manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	ch := m.Changes
	if ch == nil || ch.Total != 4 || ch.ByKind[schemas.ChangeTranche] != 3 || ch.ByKind[schemas.ChangeStatus] != 1 || len(ch.ByKind) != 2 ||
		ch.PreviousBatchID != firstID || ch.PreviousCampaign != "2026-09" || ch.Key != "diffs/ville/2027-09/"+b.BatchID+"/diff.parquet" {
		t.Fatalf("manifest changes %+v", ch)
	}
	if m.Tariff != grid.Version || m.RowsTotal != 60 {
		t.Errorf("manifest tariff %q, rows %d", m.Tariff, m.RowsTotal)
	}
	raw, err = os.ReadFile(filepath.Join(out, b.BatchID, "diff.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := parquet.DecodeDiff(raw)
	if err != nil {
		t.Fatal(err)
	}
	// An independent Parquet reader agrees.
	type diffRow struct {
		RowNumber *int64  `parquet:"row_number,optional"`
		Change    string  `parquet:"change"`
		OldQF     *int64  `parquet:"old_qf_value,optional"`
		NewStatus *string `parquet:"new_status,optional"`
		NewTarif  *int64  `parquet:"new_tarif,optional"`
	}
	other, err := pq.Read[diffRow](bytes.NewReader(raw), int64(len(raw)))
	if err != nil || len(other) != len(rows) {
		t.Fatalf("independent reader: %d rows, %v", len(other), err)
	}
	for i, o := range other {
		r := rows[i]
		if *o.RowNumber != *r.RowNumber || o.Change != r.Change || *o.OldQF != *r.OldQF || *o.NewStatus != *r.NewStatus || *o.NewTarif != *r.NewTarif {
			t.Errorf("independent reader, row %d: %+v, want %+v", i, o, r)
		}
	}
	if len(rows) != len(want) {
		t.Fatalf("diff has %d rows, want %d: %+v", len(rows), len(want), rows)
	}
	str := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	num := func(p *int64) int64 {
		if p == nil {
			return -1
		}
		return *p
	}
	for i, r := range rows {
		w := want[i]
		if r.RowNumber == nil || *r.RowNumber != w.row || r.PreviousRowNumber == nil || *r.PreviousRowNumber != w.row || r.Change != w.kind ||
			r.Check != string(schemas.CheckQuotientFamilial) || r.BatchID != b.BatchID || r.PreviousBatchID != firstID ||
			r.Tenant != "ville" || r.Campaign != "2027-09" || r.PreviousCampaign != "2026-09" {
			t.Errorf("diff row %d: %+v, want row %d %s", i, r, w.row, w.kind)
		}
		if str(r.OldStatus) != "ok" || str(r.NewStatus) != string(w.newStatus) || num(r.OldQF) != num(w.oldQF) || num(r.NewQF) != num(w.newQF) ||
			str(r.OldTranche) != str(w.oldTr) || str(r.NewTranche) != str(w.newTr) || num(r.OldTarif) != num(w.oldTar) || num(r.NewTarif) != num(w.newTar) {
			t.Errorf("row %d: %s→%s QF %d→%d %s→%s %d→%d; want QF %d→%d %s→%s %d→%d", w.row, str(r.OldStatus), str(r.NewStatus),
				num(r.OldQF), num(r.NewQF), str(r.OldTranche), str(r.NewTranche), num(r.OldTarif), num(r.NewTarif),
				num(w.oldQF), num(w.newQF), str(w.oldTr), str(w.newTr), num(w.oldTar), num(w.newTar))
		}
		if r.Reference == nil || !strings.HasPrefix(*r.Reference, "SYN-") {
			t.Errorf("row %d: reference %v", w.row, r.Reference)
		}
	}
}

func TestRefresh_FlagErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no campaign", []string{}, "--campaign"},
		{"bad campaign", []string{"--campaign", "../x"}, "--tenant/--campaign"},
		{"bad tenant", []string{"--campaign", "2027-09", "--tenant", "a,b/c"}, "--tenant/--campaign"},
		{"bad period", []string{"--campaign", "2027-09", "--period", "2027-13"}, "--period"},
		{"a file", []string{"--campaign", "2027-09", "roster.csv"}, "unexpected argument"},
		{"no ledger", []string{"--campaign", "2027-09"}, "aucun registre dans"},
		{"kafka without db", []string{"--campaign", "2027-09", "--kafka", "127.0.0.1:1"}, "--db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"refresh", "--data-dir", t.TempDir()}, tc.args...)
			code, stdout, stderr := runApbatch(t, ctx, args...)
			if code == 0 || !strings.Contains(stdout+stderr, tc.want) {
				t.Fatalf("exit %d, output:\n%s%s", code, stdout, stderr)
			}
		})
	}
	if code, stdout, _ := runApbatch(t, ctx, "help", "refresh"); code != 0 || !strings.Contains(stdout, "diff.parquet") || !strings.Contains(stdout, "-campaign") {
		t.Fatalf("help refresh: exit %d\n%s", code, stdout)
	}
}

// webhook is an alerting endpoint for tests: it keeps the JSON events
// posted to it.
type webhook struct {
	mu     sync.Mutex
	events []map[string]any
	raw    []string
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev map[string]any
	if r.Method != http.MethodPost || json.Unmarshal(body, &ev) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.events, h.raw = append(h.events, ev), append(h.raw, string(body))
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// waitEvent waits for the event of batch id and returns it with its raw
// JSON.
func (h *webhook) waitEvent(t *testing.T, ctx context.Context, id string) (map[string]any, string) {
	t.Helper()
	for {
		h.mu.Lock()
		for i, ev := range h.events {
			if ev["batch_id"] == id {
				h.mu.Unlock()
				return ev, h.raw[i]
			}
		}
		h.mu.Unlock()
		if ctx.Err() != nil {
			t.Fatalf("no event for batch %s", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRefresh_WaitRoles: with role processes, refresh --campaign auto
// --wait follows the new batch and exits 0 once it is complete, and 3,
// saying what to do, when the batch is refused; the write and ingest roles
// post each batch's end to the webhook, without personal data.
func TestRefresh_WaitRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	kafkaAddr, s3Addr := freeAddr(t), freeAddr(t)
	pop := sandbox.NewPopulation(20, 4)
	api, tok := fastSandbox(t, pop)
	hook := &webhook{}
	alerts := httptest.NewServer(hook)
	defer alerts.Close()
	environ := rolesEnviron(dir, kafkaAddr, s3Addr, api.URL, tok)
	environ["APBATCH_NOTIFY_URL"] = alerts.URL + "/hooks/alertes"
	var wg sync.WaitGroup
	start := func(args ...string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, errb syncBuffer
			e := env{stdout: &out, stderr: &errb, getenv: func(k string) string { return environ[k] }}
			if code := runMain(ctx, e, args); code != 0 && ctx.Err() == nil {
				t.Errorf("%v: exit %d\n%s%s", args, code, out.String(), errb.String())
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	start("broker", "--data-dir", filepath.Join(dir, "kafka"), "--addr", kafkaAddr)
	start("s3", "--dir", filepath.Join(dir, "s3"), "--addr", s3Addr)
	waitListening(t, ctx, kafkaAddr, s3Addr)
	start("serve", "--roles", "ingest,work,write", "--flush-interval", "300ms")

	var roster bytes.Buffer
	if err := pop.WriteCSV(&roster); err != nil {
		t.Fatal(err)
	}
	store, err := ledger.Open(ctx, environ["APBATCH_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, town := range []string{"ville-a", "ville-b"} {
		id := submit(t, ctx, kafkaAddr, s3Addr, pipeline.IncomingKey{Tenant: town, Campaign: "2020-09", File: "cantine.csv"}.String(), roster.Bytes())
		waitComplete(t, ctx, store, id)
	}
	// ville-b's column mapping no longer reads: its refresh is refused.
	client, err := s3.NewClient(ctx, s3.Config{Endpoint: "http://" + s3Addr, Bucket: "apbatch", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	broken := []byte("nom_naissance: [NOM\n")
	if _, err := client.Put(ctx, pipeline.ColumnsKey("ville-b"), bytes.NewReader(broken), int64(len(broken)), "application/yaml"); err != nil {
		t.Fatal(err)
	}

	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	campaign := pipeline.SchoolYearCampaign(time.Now().In(paris))
	refresh := func(town string) (int, string, string) {
		var out, errb syncBuffer
		e := env{stdout: &out, stderr: &errb, getenv: func(k string) string { return environ[k] }}
		code := runMain(ctx, e, []string{"refresh", "--campaign", "auto", "--tenant", town, "--wait", "--wait-interval", "200ms"})
		return code, out.String(), errb.String()
	}
	newBatch := regexp.MustCompile(`: (?:new batch|already refreshed for campaign \S+: batch) (b[0-9a-f]+)`)

	code, out, errs := refresh("ville-a")
	m := newBatch.FindStringSubmatch(out)
	if code != 0 || m == nil || !strings.Contains(out, "campaign "+campaign+" (the school year of today)") ||
		!strings.Contains(out, "1 lot(s) terminé(s)") || !strings.Contains(errs, "ville-a : lot "+m[1]+" : terminé, 20 résultat(s)") {
		t.Fatalf("refresh ville-a: exit %d\n%s\n%s", code, out, errs)
	}
	if b, err := store.Batch(ctx, m[1]); err != nil || b.State != ledger.StateComplete || b.Campaign != campaign {
		t.Fatalf("ville-a's refreshed batch %+v, %v", b, err)
	}
	okID := m[1]

	for i := 0; i < 2; i++ { // the second run follows the batch the first submitted
		code, out, errs = refresh("ville-b")
		m = newBatch.FindStringSubmatch(out)
		if code != 3 || m == nil || !strings.Contains(errs, "ville-b (lot "+m[1]+") : refusé : correspondance de colonnes illisible") ||
			!strings.Contains(errs, "apbatch run --tenant ville-b --campaign "+campaign+" FICHIER") ||
			!strings.Contains(errs, "apbatch refresh : 1 lot(s) sur 1 sans résultat complet : ville-b (lot "+m[1]+") refusé") {
			t.Fatalf("refresh ville-b (run %d): exit %d\n%s\n%s", i+1, code, out, errs)
		}
	}
	failedID := m[1]

	names := []string{tok, "cantine", "incoming/", "/hooks/alertes", "colonnes"}
	for i := 0; i < pop.Len(); i++ {
		names = append(names, pop.Person(i).NomNaissance)
	}
	allowed := map[string]bool{"id": true, "event": true, "batch_id": true, "tenant": true, "campaign": true, "state": true, "checks": true,
		"rows_total": true, "results": true, "by_status": true, "created_at": true, "ended_at": true}
	for id, want := range map[string][4]string{
		okID:     {"batch.complete", "complete", "ville-a", "20"},
		failedID: {"batch.failed", "failed", "ville-b", "0"},
	} {
		ev, raw := hook.waitEvent(t, ctx, id)
		if ev["event"] != want[0] || ev["state"] != want[1] || ev["tenant"] != want[2] || ev["campaign"] != campaign || fmt.Sprint(ev["results"]) != want[3] {
			t.Errorf("event of %s: %s, want %v", id, raw, want)
		}
		for k := range ev {
			if !allowed[k] {
				t.Errorf("event of %s has field %q: %s", id, k, raw)
			}
		}
		for _, n := range names {
			if n != "" && strings.Contains(raw, n) {
				t.Errorf("event of %s holds %q: %s", id, n, raw)
			}
		}
	}
	if ev, _ := hook.waitEvent(t, ctx, okID); fmt.Sprint(ev["by_status"]) == "map[]" {
		t.Errorf("complete event without counts: %v", ev)
	}
}

// TestRun_NotifyURL: run, on the embedded services, posts the batch's end
// to --notify-url before it exits; a webhook that does not answer is
// logged and the run still succeeds.
func TestRun_NotifyURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	roster := filepath.Join(dir, "cantine.csv")
	if code, out, errs := runApbatch(t, ctx, "sandbox", "gen", "--population", "10", "--seed", "3", "-o", roster); code != 0 {
		t.Fatalf("gen: %d %s %s", code, out, errs)
	}
	hook := &webhook{}
	alerts := httptest.NewServer(hook)
	defer alerts.Close()
	common := []string{"--data-dir", filepath.Join(dir, "data"), "--sandbox-population", "10", "--sandbox-seed", "3", "--flush-interval", "200ms"}
	sumPath := filepath.Join(dir, "summary.json")
	args := append([]string{"run", "--tenant", "ville", "--campaign", "2026-09", "--notify-url", alerts.URL, "--summary-json", sumPath}, common...)
	if code, out, errs := runApbatch(t, ctx, append(args, roster)...); code != 0 {
		t.Fatalf("run: %d\n%s\n%s", code, out, errs)
	}
	id := readSummary(t, sumPath).BatchID
	hook.mu.Lock()
	n := len(hook.events)
	hook.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d events posted by the time run exits, want 1", n)
	}
	if ev, raw := hook.waitEvent(t, ctx, id); ev["event"] != "batch.complete" || ev["tenant"] != "ville" || fmt.Sprint(ev["results"]) != "10" {
		t.Errorf("event %s", raw)
	}

	// A webhook that refuses: logged (component=notify), run succeeds.
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	defer down.Close()
	args = append([]string{"run", "--tenant", "ville-2", "--campaign", "2026-09", "--notify-url", down.URL + "/hooks/s3cr3t", "--log-level", "warn"}, common...)
	code, out, errs := runApbatch(t, ctx, append(args, roster)...)
	if code != 0 || !strings.Contains(errs, "notify") || !strings.Contains(errs, "403") || strings.Contains(errs, "s3cr3t") {
		t.Fatalf("run with a webhook down: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := runApbatch(t, ctx, append([]string{"run", "--notify-url", "hooks.example.org/x"}, append(common, roster)...)...); code == 0 || !strings.Contains(errs, "--notify-url") {
		t.Fatalf("run with a bad --notify-url: exit %d\n%s", code, errs)
	}
}
