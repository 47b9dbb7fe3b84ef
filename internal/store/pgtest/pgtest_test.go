package pgtest

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// This package has no TestMain, so Start runs a server per test: the path a
// package takes when it forgets pgtest.Main.
func TestStartPrivateServer(t *testing.T) {
	var dsn string
	t.Run("use", func(t *testing.T) {
		dsn = Start(t)
		second := Start(t)
		if second == dsn {
			t.Fatalf("two Start calls returned the same database %s", dsn)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var version string
		if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
			t.Fatal(err)
		}
		t.Logf("PostgreSQL %s at %s", version, dsn)
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("server at %s still accepts connections after its test ended", u.Host)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Logf("dial after stop: %v", err)
	}
}

func TestMissingBinariesSayHowToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	packaged := packagedBinDirs
	packagedBinDirs = t.TempDir() + "/*/bin"
	t.Cleanup(func() { packagedBinDirs = packaged })
	_, err := findBinaries()
	if err == nil || !strings.Contains(err.Error(), "scripts/tools.sh postgres") {
		t.Fatalf("missing binaries: %v", err)
	}
}
