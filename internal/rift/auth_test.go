package rift_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/rift"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
)

// TestStoreAuthenticator checks runner tokens against a real SQLite store
// and the local secret backend, as `gosling rift serve` does against
// MotherGoose's.
func TestStoreAuthenticator(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "gosling.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	local, err := secretstore.OpenLocal(filepath.Join(t.TempDir(), "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	res := secretstore.NewResolver(local)
	for id, egg := range map[string]string{"web-1": "web", "api-1": "api", "web-old": "web"} {
		ref := fly.SecretRef("local://runners/" + id + "/token")
		if _, err := res.Put(ctx, ref, "glrt-"+id); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateRunner(ctx, &store.Runner{ID: id, Egg: egg, Cloud: "local", Kind: "vm", State: store.StateProvisioning, TokenRef: string(ref)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, to := range []store.RunnerState{store.StateRegistering, store.StateActive} {
		if _, err := st.Transition(ctx, store.TransitionRequest{RunnerID: "web-1", To: to, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Transition(ctx, store.TransitionRequest{RunnerID: "web-old", To: store.StateTerminating, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	a := &rift.StoreAuthenticator{Store: st, Secrets: res}

	r, err := a.Authenticate(ctx, "glrt-web-1")
	if err != nil || r != (rift.Runner{ID: "web-1", Egg: "web"}) {
		t.Fatalf("web-1's token: %+v, %v", r, err)
	}
	if r, err := a.Authenticate(ctx, "glrt-api-1"); err != nil || r.Egg != "api" {
		t.Errorf("api-1's token (provisioning): %+v, %v", r, err)
	}
	for _, tok := range []string{"glrt-web-old", "glrt-nobody", ""} {
		if _, err := a.Authenticate(ctx, tok); !errors.Is(err, rift.ErrUnauthenticated) {
			t.Errorf("token %q: %v", tok, err)
		}
	}
	// Destroyed after its token was recognised: refused at once, though
	// the authenticator remembers the token.
	if _, err := st.Transition(ctx, store.TransitionRequest{RunnerID: "web-1", To: store.StateTerminating, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, "glrt-web-1"); !errors.Is(err, rift.ErrUnauthenticated) {
		t.Errorf("destroyed web-1's token: %v", err)
	}
	if err := a.Live(ctx, "web-1"); !errors.Is(err, rift.ErrUnauthenticated) {
		t.Errorf("Live(destroyed) = %v", err)
	}
	if err := a.Live(ctx, "api-1"); err != nil {
		t.Errorf("Live(api-1) = %v", err)
	}
	if err := a.Live(ctx, "ghost"); !errors.Is(err, rift.ErrUnauthenticated) {
		t.Errorf("Live(unknown) = %v", err)
	}
}
