package agent

import (
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/agentapi"
)

// An agent that reports to MotherGoose needs its machine's own credential:
// the runner token is never one.
func TestConfigNeedsAgentCredentialToReport(t *testing.T) {
	base := agentapi.Config{RunnerID: "web-p1", GitLabURL: "https://gitlab.example.com", TokenRef: "local://runners/web-p1/token"}
	if err := base.Validate(); err != nil {
		t.Fatalf("a machine that reports nothing needs no credential: %v", err)
	}
	reporting := base
	reporting.APIURL = "https://mg.example.com"
	if err := reporting.Validate(); err == nil || !strings.Contains(err.Error(), "agent_ref is missing") {
		t.Errorf("reporting without a credential: %v", err)
	}
	reporting.AgentRef = "local://runners/web-p1/agent"
	if err := reporting.Validate(); err != nil {
		t.Errorf("reporting with a credential: %v", err)
	}
	reporting.AgentRef = "nope://x"
	if err := reporting.Validate(); err == nil || !strings.Contains(err.Error(), "agent_ref") {
		t.Errorf("a bad credential URI: %v", err)
	}
}
