package agent_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/testbin"
)

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// The agent updates itself to the pinned version: a release whose checksum
// does not match is refused and reported, the old binary kept; a good one
// is swapped in and re-executed in the same process, and gitlab-runner and
// its running job go on undisturbed.
func TestAgentSelfUpdate(t *testing.T) {
	r := newRig(t)
	binDir := t.TempDir()
	self := filepath.Join(binDir, "gosling")
	orig, err := os.ReadFile(r.gosling)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(self, orig, 0o755); err != nil {
		t.Fatal(err)
	}
	r.gosling = self
	const next = "2.0.0-test"
	newBin, err := os.ReadFile(testbin.GoslingVersion(t, t.TempDir(), next))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(newBin)
	release := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/good/" + next + "/gosling", "/bad/" + next + "/gosling":
			_, _ = w.Write(newBin)
		case "/good/" + next + "/gosling.sha256":
			fmt.Fprintf(w, "%s  gosling\n", hex.EncodeToString(sum[:]))
		case "/bad/" + next + "/gosling.sha256":
			fmt.Fprintf(w, "%s  gosling\n", strings.Repeat("ab", 32))
		default:
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(release.Close)

	r.launch(agent.LaunchOptions{})
	waitFor(t, "ready", time.Minute, func() bool { ready, _, _ := r.mg.snapshot(); return len(ready) > 0 })
	before, err := agent.ReadState(r.dir)
	if err != nil || before.RunnerPID == 0 {
		t.Fatalf("state %+v %v", before, err)
	}

	// A bad checksum: refused, reported, the old binary kept.
	r.mg.setPins(agentapi.Pins{Agent: next, AgentURL: release.URL + "/bad/{version}/gosling"})
	waitFor(t, "the refused update reported", time.Minute, func() bool {
		_, beats, _ := r.mg.snapshot()
		return len(beats) > 0 && strings.Contains(beats[len(beats)-1].UpdateError, "checksum mismatch")
	})
	if got := fileSum(t, self); got != fileSum(t, testbin.Gosling(t)) {
		t.Fatal("the binary changed after a refused update")
	}

	// A job runs while the agent updates itself.
	p := r.pipeline(gitlabtest.JobSpec{Name: "long", Script: []string{"sleep 3", "echo survived the update"}})
	jobID := r.gl.PipelineJobs(p.ID)[0].ID
	waitFor(t, "the job running", time.Minute, func() bool { j, _ := r.gl.Job(jobID); return j.Status == "running" })
	r.mg.setPins(agentapi.Pins{Agent: next, AgentURL: release.URL + "/good/{version}/gosling"})
	waitFor(t, "the updated agent", time.Minute, func() bool {
		st, err := agent.ReadState(r.dir)
		return err == nil && st.Version == next && st.Phase == agent.PhaseServing
	})
	after, _ := agent.ReadState(r.dir)
	if after.PID != before.PID || after.RunnerPID != before.RunnerPID {
		t.Errorf("state before %+v, after %+v: want the same agent and gitlab-runner processes", before, after)
	}
	if got := fileSum(t, self); got != hex.EncodeToString(sum[:]) {
		t.Error("the binary was not swapped")
	}
	r.waitJobs(p.ID, time.Minute)
	if j, _ := r.gl.Job(jobID); j.Status != "success" || !strings.Contains(string(r.gl.Trace(jobID)), "survived the update") {
		t.Errorf("the job across the update: %s\n%s", j.Status, r.gl.Trace(jobID))
	}
	waitFor(t, "ready from the new version", time.Minute, func() bool {
		ready, _, _ := r.mg.snapshot()
		return ready[len(ready)-1].Versions.Agent == next
	})
	waitFor(t, "the job's end reported", 30*time.Second, func() bool {
		return strings.Join(r.mg.jobStatuses(jobID), ",") == "running,success"
	})
}

// gitlab-runner is upgraded to the pinned version between jobs: a job that
// runs when the pin arrives finishes on the old one first.
func TestAgentUpgradesGitLabRunnerBetweenJobs(t *testing.T) {
	r := newRig(t)
	bin := filepath.Join(t.TempDir(), "gitlab-runner")
	wrapper, err := os.ReadFile(r.cfg.Runner.Binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, wrapper, 0o755); err != nil {
		t.Fatal(err)
	}
	r.cfg.Runner.Binary = bin
	const next = "18.7.0"
	// The "release": the stand-in under another version.
	newBin := []byte("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Version:      " + next + "'; exit 0; fi\nexec '" + r.gosling + "' dev gitlab-runner \"$@\"\n")
	sum := sha256.Sum256(newBin)
	release := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/v" + next + "/gitlab-runner":
			_, _ = w.Write(newBin)
		case "/v" + next + "/gitlab-runner.sha256":
			fmt.Fprintf(w, "%s  gitlab-runner\n", hex.EncodeToString(sum[:]))
		default:
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(release.Close)
	r.launch(agent.LaunchOptions{})
	waitFor(t, "ready", time.Minute, func() bool { ready, _, _ := r.mg.snapshot(); return len(ready) > 0 })
	before, _ := agent.ReadState(r.dir)

	p := r.pipeline(gitlabtest.JobSpec{Name: "long", Script: []string{"sleep 2", "echo done on the old gitlab-runner"}})
	jobID := r.gl.PipelineJobs(p.ID)[0].ID
	waitFor(t, "the job running", time.Minute, func() bool { return len(r.mg.jobStatuses(jobID)) > 0 })
	r.mg.setPins(agentapi.Pins{GitLabRunner: next, GitLabRunnerURL: release.URL + "/v{version}/gitlab-runner"})
	waitFor(t, "the upgraded gitlab-runner", time.Minute, func() bool {
		_, beats, _ := r.mg.snapshot()
		return len(beats) > 0 && beats[len(beats)-1].Versions.GitLabRunner == next
	})
	if j, _ := r.gl.Job(jobID); j.Status != "success" || !strings.Contains(string(r.gl.Trace(jobID)), "done on the old gitlab-runner") {
		t.Errorf("the job that ran during the upgrade: %s\n%s", j.Status, r.gl.Trace(jobID))
	}
	after, _ := agent.ReadState(r.dir)
	if after.RunnerPID == before.RunnerPID || after.PID != before.PID {
		t.Errorf("state before %+v, after %+v: want a new gitlab-runner under the same agent", before, after)
	}
	p = r.pipeline(gitlabtest.JobSpec{Name: "next", Script: []string{"echo on the new one"}})
	if jobs := r.waitJobs(p.ID, time.Minute); jobs[0].Status != "success" {
		t.Errorf("a job after the upgrade: %+v", jobs[0])
	}
}
