package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/mototest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/store/dynamotest"
	"github.com/gosling-ci/gosling/internal/store/pgtest"
	"github.com/gosling-ci/gosling/internal/store/storetest"
)

func TestMain(m *testing.M) {
	dynamotest.Credentials()
	pgtest.Main(dynamotest.Runner(mototest.Runner(m)))
}

func openDSN(t *testing.T, dsn string) store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sqliteFile gives a database path in a directory that does not exist yet,
// so every test also checks that Open creates it.
func sqliteFile(t *testing.T) string {
	return filepath.Join(t.TempDir(), "state", "nested", "gosling.db")
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDSN(t, "sqlite://"+sqliteFile(t))
	})
}

func TestSQLiteMemory(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDSN(t, "sqlite::memory:")
	})
}

func TestSQLitePersistence(t *testing.T) {
	t.Parallel()
	storetest.RunPersistence(t, func(t *testing.T) storetest.Reopen {
		dsn := "sqlite://" + sqliteFile(t)
		return func(t *testing.T) store.Store { return openDSN(t, dsn) }
	})
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDSN(t, pgtest.Start(t))
	})
}

func TestPostgresPersistence(t *testing.T) {
	t.Parallel()
	storetest.RunPersistence(t, func(t *testing.T) storetest.Reopen {
		dsn := pgtest.Start(t)
		return func(t *testing.T) store.Store { return openDSN(t, dsn) }
	})
}

func TestDynamoDB(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDSN(t, dynamotest.DSN(t))
	})
}

// TestDynamoDBMoto runs the contract on moto's DynamoDB, a second
// implementation beside dynalite, through mototest's proxy, which sends
// it one request at a time.
func TestDynamoDBMoto(t *testing.T) {
	t.Parallel()
	moto := mototest.NewProxy(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDSN(t, fmt.Sprintf("dynamodb://%s?region=%s&endpoint=%s", dynamotest.TablePrefix(), mototest.Region, url.QueryEscape(moto.URL)))
	})
}

func TestDynamoDBPersistence(t *testing.T) {
	t.Parallel()
	storetest.RunPersistence(t, func(t *testing.T) storetest.Reopen {
		dsn := dynamotest.DSN(t)
		return func(t *testing.T) store.Store { return openDSN(t, dsn) }
	})
}

// TestSQLiteRestart is what a restarted server does: open the same file
// again and find the runner where it was.
func TestSQLiteRestart(t *testing.T) {
	ctx := context.Background()
	dsn := "sqlite://" + sqliteFile(t)
	first := openDSN(t, dsn)
	r := &store.Runner{ID: "r-1", Egg: "egg-a", Cloud: "aws", Kind: "vm", State: store.StateProvisioning}
	if err := first.CreateRunner(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, Version: r.Version, To: store.StateRegistering}); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := first.Ping(ctx); err == nil {
		t.Error("Ping succeeded on a closed store")
	}

	second := openDSN(t, dsn)
	defer second.Close()
	got, err := second.GetRunner(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateRegistering || got.Version != 2 {
		t.Errorf("after restart: state %s version %d, want registering 2", got.State, got.Version)
	}
}

func TestOpenSQLiteDSNForms(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Chdir(dir)
	abs := filepath.Join(dir, "abs", "a.db")
	cases := []struct {
		dsn  string
		file string // the file the DSN names; empty for memory
	}{
		{"sqlite://" + abs, abs},
		{"sqlite://rel/b.db", filepath.Join(dir, "rel", "b.db")},
		{"file:c.db", filepath.Join(dir, "c.db")},
		{"file://" + filepath.Join(dir, "d.db"), filepath.Join(dir, "d.db")},
		{"sqlite::memory:", ""},
		{"file::memory:", ""},
	}
	for _, tc := range cases {
		s, err := store.Open(ctx, tc.dsn)
		if err != nil {
			t.Errorf("Open(%q): %v", tc.dsn, err)
			continue
		}
		if err := s.Ping(ctx); err != nil {
			t.Errorf("Open(%q): ping: %v", tc.dsn, err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Open(%q): close: %v", tc.dsn, err)
		}
		if tc.file != "" {
			if _, err := os.Stat(tc.file); err != nil {
				t.Errorf("Open(%q) did not create %s: %v", tc.dsn, tc.file, err)
			}
		}
	}
	// In-memory databases are not files.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), "memory") {
			t.Errorf("an in-memory DSN created the file %s", e.Name())
		}
	}
}

func TestOpenRejects(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{
		"",
		"mysql://user:secret@host/db",
		"sqlite://",
		"sqlite:///tmp/x.db?_pragma=journal_mode(DELETE)",
	} {
		s, err := store.Open(ctx, dsn)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", dsn)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) error shows the password: %v", dsn, err)
		}
	}
}

func TestOpenNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := sqliteFile(t)
	s := openDSN(t, "sqlite://"+path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw := openRaw(t, path)
	if _, err := raw.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (1000)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	_, err := store.Open(ctx, "sqlite://"+path)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("opening a database from a newer build: %v", err)
	}
}

func TestPostgresBadDSN(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := store.Open(ctx, "postgres://gosling:hunter2@127.0.0.1:1/gosling?connect_timeout=1")
	if err == nil {
		t.Fatal("Open succeeded against no server")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
}

// openRaw opens a store's SQLite file directly, bypassing the store.
func openRaw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}
