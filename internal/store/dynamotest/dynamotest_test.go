package dynamotest

import (
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// This package has no Runner in a TestMain, so Start runs a server per
// test: the path a package takes when it forgets Runner.
func TestStartPrivateServer(t *testing.T) {
	var endpoint string
	t.Run("use", func(t *testing.T) {
		endpoint = Start(t)
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "http://"), time.Second)
		if err != nil {
			t.Fatalf("dynalite at %s: %v", endpoint, err)
		}
		conn.Close()
		dsn := DSN(t)
		if !strings.HasPrefix(dsn, "dynamodb://t") || !strings.Contains(dsn, "region="+Region) {
			t.Errorf("DSN = %s", dsn)
		}
	})
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		conn.Close()
		t.Fatalf("dynalite at %s still accepts connections after its test ended", u.Host)
	}
}

func TestMissingDynaliteSaysHowToInstall(t *testing.T) {
	t.Setenv("DYNALITE", "")
	t.Setenv("PATH", t.TempDir())
	t.Chdir(t.TempDir())
	_, err := StartServer()
	if err == nil || !strings.Contains(err.Error(), "scripts/tools.sh dynalite") {
		t.Fatalf("missing dynalite: %v", err)
	}
}

func TestTablePrefixesDiffer(t *testing.T) {
	if a, b := TablePrefix(), TablePrefix(); a == b {
		t.Errorf("two calls gave %s", a)
	}
}
