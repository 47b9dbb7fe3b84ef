package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	// The pure Go driver keeps the binary free of cgo.
	_ "modernc.org/sqlite"
)

// SQLiteMemory is the path OpenSQLite takes for a private in-memory
// database, which lives as long as the store.
const SQLiteMemory = ":memory:"

var sqliteDialect = dialect{
	name: "sqlite",
	schemaTypes: strings.NewReplacer(
		"{key}", "TEXT",
		"{int}", "INTEGER",
		"{time}", "TEXT",
		"{float}", "REAL",
		// AUTOINCREMENT: an ID is never handed out twice, even after the
		// newest row is gone, so AfterID cursors stay valid.
		"{serial}", "INTEGER PRIMARY KEY AUTOINCREMENT",
		"{strict}", " STRICT",
	),
	encodeTime: func(t time.Time) any { return t.Format(sqliteTimeLayout) },
}

// sqliteBusyTimeout is how long a connection waits for a lock held by
// another process (this one never contends with itself) before failing.
const sqliteBusyTimeout = 10 * time.Second

// OpenSQLite opens (creating it and its parent directories if needed) the
// SQLite database at path, or a private in-memory database for SQLiteMemory,
// and brings its schema up to date.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	s, err := openSQLite(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	return validate(s), nil
}

func openSQLite(ctx context.Context, path string) (*sqlStore, error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	if strings.ContainsRune(path, '?') {
		// The driver takes everything after '?' as its own parameters.
		return nil, errors.New("the path may not contain '?'")
	}
	s := &sqlStore{dialect: sqliteDialect}
	if path == SQLiteMemory {
		// Every connection to ":memory:" would get its own empty database,
		// so one connection serves reads and writes alike.
		db, err := sql.Open("sqlite", path+"?"+sqliteParams(false, false))
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		s.read, s.write = db, db
		s.closers = []func() error{db.Close}
	} else {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("create directory for the database: %w", err)
		}
		write, err := sql.Open("sqlite", path+"?"+sqliteParams(true, false))
		if err != nil {
			return nil, err
		}
		// One write connection: writers queue for it in Go rather than
		// racing for SQLite's lock, and BEGIN IMMEDIATE takes the lock at
		// the start of a transaction so a read-then-write never has to
		// upgrade. WAL lets the readers carry on meanwhile.
		write.SetMaxOpenConns(1)
		write.SetMaxIdleConns(1)
		read, err := sql.Open("sqlite", path+"?"+sqliteParams(false, true))
		if err != nil {
			_ = write.Close()
			return nil, err
		}
		readers := max(4, runtime.GOMAXPROCS(0))
		read.SetMaxOpenConns(readers)
		read.SetMaxIdleConns(readers)
		s.read, s.write = read, write
		s.closers = []func() error{read.Close, write.Close}
	}
	// The write connection opens first so the file is in WAL mode before
	// any reader uses it.
	if err := s.write.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// sqliteParams builds the driver parameters every connection starts with.
// Only the write connection switches the file to WAL: the mode is stored in
// the file, and a reader may not write it.
func sqliteParams(wal, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	if wal {
		q.Add("_pragma", "journal_mode(WAL)")
	}
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	return q.Encode()
}

// sqlitePathFromDSN maps the SQLite DSN forms Open accepts to a path:
// sqlite:///abs/path.db, sqlite://relative/path.db, sqlite::memory:,
// file:path.db, file:///abs/path.db and file::memory:.
func sqlitePathFromDSN(dsn string) (string, error) {
	rest, ok := strings.CutPrefix(dsn, "sqlite:")
	if !ok {
		rest, _ = strings.CutPrefix(dsn, "file:")
	}
	rest = strings.TrimPrefix(rest, "//")
	if strings.ContainsAny(rest, "?#") {
		return "", errors.New("sqlite DSNs take no parameters: the store sets its own")
	}
	if rest == "" {
		return "", errors.New("sqlite DSN names no database file")
	}
	return rest, nil
}
