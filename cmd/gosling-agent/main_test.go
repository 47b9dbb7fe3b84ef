package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// forbidden are what the agent's build must not pull in: the clouds' SDKs
// (and the gRPC they speak), the Temporal SDK, the GitLab API client of
// the servers, the servers' own packages, and every stand-in.
var forbidden = []struct{ prefix, why string }{
	{"github.com/aws/aws-sdk-go-v2", "a cloud SDK"}, {"github.com/aws/smithy-go", "a cloud SDK"},
	{"github.com/yandex-cloud/", "a cloud SDK"}, {"google.golang.org/grpc", "a cloud SDK's transport"},
	{"go.temporal.io/", "the Temporal SDK"}, {"gitlab.com/gitlab-org/api/client-go", "the servers' GitLab client"},
	{"github.com/opentofu/", "OpenTofu"}, {"modernc.org/sqlite", "the store"}, {"github.com/jackc/pgx", "the store"},
}

var serverPackages = []string{"api", "mothergoose", "worker", "workflows", "activities", "bootstrap", "tofu", "cli", "internal/store", "internal/secrets", "internal/gitlab", "internal/rift", "internal/metrics"}

// isStandIn tells a stand-in package by its name (…test, runnerstandin).
func isStandIn(path string) bool {
	last := path[strings.LastIndexByte(path, '/')+1:]
	return strings.HasSuffix(last, "test") || strings.Contains(last, "standin")
}

// The agent's build is its own packages: go list -deps finds no cloud
// SDK, no Temporal SDK, no server package and no stand-in in it.
func TestAgentBuildCarriesNoSDKOrStandIn(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "./cmd/gosling-agent")
	cmd.Dir = testbin.Root()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps gave %d packages", len(deps))
	}
	const self = "github.com/gosling-ci/gosling/"
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f.prefix) {
				t.Errorf("the agent's build pulls in %s (%s)", d, f.why)
			}
		}
		if rest, ok := strings.CutPrefix(d, self); ok {
			if isStandIn(d) {
				t.Errorf("the agent's build pulls in the stand-in %s", d)
			}
			for _, p := range serverPackages {
				if rest == p {
					t.Errorf("the agent's build pulls in the server package %s", d)
				}
			}
		}
	}
	// The check sees what it looks for: gosling's own build has them all.
	cmd = exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "./cmd/gosling")
	cmd.Dir = testbin.Root()
	all, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"github.com/aws/aws-sdk-go-v2/service/ecs", "go.temporal.io/sdk/client", "github.com/yandex-cloud/go-sdk/v2", self + "internal/gitlab/runnerstandin"} {
		if !strings.Contains(string(all), want+"\n") {
			t.Errorf("gosling's build lacks %s: the check reads the wrong list", want)
		}
	}
}

// The agent binary, built as `make build` builds it, weighs at most 30 MB
// (gosling weighs about 180 MB): what every cloud VM downloads at boot.
func TestAgentBinarySize(t *testing.T) {
	fi, err := os.Stat(testbin.GoslingAgent(t))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 30<<20 {
		t.Errorf("gosling-agent is %.1f MiB, more than 30", float64(fi.Size())/(1<<20))
	}
	t.Logf("gosling-agent: %.1f MiB", float64(fi.Size())/(1<<20))
}

// The binary runs gosling's agent command lines and no other command.
func TestAgentBinaryCommandLine(t *testing.T) {
	bin := testbin.GoslingAgent(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "version dev") {
		t.Errorf("--version: %v: %s", err, out)
	}
	out, err = exec.Command(bin, "agent", "status", "--work-dir", t.TempDir()).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "{") {
		t.Errorf("agent status: %v: %s", err, out)
	}
	cmd := exec.Command(bin, "server")
	if out, err := cmd.CombinedOutput(); err == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("a server command ran: %v: %s", err, out)
	}
	cmd = exec.Command(bin, "agent", "run", "--work-dir", t.TempDir(), "--config-env", "CFG")
	cmd.Env = append(os.Environ(), "CFG={not json")
	if out, err := cmd.CombinedOutput(); err == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("a configuration that does not parse: exit %d: %s", cmd.ProcessState.ExitCode(), out)
	}
}
