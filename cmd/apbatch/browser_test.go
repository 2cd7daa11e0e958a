package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/xuri/excelize/v2"
)

// The portal's browser tests drive Debian's Chromium with chromedp and check
// each page with axe-core (cmd/apbatch/testdata/axe, installed by .ci/run
// with npm ci). Without Chromium or axe they skip, unless
// APBATCH_REQUIRE_BROWSER is set (as .ci/run does), when they fail.
// APBATCH_SCREENSHOTS names a folder to keep the pages' screenshots in.

// chromiumPath returns the browser to drive, or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("APBATCH_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	browserMissing(t, "no Chromium found (apt-get install chromium, or set APBATCH_CHROMIUM)")
	return ""
}

func browserMissing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("APBATCH_REQUIRE_BROWSER") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// axeSource returns axe-core's script.
func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "axe", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		browserMissing(t, "axe-core is not installed: npm ci --prefix cmd/apbatch/testdata/axe")
	}
	return string(b)
}

// newChromium starts a headless Chromium of its own profile; its context
// ends with the test.
func newChromium(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "fr-FR"),
		chromedp.Env("LANGUAGE=fr", "LANG=fr_FR.UTF-8"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(bctx); err != nil {
		browserMissing(t, fmt.Sprintf("chromium does not start: %v", err))
	}
	return bctx
}

// axeViolation is one failed axe rule.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any  `json:"target"`
		HTML   string `json:"html"`
	} `json:"nodes"`
}

// checkAxe runs axe-core's WCAG 2.1 A and AA rules (the ones RGAA 4.1
// rests on) on the page shown, and fails the test for each violation.
func checkAxe(t *testing.T, bctx context.Context, axe, page string) {
	t.Helper()
	loaded, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`typeof axe !== "undefined"`))
	if err != nil {
		t.Fatal(err)
	}
	if !loaded {
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](axe+";true")); err != nil {
			t.Fatalf("%s: loading axe: %v", page, err)
		}
	}
	script := `axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}).then(r => r.violations)`
	raw, err := chromedp.Run(bctx, chromedp.Evaluate[[]byte](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: axe: %v", page, err)
	}
	var violations []axeViolation
	if err := json.Unmarshal(raw, &violations); err != nil {
		t.Fatalf("%s: axe's answer: %v", page, err)
	}
	for _, v := range violations {
		var where []string
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprint(n.Target)+" "+n.HTML)
		}
		t.Errorf("%s: axe %s (%s): %s\n  %s", page, v.ID, v.Impact, v.Help, strings.Join(where, "\n  "))
	}
}

// screenshot keeps a full-page PNG of the page shown, in
// APBATCH_SCREENSHOTS or the test's temporary folder.
func screenshot(t *testing.T, bctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("APBATCH_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// focused describes the element that has the keyboard focus.
const focusedJS = `(() => { const e = document.activeElement; if (!e || e === document.body) return "";
  return e.tagName.toLowerCase() + "|" + (e.getAttribute("href") || e.getAttribute("type") || "") + "|" + (e.innerText || e.value || "").trim(); })()`

// tabTo presses Tab until the focused element's description contains
// want, and returns the descriptions passed on the way (the focus order).
func tabTo(t *testing.T, bctx context.Context, want string) []string {
	t.Helper()
	var order []string
	for i := 0; i < 40; i++ {
		if err := chromedp.Do(bctx, chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
		f, err := chromedp.Run(bctx, chromedp.Evaluate[string](focusedJS))
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, f)
		if strings.Contains(f, want) {
			return order
		}
	}
	t.Fatalf("Tab never reached %q; focus order: %q", want, order)
	return nil
}

// waitText waits until the page's text holds want.
func waitText(t *testing.T, bctx context.Context, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		text, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		if err == nil && strings.Contains(text, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never showed %q; it shows:\n%s", want, text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBrowser_AgentUploadsFollowsDownloads walks the portal as an agent
// does, with the keyboard only: sign in through the printed link, reach
// the upload form, send the sample roster, follow its progress (live,
// through app.js) and download resultats.xlsx. Every page passes axe;
// the workbook opens with one row per family; no URL holds the file's
// name.
func TestBrowser_AgentUploadsFollowsDownloads(t *testing.T) {
	axe := axeSource(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bctx := newChromium(t, ctx)
	wp := startWeb(t, ctx, nil, "--tenant", "ville-a", "--tariff", "../../deploy/samples/tarifs-cantine.yaml")
	link := regexp.MustCompile(`http://\S+/connexion\?jeton=[0-9a-f]+`).FindString(wp.log.String())
	if link == "" {
		t.Fatalf("no sign-in link printed:\n%s", wp.log.String())
	}

	// The sign-in page, before the link, and a wrong key: role="alert".
	if err := chromedp.Do(bctx, chromedp.Navigate(wp.base+"/connexion")); err != nil {
		t.Fatal(err)
	}
	checkAxe(t, bctx, axe, "connexion")
	screenshot(t, bctx, "01-connexion")
	if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.ID("cle"), "pas-la-bonne-cle\r")); err != nil {
		t.Fatal(err)
	}
	waitText(t, bctx, "n'est pas reconnue", 10*time.Second)
	alerts, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('[role="alert"]').length`))
	if err != nil || alerts != 1 {
		t.Fatalf("a refused key shows %d role=alert messages (%v)", alerts, err)
	}
	checkAxe(t, bctx, axe, "connexion refusée")

	if err := chromedp.Do(bctx, chromedp.Navigate(link)); err != nil {
		t.Fatal(err)
	}
	waitText(t, bctx, "Aucun lot pour l'instant", 10*time.Second)
	checkAxe(t, bctx, axe, "lots (vide)")
	screenshot(t, bctx, "02-lots-vide")

	// Keyboard only: the skip link comes first, then the menu, then the
	// page's own button to the upload form.
	order := tabTo(t, bctx, "/lots/nouveau|Déposer un fichier de familles")
	if !strings.Contains(order[0], "Aller au contenu") {
		t.Errorf("the first Tab stop is %q, want the skip link", order[0])
	}
	if err := chromedp.Do(bctx, chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	waitText(t, bctx, "Fichier des familles", 10*time.Second)
	checkAxe(t, bctx, axe, "nouveau")
	screenshot(t, bctx, "03-nouveau")
	campaign, err := chromedp.Run(bctx, chromedp.Value(chromedp.ID("campaign")))
	if err != nil || !regexp.MustCompile(`^20\d\d-09$`).MatchString(campaign) {
		t.Errorf("campaign defaults to %q (%v), want the school year", campaign, err)
	}

	// A browser cannot type into a file picker: the file is chosen as a
	// picker would, the rest is the keyboard.
	sample, err := filepath.Abs(webSample)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.SetUploadFiles(chromedp.ID("file"), []string{sample}), chromedp.Focus(chromedp.ID("file"))); err != nil {
		t.Fatal(err)
	}
	order = tabTo(t, bctx, "button|submit|Déposer et vérifier")
	if !strings.HasPrefix(order[0], "input|text") {
		t.Errorf("after the file, Tab goes to %q, want the campaign field", order[0])
	}
	if err := chromedp.Do(bctx, chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}

	// The batch page follows the batch live, then offers the downloads.
	waitText(t, bctx, "Fichier cantine-mairie.csv", 30*time.Second)
	at, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(at, "cantine") || !regexp.MustCompile(`/lots/[^/]+$`).MatchString(at) {
		t.Errorf("the batch page's address is %q: it must name the batch, not the file", at)
	}
	running, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`!!document.querySelector('progress[role="progressbar"][aria-valuenow]')`))
	if err != nil {
		t.Fatal(err)
	}
	if running {
		checkAxe(t, bctx, axe, "lot en cours")
		screenshot(t, bctx, "04-lot-en-cours")
	}
	waitText(t, bctx, "Télécharger les résultats", 2*time.Minute)
	waitText(t, bctx, "terminé", 10*time.Second)
	checkAxe(t, bctx, axe, "lot terminé")
	screenshot(t, bctx, "05-lot-termine")

	downloads := t.TempDir()
	if _, err := chromedp.CallBrowser(bctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads}); err != nil {
		t.Fatal(err)
	}
	tabTo(t, bctx, "/resultats.xlsx|")
	if err := chromedp.Do(bctx, chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	xlsx := filepath.Join(downloads, "resultats.xlsx")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if info, err := os.Stat(xlsx); err == nil && info.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(downloads)
			t.Fatalf("resultats.xlsx was not downloaded; the folder holds %v", entries)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the download's rename is its last step
	f, err := excelize.OpenFile(xlsx)
	if err != nil {
		t.Fatalf("the downloaded workbook does not open: %v", err)
	}
	defer f.Close()
	rows, err := f.GetRows(f.GetSheetName(0))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+18 {
		t.Errorf("the workbook's first sheet has %d rows, want a header and one row per family (18)", len(rows))
	}

	// The list shows the batch; the settings page passes too.
	for _, p := range []struct{ path, name, want string }{
		{"/lots", "06-lots", "cantine-mairie.csv"},
		{"/parametres", "07-parametres", "Grille tarifaire"},
	} {
		if err := chromedp.Do(bctx, chromedp.Navigate(wp.base+p.path)); err != nil {
			t.Fatal(err)
		}
		waitText(t, bctx, p.want, 10*time.Second)
		checkAxe(t, bctx, axe, p.path)
		screenshot(t, bctx, p.name)
	}
}

// TestBrowser_WithoutJavaScript: with scripts disabled, an agent still
// signs in, uploads and reaches the downloads by reloading the batch page.
func TestBrowser_WithoutJavaScript(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bctx := newChromium(t, ctx)
	wp := startWeb(t, ctx, nil, "--tenant", "ville-a")
	link := regexp.MustCompile(`http://\S+/connexion\?jeton=[0-9a-f]+`).FindString(wp.log.String())
	sample, err := filepath.Abs(webSample)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx,
		chromedp.Navigate(link),
		chromedp.Navigate(wp.base+"/lots/nouveau"),
		chromedp.SetUploadFiles(chromedp.ID("file"), []string{sample}),
		chromedp.Click(chromedp.CSS(`form[action="/lots"] button[type="submit"]`)),
	); err != nil {
		t.Fatal(err)
	}
	waitText(t, bctx, "Fichier cantine-mairie.csv", 30*time.Second)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if err := chromedp.Do(bctx, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('a[href$="/resultats.xlsx"]').length`))
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the downloads never appeared on reload")
		}
		time.Sleep(time.Second)
	}
}
