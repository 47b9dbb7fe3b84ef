package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/testbin"
)

// readmeBlock is one ```sh block of the README and what its
// <!-- readme-test: ... --> line says to do with it: run (in a scratch
// directory), dev (there, with a gosling dev running), or skip: why.
type readmeBlock struct {
	line int
	mode string
	body string
	// output is what the README shows the block prints: a plain block
	// right after it, marked <!-- readme-test: output of the block
	// above -->; each of its lines must be in what the block prints.
	output string
}

// readmeOutputLine marks a plain block as the output of the shell block
// before it.
const readmeOutputLine = "<!-- readme-test: output of the block above -->"

var readmeTestLine = regexp.MustCompile(`^<!-- readme-test: (run|dev|skip: .+) -->$`)

// readmeBlocks reads the README's shell blocks; one without a readme-test
// line before it is an error, so every new block gets a decision.
func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testbin.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out []readmeBlock
	for i := 0; i < len(lines); i++ {
		if lines[i] == "```" && i > 0 && lines[i-1] == readmeOutputLine {
			var body []string
			for i++; i < len(lines) && lines[i] != "```"; i++ {
				body = append(body, lines[i])
			}
			if len(out) == 0 || out[len(out)-1].mode != "run" {
				t.Errorf("README.md:%d: output shown for no shell block the test runs", i+1)
				continue
			}
			out[len(out)-1].output = strings.Join(body, "\n")
			continue
		}
		if lines[i] != "```sh" {
			continue
		}
		blk := readmeBlock{line: i + 1}
		if i > 0 {
			if m := readmeTestLine.FindStringSubmatch(lines[i-1]); m != nil {
				blk.mode = m[1]
			}
		}
		if blk.mode == "" {
			t.Errorf("README.md:%d: a shell block without a <!-- readme-test: run|dev|skip: why --> line before it", i+1)
		}
		var body []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			body = append(body, lines[i])
		}
		blk.body = strings.Join(body, "\n") + "\n"
		out = append(out, blk)
	}
	return out
}

// TestREADMEShellBlocks runs the README's shell blocks as a newcomer would,
// in a scratch directory holding bin/ (gosling, temporal, tofu) and
// examples/: the tour and the first production steps as they are, then,
// with `gosling dev` running there as `make run` runs it, the blocks that
// talk to it (the hand-sent hook with its shipped payload file among
// them). Every block must exit 0: an error the README does not show fails
// the test. The dev's ports are free ones, so the blocks' 127.0.0.1:8080
// (API) and 127.0.0.1:8929 (GitLab test server) are replaced by them. The
// root command's example (gosling --help) runs as well.
// answerComment finds the answer a block's comment shows: its error (or
// status) member and its HTTP status.
var answerComment = regexp.MustCompile(`(?m)^# (\{"[a-z]+":"[^"]+")[^\n]*\} (\d{3})$`)

func TestREADMEShellBlocks(t *testing.T) {
	blocks := readmeBlocks(t)
	if t.Failed() {
		t.FailNow()
	}
	scratch := t.TempDir()
	if err := os.Mkdir(filepath.Join(scratch, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"gosling": testbin.Gosling(t), "temporal": testbin.Temporal(t), "tofu": testbin.Tofu(t)} {
		if err := os.Symlink(path, filepath.Join(scratch, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(testbin.Root(), "examples"), filepath.Join(scratch, "examples")); err != nil {
		t.Fatal(err)
	}
	// The blocks run as in a terminal beside `make run`, whose PATH has no
	// bin/ (make exports it to its own commands only): they name
	// bin/gosling, and a bare gosling fails. gosling dev itself runs as
	// make runs it, with bin/ on its PATH, and so does the help example,
	// which names the binary as installed.
	// A gosling installed on this machine would hide such a block: its
	// directory is left out.
	var path []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "gosling")); err != nil {
			path = append(path, d)
		}
	}
	shellEnv := []string{"PATH=" + strings.Join(path, string(os.PathListSeparator)), "HOME=" + scratch, "USER=readme"}
	env := []string{"PATH=" + filepath.Join(scratch, "bin") + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + scratch, "USER=readme"}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	shell := func(what, dir, script string, env []string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", script)
		cmd.Dir, cmd.Env = dir, env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Errorf("%s: %v\n--- script:\n%s--- output:\n%s", what, err, script, out.String())
		}
		return out.String()
	}

	// The root command's example, in a directory of its own.
	root := exec.Command(testbin.Gosling(t), "--help")
	help, err := root.Output()
	if err != nil {
		t.Fatal(err)
	}
	ex := strings.SplitN(string(help), "Examples:\n", 2)
	if len(ex) != 2 {
		t.Fatalf("gosling --help has no examples:\n%s", help)
	}
	example, _, _ := strings.Cut(ex[1], "\n\n")
	exampleDir := filepath.Join(scratch, "help-example")
	if err := os.Mkdir(exampleDir, 0o755); err != nil {
		t.Fatal(err)
	}
	shell("gosling --help's example", exampleDir, example+"\n", env)

	var dev []readmeBlock
	ran := 0
	for _, b := range blocks {
		switch b.mode {
		case "run":
			what := fmt.Sprintf("README.md:%d", b.line)
			out := shell(what, scratch, b.body, shellEnv)
			for _, want := range strings.Split(b.output, "\n") {
				if strings.TrimSpace(want) != "" && !strings.Contains(out, want) {
					t.Errorf("%s: the README shows the line %q, which the block did not print:\n%s", what, want, out)
				}
			}
			ran++
		case "dev":
			dev = append(dev, b)
		}
	}
	if ran < 2 || len(dev) < 2 {
		t.Errorf("ran %d blocks and %d with gosling dev: the tour, the first production steps, the dev commands and the hand-sent hook should all run", ran, len(dev))
	}
	if len(dev) == 0 || t.Failed() {
		return
	}

	// `make run` (gosling dev on examples/nest, state in .gosling), on free ports.
	api, gitlab := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(filepath.Join(scratch, "bin", "gosling"), "dev", "--nest", "examples/nest", "--state-dir", ".gosling",
		"--api-addr", api, "--gitlab-addr", gitlab, "--temporal-port", fmt.Sprint(freePort(t)), "--ui-port", fmt.Sprint(freePort(t)))
	cmd.Dir, cmd.Env = scratch, env
	devOut := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = devOut, devOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _, _ = cmd.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
		// A dev killed before it stopped its runners leaves their agents:
		// stop each machine's agent (and its gitlab-runner) as dev would.
		machines, _ := filepath.Glob(filepath.Join(scratch, ".gosling", "tofu", "machines", "*"))
		for _, m := range machines {
			_ = agent.Stop(m, 5*time.Second)
		}
	}
	t.Cleanup(stop)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if strings.Contains(devOut.String(), "Try it, in another terminal") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gosling dev never printed its banner:\n%s", devOut)
		}
	}
	for _, b := range dev {
		body := strings.NewReplacer("127.0.0.1:8080", api, "127.0.0.1:8929", gitlab).Replace(b.body)
		what := fmt.Sprintf("README.md:%d (with gosling dev running)", b.line)
		out := shell(what, scratch, body, shellEnv)
		// A block whose comment shows an answer ("# {"error":"unknown job",...} 404")
		// must get that error and status.
		if m := answerComment.FindStringSubmatch(b.body); m != nil && !strings.Contains(out, m[1]) {
			t.Errorf("%s: the README shows %q, the API answered:\n%s", what, m[1], out)
		} else if m != nil && !strings.Contains(out, " "+m[2]) {
			t.Errorf("%s: the README shows status %s, the API answered:\n%s", what, m[2], out)
		}
	}
	stop()
	if t.Failed() {
		t.Logf("gosling dev:\n%s", devOut)
	}
}
