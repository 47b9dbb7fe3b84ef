package yandexauth

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

	"github.com/gosling-ci/gosling/internal/secrets/lockboxtest"
)

func keyFile(t *testing.T) string {
	t.Helper()
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
	return file
}

func TestTokenSourceFixedToken(t *testing.T) {
	ts, err := NewTokenSource(Options{IAMToken: "t1.fixed"})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close(context.Background())
	// A fixed token needs no SDK and no network.
	for range 2 {
		if tok, err := ts.Token(context.Background()); err != nil || tok != "t1.fixed" {
			t.Fatalf("Token() = %q, %v", tok, err)
		}
	}
	if ts.sdk != nil {
		t.Error("a fixed token built the SDK")
	}
}

// A key is exchanged at the IAM service; the token is reused until an
// hour has passed, or until five minutes before it expires.
func TestTokenSourceKeyExchangeAndRenewal(t *testing.T) {
	srv, err := lockboxtest.New("t1.unused")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts, err := NewTokenSource(Options{Endpoint: srv.Addr, Plaintext: true, KeyFile: keyFile(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close(context.Background())
	now := time.Now()
	ts.now = func() time.Time { return now }
	ctx := context.Background()
	first, err := ts.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !srv.Accepts(first) {
		t.Fatalf("token %q was not issued by the IAM service", first)
	}
	// The stand-in's tokens expire as they are issued, so each call
	// renews; a token that lives long is reused.
	second, err := ts.Token(ctx)
	if err != nil || second == first {
		t.Fatalf("an expired token was reused: %q, %v", second, err)
	}
	ts.token, ts.renewAt = "t1.cached", now.Add(RefreshAfter)
	if tok, _ := ts.Token(ctx); tok != "t1.cached" {
		t.Errorf("a fresh token was not reused: %q", tok)
	}
	now = now.Add(RefreshAfter)
	if tok, _ := ts.Token(ctx); tok == "t1.cached" {
		t.Error("a token an hour old was reused")
	}
}

func TestCredentialsErrors(t *testing.T) {
	_, err := NewTokenSource(Options{KeyFile: filepath.Join(t.TempDir(), "missing.json")})
	if !errors.Is(err, ErrCredentials) {
		t.Errorf("missing key file: %v", err)
	}
	t.Setenv(EnvKeyFile, "/k.json")
	t.Setenv(EnvIAMToken, "t1.env")
	t.Setenv(EnvEndpoint, "api.example:443")
	if got := FromEnv(os.Getenv); got != (Options{Endpoint: "api.example:443", KeyFile: "/k.json", IAMToken: "t1.env"}) {
		t.Errorf("FromEnv = %+v", got)
	}
}

func TestKeyFromSecretValue(t *testing.T) {
	srv, err := lockboxtest.New("t1.unused")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	raw, err := os.ReadFile(keyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := NewTokenSource(Options{Endpoint: srv.Addr, Plaintext: true, Key: string(raw)})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close(context.Background())
	tok, err := ts.Token(context.Background())
	if err != nil || !srv.Accepts(tok) {
		t.Fatalf("token from a key held in a secret: %q, %v", tok, err)
	}
	_, err = Credentials(Options{Key: "not-a-key-s3cr3t"})
	if !errors.Is(err, ErrCredentials) || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("bad key: %v", err)
	}
}
