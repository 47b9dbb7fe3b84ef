package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/testbin"
)

// schemathesisExamples bounds the test cases schemathesis makes per
// operation and phase, so that a run takes a minute or two.
const schemathesisExamples = 100

// schemathesis is the CLI in bin/pyvenv (scripts/tools.sh moto installs it
// there); the test fails without it.
func schemathesis(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SCHEMATHESIS"); p != "" {
		return p
	}
	p := filepath.Join(testbin.Root(), "bin", "pyvenv", "bin", "schemathesis")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath("schemathesis"); err == nil {
		return p
	}
	t.Fatalf("schemathesis not found in bin/pyvenv, on PATH or at $SCHEMATHESIS: run scripts/tools.sh moto")
	return ""
}

// TestOpenAPIContract runs schemathesis against a `gosling server`
// process: its stateless phases (the document's examples, coverage of its
// constraints, fuzzing) and its stateful phase (links between
// operations), once with a valid API token and a Nest's webhook secret,
// once with a token the server does not know. Every 5xx, every response
// that does not match api/openapi.json (status, content type, headers,
// body) and every crash fails the run.
func TestOpenAPIContract(t *testing.T) {
	bin := schemathesis(t)
	f := startFleet(t, fleetOptions{NoWorkers: true, InMemoryTemporal: true})
	base := "http://" + f.apiAddr
	for _, c := range []struct {
		name    string
		headers []string
	}{
		{"valid token", []string{"Authorization: Bearer " + APIToken, "X-Gitlab-Token: " + fleetWebhookSecret}},
		{"unknown token", []string{"Authorization: Bearer not-a-gosling-token", "X-Gitlab-Token: not-the-webhook-secret"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			report := filepath.Join(t.TempDir(), "junit.xml")
			args := []string{"run", filepath.Join(testbin.Root(), "api", "openapi.json"), "--url", base,
				"--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth",
				"--phases", "examples,coverage,fuzzing,stateful", "--max-examples", fmt.Sprint(schemathesisExamples),
				"--seed", "27", "--workers", "1", "--request-timeout", "30", "--suppress-health-check", "all",
				"--report", "junit", "--report-junit-path", report, "--no-color"}
			for _, h := range c.headers {
				args = append(args, "-H", h)
			}
			cmd := exec.Command(bin, args...)
			// It keeps a cache of crashes in .schemathesis/ where it runs.
			cmd.Dir = t.TempDir()
			cmd.Env = append(os.Environ(), "SCHEMATHESIS_TELEMETRY=false")
			out, err := cmd.CombinedOutput()
			t.Logf("schemathesis %s:\n%s", strings.Join(args, " "), tail(out, 20000))
			if err != nil {
				t.Fatalf("schemathesis found failures: %v", err)
			}
		})
	}
}
