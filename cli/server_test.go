package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestServerFlagsToOptions(t *testing.T) {
	tio := withEnv(newTestIO("", false), map[string]string{"GOSLING_ADDR": ":9443", "GOSLING_TEMPORAL_ADDRESS": "temporal:7233", "GOSLING_STORE": "postgres://db/gosling"})
	var got *ServerOptions
	cmd := NewCmdServer(tio.f, func(o *ServerOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--nest", "n", "--var", "a=b", "--tls-cert", "vault://tls/cert", "--tls-key", "vault://tls/key", "--nest-sync", "30s", "--temporal-namespace", "prod"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Nest != "n" || got.Vars["a"] != "b" || got.Addr != ":9443" || got.TLSCert != "vault://tls/cert" || got.TLSKey != "vault://tls/key" ||
		got.NestSync != 30*time.Second || got.Temporal.Address != "temporal:7233" || got.Temporal.Namespace != "prod" || got.Runtime.Store != "postgres://db/gosling" {
		t.Errorf("options %+v", got)
	}
	// A platform's PORT is the default address; GOSLING_ADDR and --addr win.
	ported := withEnv(newTestIO("", false), map[string]string{"PORT": "8081"})
	cmd = NewCmdServer(ported.f, func(o *ServerOptions) error { got = o; return nil })
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil || got.Addr != ":8081" || got.WebhookBodyLimit != "1MiB" {
		t.Errorf("with PORT=8081: addr %q, body limit %q, %v", got.Addr, got.WebhookBodyLimit, err)
	}
	for _, bad := range []string{"lots", "1KiB", "1GiB"} {
		cmd = NewCmdServer(tio.f, func(*ServerOptions) error { return nil })
		cmd.SetArgs([]string{"--webhook-body-limit", bad})
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--webhook-body-limit") {
			t.Errorf("--webhook-body-limit %s: %v", bad, err)
		}
	}
	cmd = NewCmdServer(tio.f, func(*ServerOptions) error { return nil })
	cmd.SetArgs([]string{"--tls-cert", "c.pem"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--tls-cert and --tls-key go together") {
		t.Errorf("a certificate without a key: %v", err)
	}
}

// --print-config shows the configuration the file and the flags make,
// with secrets as their URIs.
func TestServerPrintConfig(t *testing.T) {
	tio := withEnv(newTestIO("", false), map[string]string{"GOSLING_TEMPORAL_NAMESPACE": "from-env"})
	if code := run(t, tio, "server", "--nest", "../examples/nest", "--print-config", "--addr", ":8443"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	var cfg ServerConfig
	if err := json.Unmarshal(tio.out.Bytes(), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, tio.out)
	}
	if cfg.Addr != ":8443" || cfg.Temporal.Address != "gosling.tmprl.cloud:7233" || cfg.Temporal.Namespace != "from-env" || !cfg.Temporal.TLS {
		t.Errorf("config %+v", cfg)
	}
	if string(cfg.Temporal.APIKey) != "yc-lockbox://e6qexamplelockbox0001/temporal_api_key" || len(cfg.APITokens) != 2 || !strings.HasPrefix(string(cfg.APITokens[0]), "yc-lockbox://") {
		t.Errorf("secrets are not shown as their URIs: %+v %v", cfg.Temporal.APIKey, cfg.APITokens)
	}
	if !strings.HasPrefix(cfg.Store, "ydb") || len(cfg.Eggs) != 4 || cfg.NestSource.Project != "platform/nest" {
		t.Errorf("store %q, eggs %v, nest %+v", cfg.Store, cfg.Eggs, cfg.NestSource)
	}
}

// A database block that names no usable store stops the server with exit
// code 3 and an error that points at the block.
func TestServerRefusesAStoreItCannotOpen(t *testing.T) {
	dir := t.TempDir()
	mg := `mothergoose {
  cloud = "local"

  database {
    engine = "postgresql"
    dsn    = "local://db/missing"
  }

  provider "local" {}
}
`
	writeMG(t, dir, mg)
	tio := newTestIO("", false)
	tio.f.Logger = slog.New(slog.DiscardHandler)
	code := run(t, tio, "server", "--nest", dir, "--addr", "127.0.0.1:0", "--state-dir", t.TempDir())
	if code != ExitInvalidConfig {
		t.Fatalf("exit %d, want %d: %s", code, ExitInvalidConfig, tio.err)
	}
	if !regexp.MustCompile(`MG/config\.fly:4:3: mothergoose\.database`).MatchString(tio.err.String()) || !strings.Contains(tio.err.String(), "local://db/missing") {
		t.Errorf("the error does not point at the database block: %s", tio.err)
	}
}

// A relative path in MG/config.fly is the Nest's, wherever the server
// runs from; a server of a Nest with no local:// secrets makes no local
// secret store (no .gosling/secrets/key), even when it fails at once.
func TestServerPathsAreTheNests(t *testing.T) {
	dir := t.TempDir()
	mg := `mothergoose {
  cloud = "local"

  database {
    engine = "sqlite"
    path   = "data/gosling.db"
  }

  secrets {
    backend = "vault"
    vault {
      address = "http://127.0.0.1:1"
      auth    = "token"
    }
  }

  provider "local" {}
}
`
	writeMG(t, dir, mg)
	state := filepath.Join(t.TempDir(), "state")
	tio := newTestIO("", false)
	tio.f.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- Execute(ctx, tio.f, []string{"server", "--nest", dir, "--addr", "127.0.0.1:0", "--state-dir", state, "--temporal-address", "127.0.0.1:1"})
	}()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "data", "gosling.db")); err == nil {
			break
		}
	}
	cancel()
	<-done
	if _, err := os.Stat(filepath.Join(dir, "data", "gosling.db")); err != nil {
		t.Errorf("the store is not in the Nest: %v (%s)", err, tio.err)
	}
	if _, err := os.Stat("data"); err == nil {
		t.Error("the store was made in the working directory")
	}
	if _, err := os.Stat(filepath.Join(state, "secrets")); err == nil {
		t.Error("a local secret store was made for a Nest that has none")
	}
}

// writeMG writes a Nest of one MG/config.fly in dir.
func writeMG(t *testing.T, dir, mg string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "MG"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "MG", "config.fly"), []byte(mg), 0o644); err != nil {
		t.Fatal(err)
	}
}
