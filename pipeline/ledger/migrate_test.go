package ledger

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/apbatch/apbatch/schemas"
)

// TestMigrate_WholeFiles: a migration runs whole, semicolons in comments
// and strings included; one that fails leaves neither its changes nor its
// record, and the next run applies only what is missing.
func TestMigrate_WholeFiles(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		fsys := fstest.MapFS{
			"m/0001_semicolons.sql": {Data: []byte("-- a comment; with a semicolon\n" +
				"CREATE TABLE t_semi (v TEXT NOT NULL);\n" +
				"INSERT INTO t_semi (v) VALUES ('a;b'), ('c');\n")},
			"m/0002_fails.sql": {Data: []byte("CREATE TABLE t_fails (v TEXT);\nINSERT INTO t_nowhere (v) VALUES ('x')")},
			"m/README":         {Data: []byte("not a migration")},
		}
		err := s.applyMigrations(ctx, fsys, "m")
		if err == nil || !strings.Contains(err.Error(), "0002_fails.sql") {
			t.Fatalf("applyMigrations = %v, want the failure of 0002_fails.sql", err)
		}
		var vs []string
		if err := s.db.SelectContext(ctx, &vs, `SELECT v FROM t_semi ORDER BY v`); err != nil || strings.Join(vs, " ") != "a;b c" {
			t.Fatalf("t_semi = %q, %v", vs, err)
		}
		if _, err := s.db.ExecContext(ctx, `SELECT * FROM t_fails`); err == nil {
			t.Fatal("the failed migration's table exists")
		}
		delete(fsys, "m/0002_fails.sql")
		if err := s.applyMigrations(ctx, fsys, "m"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := s.db.GetContext(ctx, &n, `SELECT COUNT(*) FROM t_semi`); err != nil || n != 2 {
			t.Fatalf("t_semi after a second run: %d rows, %v; want 2", n, err)
		}
		var recorded []string
		if err := s.db.SelectContext(ctx, &recorded, `SELECT version FROM schema_migrations WHERE version IN ('0001_semicolons.sql', '0002_fails.sql')`); err != nil {
			t.Fatal(err)
		}
		if strings.Join(recorded, " ") != "0001_semicolons.sql" {
			t.Fatalf("recorded = %q", recorded)
		}
	})
}

// TestMigrate_Recorded: a ledger records its dialect's migrations by file
// name, as ledgers migrated before did, so those are found up to date and
// a second run applies nothing.
func TestMigrate_Recorded(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		entries, err := fs.ReadDir(schemas.Migrations, "migrations/"+s.dialect.String())
		if err != nil {
			t.Fatal(err)
		}
		var files []string
		for _, e := range entries {
			files = append(files, e.Name())
		}
		var recorded []string
		if err := s.db.SelectContext(ctx, &recorded, `SELECT version FROM schema_migrations ORDER BY version`); err != nil {
			t.Fatal(err)
		}
		if strings.Join(recorded, " ") != strings.Join(files, " ") {
			t.Fatalf("recorded %q, want the files %q", recorded, files)
		}
		// A second run finds nothing to do (0003 and 0012 of SQLite, which
		// rebuild tables, would fail if run again).
		if err := s.migrate(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
