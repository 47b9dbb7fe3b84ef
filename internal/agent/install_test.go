package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
)

// `gosling agent install` prepares a cloud VM: the pinned gitlab-runner,
// checked against its .sha256, and the gosling-agent systemd unit.
func TestInstall(t *testing.T) {
	runnerBin := []byte("#!/bin/sh\necho 'Version:      18.6.0'\n")
	sum := sha256.Sum256(runnerBin)
	good := hex.EncodeToString(sum[:])
	release := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/good/v18.6.0/gitlab-runner-linux-amd64", "/bad/v18.6.0/gitlab-runner-linux-amd64":
			_, _ = w.Write(runnerBin)
		case "/good/v18.6.0/gitlab-runner-linux-amd64.sha256":
			fmt.Fprintf(w, "%s  binaries/gitlab-runner-linux-amd64\n", good)
		case "/bad/v18.6.0/gitlab-runner-linux-amd64.sha256":
			fmt.Fprintf(w, "%s\n", strings.Repeat("0", 64))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(release.Close)
	dir := t.TempDir()
	runner := filepath.Join(dir, "bin", "gitlab-runner")
	if err := os.MkdirAll(filepath.Dir(runner), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(agentapi.Config{RunnerID: "web-1", Egg: "web", GitLabURL: "https://gitlab.example.com", TokenRef: "aws-sm://gosling/runners/web-1/token",
		Runner: agentapi.RunnerConfig{Binary: runner, Executor: agentapi.ExecutorDocker, Image: "alpine:3.20"}})
	cfgFile := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	o := agent.InstallOptions{ConfigFile: cfgFile, WorkDir: filepath.Join(dir, "work"), Binary: "/usr/local/bin/gosling", SystemdDir: filepath.Join(dir, "systemd"),
		RunnerPath: runner, RunnerVersion: "18.6.0", RunnerURL: release.URL + "/bad/v{version}/gitlab-runner-{os}-{arch}"}
	ctx := context.Background()

	if err := agent.Install(ctx, o); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("bad checksum: %v", err)
	}
	if _, err := os.Stat(runner); !os.IsNotExist(err) {
		t.Fatalf("a refused download was installed: %v", err)
	}
	noPin := o
	noPin.RunnerURL, noPin.RunnerVersion = "", ""
	if err := agent.Install(ctx, noPin); err == nil || !strings.Contains(err.Error(), "gitlab_runner_version") {
		t.Errorf("no gitlab-runner and no pin: %v", err)
	}

	o.RunnerURL = release.URL + "/good/v{version}/gitlab-runner-{os}-{arch}"
	if err := agent.Install(ctx, o); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(runner); err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Fatalf("gitlab-runner installed: %v %v", st, err)
	}
	unit, err := os.ReadFile(filepath.Join(o.SystemdDir, agentapi.VMUnit))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ExecStart=/usr/local/bin/gosling agent run --work-dir " + o.WorkDir + " --config " + cfgFile,
		"ExecReload=/bin/kill -HUP $MAINPID", "TimeoutStopSec=infinity", "Restart=always",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
}
