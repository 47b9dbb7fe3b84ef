package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/store"
)

// Agents post heartbeats with their own runner token: the right one records
// the beat (and nothing else), anything else is refused alike; a token
// rotated by another process is accepted once read again.
func TestAgentHeartbeat(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	ctx := context.Background()
	ref := fly.SecretRef("local://runners/web-p1/token")
	if _, err := e.secrets.Put(ctx, ref, "glrt-first-token"); err != nil {
		t.Fatal(err)
	}
	r := &store.Runner{ID: "web-p1", Egg: "web", Cloud: "local", Kind: "vm", State: store.StateActive, GitLabHost: e.host, TokenRef: string(ref)}
	if err := e.store.CreateRunner(ctx, r); err != nil {
		t.Fatal(err)
	}
	before, _ := e.store.GetRunner(ctx, "web-p1")
	path := "/agent/v1/runners/web-p1/heartbeat"
	if got := e.call("POST", path, "glrt-first-token"); got.Status != http.StatusNoContent {
		t.Fatalf("right token: %d %s", got.Status, got.Body)
	}
	after, _ := e.store.GetRunner(ctx, "web-p1")
	if after.LastHeartbeat == nil || after.Version != before.Version {
		t.Errorf("beat: last %v, version %d -> %d", after.LastHeartbeat, before.Version, after.Version)
	}

	// Rotation happens in the worker: another process writes the token.
	local, err := secrets.OpenLocal(e.secretsDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.NewResolver(local).Put(ctx, ref, "glrt-second-token"); err != nil {
		t.Fatal(err)
	}
	if got := e.call("POST", path, "glrt-second-token"); got.Status != http.StatusNoContent {
		t.Errorf("rotated token: %d %s", got.Status, got.Body)
	}
	if got := e.call("POST", path, "glrt-first-token"); got.Status != http.StatusUnauthorized {
		t.Errorf("old token after rotation: %d", got.Status)
	}
	// Anything else is refused alike, and recorded nowhere.
	last, _ := e.store.GetRunner(ctx, "web-p1")
	for token, want := range map[string]int{"": 401, "wrong": 401, apiToken: 401} {
		if got := e.call("POST", path, token); got.Status != want {
			t.Errorf("token %q: %d, want %d", token, got.Status, want)
		}
	}
	if got := e.call("POST", "/agent/v1/runners/nope/heartbeat", "glrt-first-token"); got.Status != http.StatusUnauthorized {
		t.Errorf("unknown runner: %d", got.Status)
	}
	if got, _ := e.store.GetRunner(ctx, "web-p1"); !got.LastHeartbeat.Equal(*last.LastHeartbeat) {
		t.Errorf("a refused beat was recorded: %v", got.LastHeartbeat)
	}
}
