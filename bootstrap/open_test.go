package bootstrap

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

// serviceAccountKey is an authorized key in yc's JSON, with a fresh RSA key.
func serviceAccountKey(t *testing.T) string {
	t.Helper()
	pk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(pk)
	pub, _ := x509.MarshalPKIXPublicKey(&pk.PublicKey)
	key, _ := json.Marshal(map[string]string{
		"id": "ajekeyid", "service_account_id": "ajedeployer", "key_algorithm": "RSA_2048", "created_at": "2026-01-01T00:00:00Z",
		"public_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	})
	return string(key)
}

// TestOpenYandex opens examples/nest as gosling deploy does: the Yandex
// credentials are the yandex provider's key from its secret URI, the
// eggs' hooks go to a GitLab test server.
func TestOpenYandex(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	gl := gitlabtest.New()
	t.Cleanup(gl.Close)
	n := loadNest(t, "../examples/nest")
	host := strings.TrimPrefix(gl.URL(), "http://")
	grp := gl.AddGroup("data", 0)
	gl.AddProject("data/etl", grp.ID)
	for i := range n.Eggs {
		n.Eggs[i].GitLab.Host, n.Eggs[i].GitLab.Insecure = host, true
		for j, p := range n.Eggs[i].Projects {
			if p.Path != "" {
				gl.AddProject(p.Path, 0)
			} else { // named by an ID the test server does not have
				n.Eggs[i].Projects[j].ID = gl.AddProject(fmt.Sprintf("ids/p%d", p.ID), 0).ID
			}
		}
		if n.Eggs[i].Group != nil {
			n.Eggs[i].Group.ID = grp.ID
		}
	}
	gl.AddProject(n.MotherGoose.Nest.Project, 0)
	n.MotherGoose.Nest.Host = host
	key := serviceAccountKey(t)
	keyRef := n.MotherGoose.Providers[fly.CloudYandex].ServiceAccountKey
	resolve := func(_ context.Context, ref fly.SecretRef) (string, error) {
		switch {
		case ref == keyRef:
			return key, nil
		case strings.HasSuffix(string(ref), "_token"):
			return gl.Token(), nil
		}
		return "a-webhook-secret", nil
	}
	ymq := srv.ymq.Config()
	d, err := Open(ctx, n, Options{Resolve: resolve, Yandex: YandexOptions{
		Auth: yandexauth.Options{Endpoint: srv.Addr, Plaintext: true}, PollInterval: time.Millisecond, MessageQueue: &ymq,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	p, actual, err := d.Engine.Plan(ctx, d.Desired)
	if err != nil {
		t.Fatal(err)
	}
	hooks := 0
	for _, c := range p.Changes {
		if c.After.Type == GitLabHook {
			hooks++
		}
	}
	if hooks == 0 || p.Count(Create) != len(d.Desired) {
		t.Fatalf("plan: %d creates of %d, %d hooks", p.Count(Create), len(d.Desired), hooks)
	}
	// No IAM token was given: every call above carried one the stand-in
	// issued for the provider's key.
	if _, err := d.Engine.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := d.Engine.Plan(ctx, d.Desired); !p.Empty() {
		t.Errorf("second plan: %+v", p.Changes)
	}
}
