package ledger

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

func (s *Store) migrate(ctx context.Context) error {
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
	dir := "migrations/" + s.dialect.String()
	entries, err := fs.ReadDir(schemas.Migrations, dir)
	if err != nil {
		return fmt.Errorf("ledger: read migrations: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
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
		body, err := fs.ReadFile(schemas.Migrations, dir+"/"+name)
		if err != nil {
			return fmt.Errorf("ledger: read migration %s: %w", name, err)
		}
		tx, err := s.db.BeginTxx(ctx, nil)
		if err != nil {
			return fmt.Errorf("ledger: begin migration %s: %w", name, err)
		}
		// Claim the migration first: processes starting together (roles
		// on one ledger) wait here for whoever claimed it, then find it
		// applied.
		res, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO schema_migrations (version) VALUES (?) ON CONFLICT DO NOTHING`), name)
		if err != nil {
			tx.Rollback()
			return fmt.Errorf("ledger: claim migration %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			tx.Rollback()
			continue
		}
		for _, stmt := range strings.Split(string(body), ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				tx.Rollback()
				return fmt.Errorf("ledger: apply migration %s: %w", name, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("ledger: commit migration %s: %w", name, err)
		}
	}
	return nil
}
