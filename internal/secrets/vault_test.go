package secrets_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/secrets/vaulttest"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

func newVault(t *testing.T, srv *vaulttest.Server, o secretstore.VaultOptions) *secretstore.Vault {
	t.Helper()
	o.Address, o.RetryWait = srv.URL, time.Millisecond
	v, err := secretstore.NewVault(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVaultTokenAuth(t *testing.T) {
	srv := vaulttest.New("root-token")
	defer srv.Close()
	testContract(t, newVault(t, srv, secretstore.VaultOptions{Token: "root-token"}), srv, "vault://secret/ci/runners/web", "vault://ci/locked", nil)

	// A bad token is refused as a permission error.
	bad := secretstore.NewResolver(newVault(t, srv, secretstore.VaultOptions{Token: "wrong"}))
	if _, err := bad.Resolve(context.Background(), "vault://ci/runners/web/other"); !errors.Is(err, secretstore.ErrPermission) {
		t.Errorf("bad token: %v", err)
	}
	t.Setenv("VAULT_TOKEN", "")
	none := secretstore.NewResolver(newVault(t, srv, secretstore.VaultOptions{}))
	if _, err := none.Resolve(context.Background(), "vault://ci/runners/web/other"); !errors.Is(err, secretstore.ErrAuth) {
		t.Errorf("no token: %v", err)
	}
}

func TestVaultAppRole(t *testing.T) {
	srv := vaulttest.New("root-token")
	defer srv.Close()
	srv.AddAppRole("gosling-role-id", "approle-secret-id-value")
	ctx := context.Background()
	r := secretstore.NewResolver(newVault(t, srv, secretstore.VaultOptions{Auth: "approle", Role: "gosling-role-id", SecretID: "approle-secret-id-value"}))
	r.SetTTL("vault", 0)
	if _, err := r.Put(ctx, "vault://ci/app/token", "approle-written-value"); err != nil {
		t.Fatal(err)
	}
	srv.RevokeLoginTokens() // the token expires: the backend logs in again
	if got, err := r.Resolve(ctx, "vault://ci/app/token"); err != nil || got != "approle-written-value" {
		t.Fatalf("after token expiry = %q, %v", got, err)
	}
	if srv.Logins() != 2 {
		t.Errorf("logins = %d, want 2", srv.Logins())
	}
	wrong := secretstore.NewResolver(newVault(t, srv, secretstore.VaultOptions{Auth: "approle", Role: "gosling-role-id", SecretID: "nope"}))
	_, err := wrong.Resolve(ctx, "vault://ci/app/token")
	if !errors.Is(err, secretstore.ErrAuth) || strings.Contains(err.Error(), "nope") {
		t.Errorf("wrong secret ID: %v", err)
	}
}

func TestVaultKubernetes(t *testing.T) {
	srv := vaulttest.New("root-token")
	defer srv.Close()
	jwtFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(jwtFile, []byte("eyJhbGciOiJSUzI1NiJ9.pod.sig\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.AddKubernetesRole("gosling", "eyJhbGciOiJSUzI1NiJ9.pod.sig")
	ctx := context.Background()
	r := secretstore.NewResolver(newVault(t, srv, secretstore.VaultOptions{Auth: "kubernetes", Role: "gosling", JWTFile: jwtFile}))
	if _, err := r.Put(ctx, "vault://ci/k8s/token", "kubernetes-written-value"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Resolve(ctx, "vault://secret/ci/k8s/token"); err != nil || got != "kubernetes-written-value" {
		t.Errorf("resolve = %q, %v", got, err)
	}
	other := secretstore.NewResolver(newVault(t, srv, secretstore.VaultOptions{Auth: "kubernetes", Role: "other", JWTFile: jwtFile}))
	if _, err := other.Resolve(ctx, "vault://ci/k8s/token"); !errors.Is(err, secretstore.ErrAuth) {
		t.Errorf("unknown role: %v", err)
	}
	if _, err := r.Resolve(ctx, "vault://ci/k8s/token?version=x"); !errors.Is(err, secretstore.ErrVersion) {
		t.Errorf("bad version: %v", err)
	}
	if _, err := r.Resolve(ctx, "vault://ci/k8s/token?version=7"); !errors.Is(err, secretstore.ErrVersion) {
		t.Errorf("missing version: %v", err)
	}
}
