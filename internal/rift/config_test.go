package rift_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/rift"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

func TestEggsFromNest(t *testing.T) {
	ctx := context.Background()
	local, err := secretstore.OpenLocal(filepath.Join(t.TempDir(), "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	res := secretstore.NewResolver(local)
	res.Put(ctx, "local://rift/api/secret_key", "api-secret\n")
	res.Put(ctx, "local://hub/token", "hub-token")
	dir := t.TempDir()
	keyring, err := rift.LoadOrCreateKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	nest := &fly.Nest{Eggs: []fly.Egg{
		{Name: "web", Rift: &fly.RiftSpec{Enabled: true, Engine: "docker", Cache: 50 * fly.GiB, MaxAge: fly.Duration(14 * 24 * time.Hour), Bucket: "web",
			Mirror: &fly.RiftMirror{Upstream: "https://registry-1.docker.io", Username: "ci", Password: "local://hub/token"}}},
		{Name: "api", Rift: &fly.RiftSpec{Enabled: true, Engine: "podman", Cache: fly.GiB, Bucket: "api-cache", AccessKey: "GOSLINGAPI", SecretKey: "local://rift/api/secret_key"}},
		{Name: "off", Rift: &fly.RiftSpec{Enabled: false, Bucket: "off"}},
		{Name: "plain"},
	}}
	eggs, err := rift.EggsFromNest(ctx, nest, res, keyring)
	if err != nil {
		t.Fatal(err)
	}
	if len(eggs) != 2 {
		t.Fatalf("eggs = %+v; want web and api only", eggs)
	}
	web, api := eggs[0], eggs[1]
	if web.CacheBytes != 50<<30 || web.MaxAge != 14*24*time.Hour || web.Mirror == nil || web.Mirror.Password != "hub-token" {
		t.Errorf("web = %+v", web)
	}
	if !strings.HasPrefix(web.AccessKey, "GR") || len(web.AccessKey) != 20 || len(web.SecretKey) < 40 {
		t.Errorf("web's derived key = %q/%d characters", web.AccessKey, len(web.SecretKey))
	}
	again, _ := rift.LoadOrCreateKeyring(dir)
	if ak, sk := again.S3Key("web"); ak != web.AccessKey || sk != web.SecretKey {
		t.Error("derived keys changed across a restart")
	}
	if ak, _ := keyring.S3Key("api"); ak == web.AccessKey {
		t.Error("two eggs derived one key")
	}
	if api.AccessKey != "GOSLINGAPI" || api.SecretKey != "api-secret" || api.Mirror != nil {
		t.Errorf("api = %+v", api)
	}

	nest.Eggs[1].Rift.Bucket = "web"
	nest.Eggs[0].Rift.Mirror.Password = "local://hub/missing"
	_, err = rift.EggsFromNest(ctx, nest, res, keyring)
	if err == nil || !strings.Contains(err.Error(), "both name bucket web") || !strings.Contains(err.Error(), "rift.mirror.password") {
		t.Errorf("duplicate bucket and missing secret: %v", err)
	}
}
