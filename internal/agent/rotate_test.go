package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

type machine struct {
	t      *testing.T
	dir    string
	gl     *gitlabtest.Server
	runner gitlabtest.Runner
	store  *secretstore.Resolver
	ref    fly.SecretRef
}

// launch starts a real agent process (no ready signal) whose token is in a
// local secret store, and waits for its first token check.
func launch(t *testing.T) *machine {
	t.Helper()
	m := &machine{t: t, dir: filepath.Join(t.TempDir(), "machine"), gl: gitlabtest.New(), ref: "local://runners/r1/token"}
	t.Cleanup(m.gl.Close)
	m.runner = m.gl.AddRunner(gitlabtest.Runner{Description: "gosling/web/r1"})
	secretsDir := filepath.Join(t.TempDir(), "secrets")
	local, err := secretstore.OpenLocal(secretsDir)
	if err != nil {
		t.Fatal(err)
	}
	m.store = secretstore.NewResolver(local)
	if _, err := m.store.Put(context.Background(), m.ref, m.runner.Token); err != nil {
		t.Fatal(err)
	}
	wrapper, err := runnerstandin.WriteWrapper(filepath.Join(t.TempDir(), "bin"), testbin.Gosling(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentapi.Config{RunnerID: "r1", Egg: "web", GitLabURL: m.gl.URL(), TokenRef: string(m.ref), SecretsDir: secretsDir, HeartbeatSeconds: 1,
		Runner: agentapi.RunnerConfig{Binary: wrapper, Executor: agentapi.ExecutorShell}}
	if err := agent.Launch(testbin.Gosling(t), m.dir, cfg, agent.LaunchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := agent.Stop(m.dir, 10*time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(m.dir, "agent.log"))
			t.Logf("agent.log:\n%s", b)
		}
	})
	st := m.waitStatus(func(st agent.TokenStatus) bool { return st.Trigger == agent.TriggerStart })
	if !st.Verified || st.Version != "1" || st.PID != agent.Inspect(m.dir).PID {
		t.Fatalf("first token check = %+v", st)
	}
	return m
}

func (m *machine) waitStatus(done func(agent.TokenStatus) bool) agent.TokenStatus {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		st, err := agent.ReadTokenStatus(m.dir)
		if err == nil && done(st) {
			return st
		}
		select {
		case <-ctx.Done():
			m.t.Fatalf("agent never reported the expected token status (last: %+v, %v)", st, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// rotate resets the runner's token in GitLab and stores the new one.
func (m *machine) rotate() string {
	m.t.Helper()
	ctx := context.Background()
	c, err := gitlab.New(m.gl.URL(), m.gl.Token())
	if err != nil {
		m.t.Fatal(err)
	}
	token, _, err := c.ResetRunnerToken(ctx, m.runner.ID)
	if err != nil {
		m.t.Fatal(err)
	}
	version, err := m.store.Put(ctx, m.ref, token)
	if err != nil {
		m.t.Fatal(err)
	}
	return version
}

// On SIGHUP the agent reads the new version of its token, verifies it with
// GitLab and records it, without restarting.
func TestRotateAgentReloadsToken(t *testing.T) {
	m := launch(t)
	pid := agent.Inspect(m.dir).PID
	version := m.rotate()
	if err := agent.Reload(m.dir); err != nil {
		t.Fatal(err)
	}
	st := m.waitStatus(func(st agent.TokenStatus) bool { return st.Trigger == agent.TriggerReload })
	if !st.Verified || st.Version != version || st.Error != "" {
		t.Fatalf("after reload: %+v, want version %s verified", st, version)
	}
	if s := agent.Inspect(m.dir); !s.Alive || s.PID != pid {
		t.Fatalf("agent = %+v, want the same process %d alive", s, pid)
	}
	b, _ := os.ReadFile(filepath.Join(m.dir, "agent.log"))
	if r, _ := m.gl.Runner(m.runner.ID); strings.Contains(string(b), r.Token) || strings.Contains(string(b), m.runner.Token) {
		t.Error("agent.log holds a runner token")
	}
}

// A token GitLab refuses is recorded as such, and the agent keeps running.
func TestRotateAgentRefusedTokenKeepsRunning(t *testing.T) {
	m := launch(t)
	if _, err := m.store.Put(context.Background(), m.ref, "glrt-not-a-valid-token"); err != nil {
		t.Fatal(err)
	}
	if err := agent.Reload(m.dir); err != nil {
		t.Fatal(err)
	}
	st := m.waitStatus(func(st agent.TokenStatus) bool { return st.Trigger == agent.TriggerReload })
	if st.Verified || st.Version != "2" || !strings.Contains(st.Error, "rejected") {
		t.Fatalf("after reload with a bad token: %+v", st)
	}
	if strings.Contains(st.Error, "glrt-not-a-valid-token") {
		t.Error("the status names the token")
	}
	// Heartbeats go on.
	before := agent.Inspect(m.dir).LastHeartbeat
	deadline := time.Now().Add(time.Minute)
	for agent.Inspect(m.dir).LastHeartbeat.Equal(before) {
		if time.Now().After(deadline) {
			t.Fatal("the agent stopped heartbeating after a refused token")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := agent.Inspect(m.dir); !s.Alive {
		t.Fatalf("agent = %+v", s)
	}
}

// A stopped (dormant) agent is not signalled, nor one that is gone.
func TestRotateAgentReloadStoppedOrGone(t *testing.T) {
	m := launch(t)
	self := testbin.Gosling(t)
	if err := agent.Power(self, m.dir, "stopped", nil); err != nil {
		t.Fatal(err)
	}
	for !agent.Inspect(m.dir).Stopped { // SIGSTOP takes effect asynchronously
		time.Sleep(10 * time.Millisecond)
	}
	if err := agent.Reload(m.dir); !errors.Is(err, agent.ErrStopped) {
		t.Fatalf("Reload of a stopped agent: %v", err)
	}
	version := m.rotate()
	// Resumed, it reads the current version by itself.
	if err := agent.Power(self, m.dir, "running", nil); err != nil {
		t.Fatal(err)
	}
	st := m.waitStatus(func(st agent.TokenStatus) bool { return st.Trigger == agent.TriggerResume })
	if !st.Verified || st.Version != version {
		t.Fatalf("after resume: %+v, want version %s verified", st, version)
	}
	if err := agent.Stop(m.dir, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := agent.Reload(m.dir); !errors.Is(err, agent.ErrNotRunning) {
		t.Fatalf("Reload of a stopped process: %v", err)
	}
}
