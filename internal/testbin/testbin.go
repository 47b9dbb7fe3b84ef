// Package testbin finds the programs tests run for real: OpenTofu, the
// Temporal CLI and the real GitLab Runner from bin/ (built by `make
// tools`), and a freshly built
// gosling binary. A missing tool fails the test with the command that
// installs it: CI runs `make test`, which installs them first.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Root is the repository root (the directory holding go.mod).
func Root() string {
	dir, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("testbin: no go.mod above the working directory")
		}
		dir = parent
	}
}

func tool(t testing.TB, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p := filepath.Join(Root(), "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not installed in bin/: run `scripts/tools.sh %s` (or `make tools`)", name, name)
	}
	return p
}

// Tofu is the OpenTofu binary ($GOSLING_TOFU or bin/tofu).
func Tofu(t testing.TB) string { return tool(t, "tofu", "GOSLING_TOFU") }

// Temporal is the Temporal CLI ($GOSLING_TEMPORAL or bin/temporal).
func Temporal(t testing.TB) string { return tool(t, "temporal", "GOSLING_TEMPORAL") }

// GitLabRunner is the real GitLab Runner ($GOSLING_GITLAB_RUNNER or
// bin/gitlab-runner, the 12.8.0 pre-release scripts/tools.sh builds).
func GitLabRunner(t testing.TB) string { return tool(t, "gitlab-runner", "GOSLING_GITLAB_RUNNER") }

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// Gosling builds the gosling binary once per test process and returns its
// path. Call Cleanup from TestMain to remove it.
func Gosling(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "gosling-test-bin-")
		if buildErr != nil {
			return
		}
		buildPath = filepath.Join(buildDir, "gosling")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/gosling")
		cmd.Dir = Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/gosling: %v\n%s", err, out)
			return
		}
		buildErr = uncache(buildPath)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

var (
	agentOnce sync.Once
	agentDir  string
	agentPath string
	agentErr  error
)

// GoslingAgent builds the gosling-agent binary (cmd/gosling-agent) once
// per test process, as `make build` does, and returns its path. Call
// Cleanup from TestMain to remove it.
func GoslingAgent(t testing.TB) string {
	t.Helper()
	agentOnce.Do(func() {
		agentDir, agentErr = os.MkdirTemp("", "gosling-agent-test-bin-")
		if agentErr != nil {
			return
		}
		agentPath = filepath.Join(agentDir, "gosling-agent")
		cmd := exec.Command("go", "build", "-o", agentPath, "./cmd/gosling-agent")
		cmd.Dir = Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("go build ./cmd/gosling-agent: %v\n%s", err, out)
			return
		}
		agentErr = uncache(agentPath)
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentPath
}

// Cleanup removes what Gosling and GoslingAgent built.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	if agentDir != "" {
		os.RemoveAll(agentDir)
	}
}

// GoslingVersion builds a gosling binary that says it is version (main's
// -X version) into dir and returns its path, for tests of self-updates.
func GoslingVersion(t testing.TB, dir, version string) string {
	t.Helper()
	p := filepath.Join(dir, "gosling-"+version)
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", p, "./cmd/gosling")
	cmd.Dir = Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gosling (version %s): %v\n%s", version, err, out)
	}
	return p
}
