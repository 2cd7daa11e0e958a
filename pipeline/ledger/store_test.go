package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// eachLedgerURL runs test once per dialect, as subtests named after it, each
// with the URL of a fresh ledger: SQLite always; PostgreSQL, a database of
// its own dropped afterwards, when APBATCH_TEST_POSTGRES_URL names a server
// (its database is only used to create the others), skipped otherwise.
func eachLedgerURL(t *testing.T, test func(t *testing.T, url string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		test(t, "sqlite://"+filepath.Join(t.TempDir(), "ledger.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		test(t, freshPostgres(t))
	})
}

// eachLedger runs test once per dialect on a fresh, migrated ledger, as
// eachLedgerURL does; the store is closed when the subtest ends.
func eachLedger(t *testing.T, test func(t *testing.T, s *Store)) {
	t.Helper()
	eachLedgerURL(t, func(t *testing.T, u string) {
		test(t, openLedger(t, u))
	})
}

// openLedger opens the ledger at u, closed when the test ends.
func openLedger(t *testing.T, u string) *Store {
	t.Helper()
	s, err := Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// freshPostgres creates an empty database on the server
// APBATCH_TEST_POSTGRES_URL names, dropped when the test ends, and returns
// its URL; it skips the test when the variable is unset.
func freshPostgres(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("APBATCH_TEST_POSTGRES_URL")
	if admin == "" {
		t.Skip("APBATCH_TEST_POSTGRES_URL unset: PostgreSQL ledger not tested")
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("apbatch_ledger_%d", rand.Uint32())
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
		db.Close()
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
