package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

var postgresDialect = dialect{
	name:           "postgres",
	numberedParams: true,
	lockForUpdate:  " FOR UPDATE",
	schemaTypes: strings.NewReplacer(
		// Byte order, as in SQLite, so ID cursors page the same way
		// whatever the database's locale.
		"{key}", `TEXT COLLATE "C"`,
		"{int}", "BIGINT",
		"{time}", "TIMESTAMPTZ",
		"{float}", "DOUBLE PRECISION",
		"{serial}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
		"{strict}", "",
	),
	// Any constant works as long as nothing else in the database uses it;
	// it is "gosling" read as a big-endian integer.
	migrationLock: `SELECT pg_advisory_xact_lock(29114464131968615)`,
	encodeTime:    func(t time.Time) any { return t },
}

// OpenPostgres connects to the PostgreSQL database named by dsn
// (postgres://user:password@host:port/db?...) and brings its schema up to
// date. Pool settings such as pool_max_conns may be given in the DSN.
func OpenPostgres(ctx context.Context, dsn string) (Store, error) {
	s, err := openPostgres(ctx, dsn)
	if err != nil {
		// pgx keeps passwords out of its errors; the DSN itself is not
		// repeated here for the same reason.
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	return validate(s), nil
}

func openPostgres(ctx context.Context, dsn string) (*sqlStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(pool)
	s := &sqlStore{
		dialect: postgresDialect,
		read:    db,
		write:   db,
		closers: []func() error{db.Close, func() error { pool.Close(); return nil }},
	}
	if err := s.migrate(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}
