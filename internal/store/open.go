package store

import (
	"context"
	"fmt"
	"strings"
)

// Open opens the store a DSN names and brings its schema up to date; data
// already in it is kept, so a restarted server finds its view where it left
// it. The DSN forms are:
//
//	sqlite:///abs/path.db        SQLite file at an absolute path
//	sqlite://relative/path.db    SQLite file relative to the working directory
//	sqlite::memory:              SQLite in memory, gone when the store closes
//	file:path.db, file::memory:  the same, in SQLite's own spelling
//	postgres://... postgresql://...   PostgreSQL (pgx connection string)
//
// SQLite files and their directories are created when missing.
func Open(ctx context.Context, dsn string) (Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return OpenPostgres(ctx, dsn)
	case strings.HasPrefix(dsn, "sqlite:"), strings.HasPrefix(dsn, "file:"):
		path, err := sqlitePathFromDSN(dsn)
		if err != nil {
			return nil, fmt.Errorf("open store %q: %w", dsn, err)
		}
		return OpenSQLite(ctx, path)
	default:
		// Only the scheme is shown: an unknown DSN may still carry a password.
		scheme, _, _ := strings.Cut(dsn, ":")
		return nil, fmt.Errorf("open store: unknown DSN scheme %q: use sqlite:///path/to/gosling.db, sqlite::memory: or postgres://user@host/db", scheme)
	}
}
