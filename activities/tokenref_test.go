package activities

import (
	"testing"

	"github.com/gosling-ci/gosling/fly"
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
	if _, err := TokenRefs(fly.Secrets{Backend: fly.SchemeLockbox}); err == nil {
		t.Error("Lockbox without runner_tokens accepted")
	}
}
