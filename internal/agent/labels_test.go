package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/testbin"
)

func TestMachineAndRunnerEnv(t *testing.T) {
	parent := []string{"PATH=/usr/bin", "HOME=/home/ci", "LC_ALL=C.UTF-8", "TZ=UTC", "TF_IN_AUTOMATION=1", "TF_CLI_CONFIG_FILE=/w/tofurc",
		"MAKEFLAGS=-j2", "MAKELEVEL=1", "VAULT_TOKEN=s.secret", "GOSLING_STORE=postgres://u:p@db/g", "GOSLING_RUNNER_TOKEN=glrt-x"}
	m := agent.MachineEnv(parent, agentapi.Config{RunnerID: "web-1", Egg: "web"}, "/var/lib/gosling/machines")
	want := []string{"PATH=/usr/bin", "HOME=/home/ci", "LC_ALL=C.UTF-8", "TZ=UTC", "VAULT_TOKEN=s.secret",
		agent.LabelDeployment + "=" + agentapi.DefaultDeployment, agent.LabelEgg + "=web", agent.LabelRunner + "=web-1", agent.LabelHome + "=/var/lib/gosling/machines"}
	if !slices.Equal(m, want) {
		t.Errorf("machine env\n got %q\nwant %q", m, want)
	}
	r := agent.RunnerEnv(append(m, "GOSLING_RUNNER_TOKEN=glrt-x", "AWS_SECRET_ACCESS_KEY=k"))
	want = []string{"PATH=/usr/bin", "HOME=/home/ci", "LC_ALL=C.UTF-8", "TZ=UTC",
		agent.LabelDeployment + "=" + agentapi.DefaultDeployment, agent.LabelEgg + "=web", agent.LabelRunner + "=web-1", agent.LabelHome + "=/var/lib/gosling/machines"}
	if !slices.Equal(r, want) {
		t.Errorf("runner env\n got %q\nwant %q", r, want)
	}
}

// TestLocalMachineIsLabelledAndDiesWhole: a launched machine's processes
// carry its labels and none of the launching process's environment; its
// gitlab-runner dies with a SIGKILLed agent; the machine is found by its
// labels and ended whole.
func TestLocalMachineIsLabelledAndDiesWhole(t *testing.T) {
	for k, v := range map[string]string{"TF_IN_AUTOMATION": "1", "MAKEFLAGS": "-j2", "GOSLING_TEST_CANARY": "leaked", "VAULT_TOKEN": "s.agent-only"} {
		t.Setenv(k, v)
	}
	deployment := fmt.Sprintf("labels-test-%d", os.Getpid())
	gl := gitlabtest.New()
	t.Cleanup(gl.Close)
	rn := gl.AddRunner(gitlabtest.Runner{Description: "gosling/web/lab1"})
	secretsDir := filepath.Join(t.TempDir(), "secrets")
	local, err := secretstore.OpenLocal(secretsDir)
	if err != nil {
		t.Fatal(err)
	}
	ref := fly.SecretRef("local://runners/lab1/token")
	if _, err := secretstore.NewResolver(local).Put(context.Background(), ref, rn.Token); err != nil {
		t.Fatal(err)
	}
	wrapper, err := runnerstandin.WriteWrapper(filepath.Join(t.TempDir(), "bin"), testbin.Gosling(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "lab1")
	cfg := agentapi.Config{RunnerID: "lab1", Egg: "web", Deployment: deployment, GitLabURL: gl.URL(), TokenRef: string(ref), SecretsDir: secretsDir,
		HeartbeatSeconds: 1, Runner: agentapi.RunnerConfig{Binary: wrapper, Executor: agentapi.ExecutorShell}}
	if err := agent.Launch(testbin.Gosling(t), dir, cfg, agent.LaunchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Stop(dir, 5*time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(agent.LogFile(dir))
			t.Logf("agent.log:\n%s", b)
		}
	})
	var st agent.Status
	waitFor(t, "gitlab-runner running", time.Minute, func() bool {
		st = agent.Inspect(dir)
		return st.Alive && st.RunnerPID > 0 && alive(st.RunnerPID)
	})

	environ := func(pid int) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		return string(bytes.ReplaceAll(b, []byte{0}, []byte{'\n'}))
	}
	agentEnv, runnerEnv := environ(st.PID), environ(st.RunnerPID)
	for _, leaked := range []string{"TF_IN_AUTOMATION", "MAKEFLAGS", "GOSLING_TEST_CANARY"} {
		if strings.Contains(agentEnv, leaked+"=") || strings.Contains(runnerEnv, leaked+"=") {
			t.Errorf("%s reached the machine", leaked)
		}
	}
	if !strings.Contains(agentEnv, "VAULT_TOKEN=") || strings.Contains(runnerEnv, "VAULT_TOKEN=") {
		t.Errorf("the agent's credential must stay with the agent: agent has it %v, gitlab-runner has it %v",
			strings.Contains(agentEnv, "VAULT_TOKEN="), strings.Contains(runnerEnv, "VAULT_TOKEN="))
	}
	for _, label := range []string{agent.LabelDeployment + "=" + deployment, agent.LabelEgg + "=web", agent.LabelRunner + "=lab1"} {
		if !strings.Contains(agentEnv, label) || !strings.Contains(runnerEnv, label) {
			t.Errorf("label %s missing", label)
		}
	}

	found, err := agent.FindLocalMachines(deployment, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].RunnerID != "lab1" || found[0].Egg != "web" ||
		!slices.Contains(found[0].PIDs, st.PID) || !slices.Contains(found[0].PIDs, st.RunnerPID) {
		t.Fatalf("machines found by their labels: %+v (agent %d, gitlab-runner %d)", found, st.PID, st.RunnerPID)
	}

	// Another Gosling on this host, keeping its machines elsewhere, with
	// the same deployment name and runner ID, neither sees nor ends it.
	elsewhere := filepath.Join(t.TempDir(), "machines")
	if other, _ := agent.FindLocalMachines(deployment, elsewhere); len(other) != 0 {
		t.Errorf("machines under %s: %+v, want none", elsewhere, other)
	}
	if n, err := agent.KillLocalMachine(elsewhere, "lab1", time.Second); n != 0 || err != nil || !alive(st.PID) {
		t.Errorf("killing lab1 under %s signalled %d processes (%v)", elsewhere, n, err)
	}
	if mine, _ := agent.FindLocalMachines(deployment, filepath.Dir(dir)); len(mine) != 1 {
		t.Errorf("machines under %s: %+v, want lab1", filepath.Dir(dir), mine)
	}

	// The agent is killed: its gitlab-runner goes with it.
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gitlab-runner dead with its agent", 30*time.Second, func() bool { return !alive(st.RunnerPID) })

	// Whatever is left is found and ended by the labels.
	if _, err := agent.KillLocalMachine("", "lab1", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if left, _ := agent.FindLocalMachines(deployment, ""); len(left) != 0 {
		t.Errorf("left after KillLocalMachine: %+v", left)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}
