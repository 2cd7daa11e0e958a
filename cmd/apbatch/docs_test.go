package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// repoDocs returns the Markdown files of the repository (not those of
// installed npm packages).
func repoDocs(t *testing.T) []string {
	t.Helper()
	var docs []string
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			docs = append(docs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// headingSlug is the anchor a Markdown heading gets on the usual forges:
// lower case, punctuation dropped, spaces as hyphens.
func headingSlug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

var (
	mdLink    = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+)$`)
)

// TestDocs_LinksResolve: every relative link of README.md and the other
// documents names a file of the repository, and its #anchor a heading of
// that file.
func TestDocs_LinksResolve(t *testing.T) {
	docs := repoDocs(t)
	if len(docs) < 5 {
		t.Fatalf("only %d documents found: %v", len(docs), docs)
	}
	for _, doc := range docs {
		raw, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(raw), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := doc
			if file != "" {
				path = filepath.Join(filepath.Dir(doc), file)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %q: no such file", doc, target)
				continue
			}
			if anchor == "" || !strings.HasSuffix(path, ".md") {
				continue
			}
			body, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, h := range mdHeading.FindAllStringSubmatch(string(body), -1) {
				if headingSlug(strings.ReplaceAll(h[1], "`", "")) == anchor {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("%s: link %q: %s has no heading with that anchor", doc, target, path)
			}
		}
	}
}

// TestDocs_ReadmeIsAGuide: the README stays a short guide with the two
// commands in its first screen, and no document speaks of past work units.
func TestDocs_ReadmeIsAGuide(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	if len(lines) > 260 {
		t.Errorf("README.md has %d lines: move reference material beside the code it describes", len(lines))
	}
	first := strings.Join(lines[:min(40, len(lines))], "\n")
	for _, cmd := range []string{"go run ./cmd/apbatch run", "go test ./..."} {
		if !strings.Contains(first, cmd) {
			t.Errorf("README.md's first screen lacks %q", cmd)
		}
	}
	history := regexp.MustCompile(`\b[Ss]tops? [0-9]+\b|\b[Ss]ession [0-9]+\b`)
	for _, doc := range repoDocs(t) {
		body, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if m := history.FindString(string(body)); m != "" {
			t.Errorf("%s speaks of %q: say what the code does now, history lives in git", doc, m)
		}
	}
}
