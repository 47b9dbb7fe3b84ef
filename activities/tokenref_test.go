package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/tofu"
	"go.temporal.io/sdk/temporal"
)

// Runner tokens go where MotherGoose's secrets block says, each to a URI of
// its own, and a Lockbox backend without a secret for them is refused.
func TestTokenRefs(t *testing.T) {
	for _, tc := range []struct {
		cfg  fly.Secrets
		want fly.SecretRef
	}{
		{fly.Secrets{}, "local://runners/web-p1/token"},
		{fly.Secrets{Backend: fly.SchemeLocal}, "local://runners/web-p1/token"},
		{fly.Secrets{Backend: fly.SchemeAWSSM}, "aws-sm://gosling/runners/web-p1/token"},
		{fly.Secrets{Backend: fly.SchemeVault}, "vault://gosling/runners/web-p1/token"},
		{fly.Secrets{Backend: fly.SchemeLockbox, Backends: map[string]fly.SecretBackend{fly.SchemeLockbox: {RunnerTokens: "e6qtokens"}}}, "yc-lockbox://e6qtokens/web-p1"},
	} {
		f, err := TokenRefs(tc.cfg)
		if err != nil {
			t.Errorf("%s: %v", tc.cfg.Backend, err)
			continue
		}
		got := f("web-p1")
		if got != tc.want {
			t.Errorf("%s: %s, want %s", tc.cfg.Backend, got, tc.want)
		}
		if u, err := got.Parse(); err != nil || u.Version != "" {
			t.Errorf("%s: %s does not parse: %v", tc.cfg.Backend, got, err)
		}
	}
	if f, err := TokenRefs(fly.Secrets{Backend: fly.SchemeLockbox}); err != nil || f("web-p1") != "" {
		t.Errorf("Lockbox without runner_tokens: %v", err)
	}
}

// A new runner's token goes to its egg's own place, which only the egg's
// runner identity may read: a secret per runner under the egg's prefix, or
// an entry of the egg's Lockbox secret; an egg without its Lockbox secret
// is refused, naming gosling deploy.
func TestEggTokenRefs(t *testing.T) {
	lockbox := func(_ context.Context, egg string) (string, error) {
		if egg != "web" {
			return "", fmt.Errorf("%w: no Lockbox secret gosling-prod-runners-%s; gosling deploy makes it", tofu.ErrNoIdentity, egg)
		}
		return "e6qrunnersweb", nil
	}
	for _, tc := range []struct {
		backend string
		want    fly.SecretRef
	}{
		{"", "local://runners/web-p1/token"},
		{fly.SchemeAWSSM, "aws-sm://gosling/gosling-prod/runners/web/web-p1/token"},
		{fly.SchemeVault, "vault://gosling/gosling-prod/runners/web/web-p1/token"},
		{fly.SchemeLockbox, "yc-lockbox://e6qrunnersweb/web-p1"},
	} {
		f, err := EggTokenRefs(fly.Secrets{Backend: tc.backend}, "gosling-prod", lockbox)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f(context.Background(), "web", "web-p1")
		if err != nil || got != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.backend, got, err, tc.want)
		}
		if u, err := got.Parse(); err != nil || u.Version != "" {
			t.Errorf("%s: %s does not parse: %v", tc.backend, got, err)
		}
	}
	f, _ := EggTokenRefs(fly.Secrets{Backend: fly.SchemeLockbox}, "gosling-prod", lockbox)
	a := &Activities{EggTokenRef: f}
	_, err := a.tokenRefFor(context.Background(), "api", "api-p1")
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || !strings.Contains(err.Error(), "gosling deploy") {
		t.Errorf("an egg without its secret: %v", err)
	}
	if _, err := EggTokenRefs(fly.Secrets{Backend: fly.SchemeLockbox}, "gosling-prod", nil); err == nil {
		t.Error("Lockbox tokens without a Yandex Cloud client accepted")
	}
}
