package activities

import (
	"context"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
)

func TestAgentRefFor(t *testing.T) {
	for in, want := range map[fly.SecretRef]fly.SecretRef{
		"local://runners/web-p1/token":          "local://runners/web-p1/agent",
		"aws-sm://gosling/runners/web-p1/token": "aws-sm://gosling/runners/web-p1/agent",
		"vault://gosling/runners/web-p1/token":  "vault://gosling/runners/web-p1/agent",
		"yc-lockbox://e6qtokens/web-p1":         "yc-lockbox://e6qtokens/web-p1.agent",
	} {
		if got := AgentRefFor(in); got != want {
			t.Errorf("AgentRefFor(%s) = %s, want %s", in, got, want)
		}
	}
}

// A machine's credential is minted into the secret backend and named by
// its record, a new one on each mint, and revoked at teardown; revoking
// twice, or a runner that never had one, is no error.
func TestMintAndRevokeAgentCredential(t *testing.T) {
	e := newSurveyEnv(t)
	ctx := context.Background()
	if err := e.st.CreateRunner(ctx, &store.Runner{ID: "web-p1", Egg: "web", Cloud: fly.CloudLocal, Kind: fly.RunnerVM, State: store.StateProvisioning}); err != nil {
		t.Fatal(err)
	}
	ref, err := e.acts.MintAgentCredential(ctx, AgentCredentialInput{RunnerID: "web-p1", Cloud: fly.CloudLocal})
	if err != nil {
		t.Fatal(err)
	}
	if ref != "local://runners/web-p1/agent" {
		t.Errorf("ref = %s", ref)
	}
	r, _ := e.st.GetRunner(ctx, "web-p1")
	if r.AgentRef != ref {
		t.Errorf("record names %q, want %q", r.AgentRef, ref)
	}
	first, err := e.acts.Secrets.Resolve(ctx, fly.SecretRef(ref))
	if err != nil || !strings.HasPrefix(first, AgentCredentialPrefix) || len(first) < 60 {
		t.Fatalf("credential %q, %v", first, err)
	}
	if _, err := e.acts.MintAgentCredential(ctx, AgentCredentialInput{RunnerID: "web-p1", Cloud: fly.CloudLocal}); err != nil {
		t.Fatal(err)
	}
	e.acts.Secrets.Purge()
	if again, _ := e.acts.Secrets.Resolve(ctx, fly.SecretRef(ref)); again == first {
		t.Errorf("a second mint kept the credential")
	}
	for range 2 {
		if err := e.acts.RevokeAgentCredential(ctx, "web-p1"); err != nil {
			t.Fatal(err)
		}
	}
	e.acts.Secrets.Purge()
	if _, err := e.acts.Secrets.Resolve(ctx, fly.SecretRef(ref)); err == nil {
		t.Errorf("the credential outlived its revocation")
	}
	if err := e.acts.RevokeAgentCredential(ctx, "never-was"); err != nil {
		t.Errorf("revoke for an unknown runner: %v", err)
	}
}
