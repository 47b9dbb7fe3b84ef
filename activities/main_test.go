package activities

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// openSQLiteStore opens a store in a new SQLite file of the test's own,
// closed when the test ends.
func openSQLiteStore(t testing.TB) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "gosling.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}
