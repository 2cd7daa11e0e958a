package ledger

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// migrate applies the dialect's pending migrations (schemas.Migrations).
func (s *Store) migrate(ctx context.Context) error {
	return s.applyMigrations(ctx, schemas.Migrations, "migrations/"+s.dialect.String())
}

// applyMigrations applies the .sql files of dir in fsys not yet recorded in
// schema_migrations, in name order, each whole in one transaction with its
// record. A migration is known by its file name: a ledger records the
// names it applied.
func (s *Store) applyMigrations(ctx context.Context, fsys fs.FS, dir string) error {
	// Processes starting together may race to create the table
	// (PostgreSQL can then refuse one CREATE ... IF NOT EXISTS): retry.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if _, err = s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY)`); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("ledger: create schema_migrations: %w", err)
	}
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("ledger: read migrations: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		var n int
		if err := s.db.GetContext(ctx, &n, s.db.Rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), name); err != nil {
			return fmt.Errorf("ledger: check migration %s: %w", name, err)
		}
		if n > 0 {
			continue
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return fmt.Errorf("ledger: read migration %s: %w", name, err)
		}
		if err := s.applyMigration(ctx, name, string(body)); err != nil {
			return err
		}
	}
	return nil
}

// applyMigration runs the statements of body, the migration name, in one
// transaction that records it, unless another process recorded it first.
// body goes to the driver whole, in one Exec without arguments, which both
// drivers run statement after statement (pgx as a simple-protocol query):
// a semicolon in a comment, a string or a trigger's body is no boundary.
func (s *Store) applyMigration(ctx context.Context, name, body string) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ledger: begin migration %s: %w", name, err)
	}
	defer tx.Rollback()
	// Claim the migration first: processes starting together (roles on one
	// ledger) wait here for whoever claimed it, then find it applied.
	res, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO schema_migrations (version) VALUES (?) ON CONFLICT DO NOTHING`), name)
	if err != nil {
		return fmt.Errorf("ledger: claim migration %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	if strings.TrimSpace(body) != "" {
		if _, err := tx.ExecContext(ctx, body); err != nil {
			return fmt.Errorf("ledger: apply migration %s: %w", name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ledger: commit migration %s: %w", name, err)
	}
	return nil
}
