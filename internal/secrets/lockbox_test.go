package secrets_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secrets/lockboxtest"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

func newLockboxServer(t testing.TB) *lockboxtest.Server {
	t.Helper()
	srv, err := lockboxtest.New("t1.static-iam-token")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func newLockbox(t testing.TB, srv *lockboxtest.Server, o secrets.LockboxOptions) *secrets.Lockbox {
	t.Helper()
	o.Endpoint, o.Plaintext, o.RetryWait = srv.Addr, true, time.Millisecond
	l, err := secrets.NewLockbox(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func TestLockboxIAMToken(t *testing.T) {
	srv := newLockboxServer(t)
	testContract(t, newLockbox(t, srv, secrets.LockboxOptions{IAMToken: "t1.static-iam-token"}), srv,
		"yc-lockbox://e6qrunnerweb", "yc-lockbox://e6qlocked", srv.CreateSecret)

	bad := secretstore.NewResolver(newLockbox(t, srv, secrets.LockboxOptions{IAMToken: "t1.expired"}))
	if _, err := bad.Resolve(context.Background(), "yc-lockbox://e6qrunnerweb/other"); !errors.Is(err, secretstore.ErrAuth) {
		t.Errorf("bad IAM token: %v", err)
	}
}

func TestLockboxServiceAccountKey(t *testing.T) {
	srv := newLockboxServer(t)
	srv.CreateSecret("e6qkeyauth")
	pk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(pk)
	pub, _ := x509.MarshalPKIXPublicKey(&pk.PublicKey)
	key, _ := json.Marshal(map[string]string{
		"id": "ajekeyid", "service_account_id": "ajeserviceaccount", "key_algorithm": "RSA_2048",
		"created_at":  "2024-01-01T00:00:00Z",
		"public_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	})
	file := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(file, key, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := secretstore.NewResolver(newLockbox(t, srv, secrets.LockboxOptions{KeyFile: file}))
	if _, err := r.Put(ctx, "yc-lockbox://e6qkeyauth/token", "written-with-a-key"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Resolve(ctx, "yc-lockbox://e6qkeyauth/token"); err != nil || got != "written-with-a-key" {
		t.Errorf("resolve = %q, %v", got, err)
	}
	_, err = secrets.NewLockbox(ctx, secrets.LockboxOptions{KeyFile: filepath.Join(t.TempDir(), "missing.json")})
	if !errors.Is(err, secretstore.ErrAuth) {
		t.Errorf("missing key file: %v", err)
	}
}

func TestLockboxInstanceMetadata(t *testing.T) {
	srv := newLockboxServer(t)
	srv.CreateSecret("e6qinstance")
	md := srv.MetadataServer()
	defer md.Close()
	t.Setenv("YC_METADATA_ADDR", strings.TrimPrefix(md.URL, "http://"))
	ctx := context.Background()
	r := secretstore.NewResolver(newLockbox(t, srv, secrets.LockboxOptions{}))
	if _, err := r.Put(ctx, "yc-lockbox://e6qinstance/token", "written-as-the-instance"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Resolve(ctx, "yc-lockbox://e6qinstance/token"); err != nil || got != "written-as-the-instance" {
		t.Errorf("resolve = %q, %v", got, err)
	}
}
