package secrets_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secrets/vaulttest"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

func TestOpenFromConfigAndCheck(t *testing.T) {
	srv := vaulttest.New("open-token")
	defer srv.Close()
	ctx := context.Background()
	env := map[string]string{"VAULT_TOKEN": "open-token", "AWS_REGION": "eu-west-1"}
	cfg := fly.Secrets{Backend: "vault", CacheTTL: fly.Duration(time.Minute), Backends: map[string]fly.SecretBackend{
		"vault": {Scheme: "vault", Address: srv.URL, Auth: "token", Mount: "secret", CacheTTL: fly.Duration(time.Second)},
		"local": {Scheme: "local", Path: filepath.Join(t.TempDir(), "secrets")},
	}}
	m := secretstore.NewMasker()
	r, err := secrets.Open(ctx, cfg, secrets.OpenOptions{Masker: m, Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(ctx, "vault://ci/open/token", "opened-vault-value"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(ctx, "local://dev/token", "opened-local-value"); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(ctx, "vault://ci/open/token", "local://dev/token", ""); err != nil {
		t.Errorf("check of present secrets: %v", err)
	}
	err = r.Check(ctx, "vault://ci/open/token", "vault://ci/missing/token", "local://dev/nokey")
	if !errors.Is(err, secretstore.ErrNotFound) || !errors.Is(err, secretstore.ErrKeyNotFound) ||
		!strings.Contains(err.Error(), "vault://ci/missing/token") || !strings.Contains(err.Error(), "local://dev/nokey") {
		t.Errorf("check error = %v", err)
	}
	if strings.Contains(err.Error(), "opened-") {
		t.Errorf("check error holds a value: %v", err)
	}
	if m.Mask("opened-vault-value") != secretstore.Masked {
		t.Error("the shared masker did not get the value")
	}
}
