package ledger

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// dialect is what differs between the two databases a ledger runs on. Open
// chooses it once, from the URL; the rest of the package asks it its few
// questions rather than naming a database. Placeholders are left to sqlx,
// which rebinds them by the driver the dialect names.
type dialect uint8

const (
	// dialectSQLite is the embedded mode's database (modernc.org/sqlite).
	dialectSQLite dialect = iota + 1
	// dialectPostgres is the production database (pgx).
	dialectPostgres
)

// String returns "sqlite" or "postgres": Store.Dialect's answer, and the
// folder of the dialect's migrations in schemas.Migrations.
func (d dialect) String() string {
	switch d {
	case dialectSQLite:
		return "sqlite"
	case dialectPostgres:
		return "postgres"
	}
	return fmt.Sprintf("dialect(%d)", uint8(d))
}

// parseURL returns the dialect of a ledger URL and its database/sql driver
// and data source name. Accepted forms: "sqlite://PATH" (a file whose
// folder is created if needed), "sqlite::memory:", and "postgres://..." /
// "postgresql://...".
func parseURL(dbURL string) (d dialect, driver, dsn string, err error) {
	switch {
	case strings.HasPrefix(dbURL, "postgres://"), strings.HasPrefix(dbURL, "postgresql://"):
		return dialectPostgres, "pgx", dbURL, nil
	case strings.HasPrefix(dbURL, "sqlite://"), strings.HasPrefix(dbURL, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(dbURL, "sqlite://"), "sqlite:")
		if path == "" {
			return 0, "", "", errors.New("ledger: sqlite URL has no path (want sqlite://PATH)")
		}
		if path != ":memory:" {
			if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
				return 0, "", "", fmt.Errorf("ledger: create folder for %s: %w", path, err)
			}
		}
		return dialectSQLite, "sqlite", "file:" + path + "?" + sqlitePragmas().Encode(), nil
	}
	return 0, "", "", fmt.Errorf("ledger: unsupported database URL scheme (want sqlite://PATH or postgres://...)")
}

// sqlitePragmas are the connection settings of a SQLite ledger.
func sqlitePragmas() url.Values {
	q := url.Values{}
	// busy_timeout first: switching to WAL takes a lock that processes
	// opening the ledger together must wait for, not fail on.
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// In WAL mode, NORMAL survives a killed process; only a power
	// loss may drop the last commits (the embedded mode's broker does
	// not fsync either). PostgreSQL is the durable production store.
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// The audit trail's identity index takes random keys, so each
	// commit touches pages all over it: a page cache holding it spares
	// re-reading them (8 MiB; SQLite's default is 2 MiB).
	q.Add("_pragma", "cache_size(-8192)")
	// Statement journals and temporary sort tables in memory, not in
	// temporary files (nothing durable lives there).
	q.Add("_pragma", "temp_store(MEMORY)")
	// Checkpoint the WAL into the database every 10,000 pages (about
	// 40 MiB of WAL) rather than 1,000: a page the audit inserts
	// rewrite in many commits is copied back once per checkpoint, and
	// checkpoints (each with an fsync) are ten times rarer. A commit
	// still survives a killed process (it is in the WAL when it
	// returns); a power loss, which may drop the commits made since
	// the last checkpoint (see synchronous above), may drop up to
	// ten times more of them.
	q.Add("_pragma", "wal_autocheckpoint(10000)")
	q.Add("_time_format", "sqlite")
	return q
}

// maxOpenConns is the connection pool's bound (0: none). SQLite has one
// writer: it serialises writes anyway, and a single connection avoids
// SQLITE_BUSY between our own goroutines.
func (d dialect) maxOpenConns() int {
	if d == dialectSQLite {
		return 1
	}
	return 0
}

// busy reports whether err, from connecting, is worth retrying: on SQLite,
// a process switching the file to WAL holds a lock the busy handler does
// not wait for.
func (d dialect) busy(err error) bool {
	return d == dialectSQLite && err != nil && strings.Contains(err.Error(), "SQLITE_BUSY")
}

// insertAborting is the verb of an INSERT whose failing row aborts the whole
// transaction. PostgreSQL always does; SQLite would abort the statement
// only, and keeps a statement journal (a copy of every page the statement
// changes) to do so: OR ROLLBACK spares it.
func (d dialect) insertAborting() string {
	if d == dialectSQLite {
		return "INSERT OR ROLLBACK INTO"
	}
	return "INSERT INTO"
}

// preparesInserts reports whether the bulk inserts are prepared once at
// Open. On SQLite, parsing a statement of hundreds of rows is a good share
// of running it (a third of RecordPart's time); the PostgreSQL driver
// caches statements by text on each connection.
func (d dialect) preparesInserts() bool { return d == dialectSQLite }

// forUpdate is the clause of a SELECT that locks the rows it reads until
// the transaction ends. SQLite needs none: a writing transaction holds the
// database's only write lock.
func (d dialect) forUpdate() string {
	if d == dialectPostgres {
		return " FOR UPDATE"
	}
	return ""
}

// identityIndex reports whether the audit trail's identity index is the
// call_identities table, filled behind the calls in sorted runs (SQLite),
// rather than an index of the calls table (PostgreSQL): identities.go
// says why.
func (d dialect) identityIndex() bool { return d == dialectSQLite }
