// Package mototest runs moto (the Python package index's AWS emulator, an
// implementation of the AWS APIs written outside this repository) for
// tests, and a thin HTTP proxy in front of it that names, counts and fails
// calls.
//
// A package whose tests need AWS shares one moto_server between them:
//
//	func TestMain(m *testing.M) { os.Exit(mototest.Runner(m).Run()) }
//
//	func TestSomething(t *testing.T) {
//		p := mototest.NewProxy(t) // an AWS account of its own on the shared server
//		client := sqs.NewFromConfig(p.Config())
//		...
//	}
//
// Without Runner, every Start call runs a server of its own and stops it
// when the test ends. moto_server is found at $MOTO_SERVER, in the
// repository's bin/pyvenv (scripts/tools.sh moto installs it there), or on
// PATH. MOTOTEST_LOG=FILE keeps its request log and tracebacks in FILE.
package mototest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// InstallHint is what to do when moto is missing.
const InstallHint = "run scripts/tools.sh moto to install it into bin/pyvenv"

// startTimeout bounds moto_server's start (about a second here).
const startTimeout = time.Minute

var shared struct {
	managed atomic.Bool
	once    sync.Once
	srv     *Server
	err     error
}

// M is what Runner wraps: a *testing.M, or another runner such as
// dynamotest.Runner's.
type M interface{ Run() int }

type runner struct{ m M }

// Runner wraps m so that its Run shares one moto_server between every
// Start and NewProxy call and stops it when the tests end.
func Runner(m M) M {
	shared.managed.Store(true)
	return runner{m: m}
}

func (r runner) Run() int {
	code := r.m.Run()
	shared.once.Do(func() { shared.err = errors.New("the shared moto_server has been stopped") })
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "mototest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Start returns the endpoint (http://127.0.0.1:PORT) of a moto_server that
// lives at least as long as the test. It fails the test when moto cannot
// start, including when it is not installed: tests that need it must not
// silently pass without it.
func Start(t testing.TB) string {
	t.Helper()
	if shared.managed.Load() {
		shared.once.Do(func() { shared.srv, shared.err = StartServer() })
		if shared.err != nil {
			t.Fatalf("mototest: %v", shared.err)
		}
		return shared.srv.Endpoint
	}
	srv, err := StartServer()
	if err != nil {
		t.Fatalf("mototest: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("mototest: %v", err)
		}
	})
	return srv.Endpoint
}

// Server is one running moto_server.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string

	cmd  *exec.Cmd
	done chan error
}

// runningRE is werkzeug's line naming the address it listens on; with
// port 0 it names the port the kernel chose.
var runningRE = regexp.MustCompile(`Running on (http://127\.0\.0\.1:\d+)`)

// StartServer starts moto_server on a port of 127.0.0.1 the kernel
// chooses, so no other process can take it between choosing and binding.
func StartServer() (*Server, error) {
	bin, err := findMoto()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", "0")
	// Yandex Message Queue speaks SQS's API in region ru-central1, which
	// moto serves only when told to.
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "MOTO_ALLOW_NONEXISTENT_REGION=true")
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = cmd.Stderr
	// The kernel kills moto_server when the thread that started it ends,
	// so a test binary that dies does not leave it running; the thread is
	// locked and kept until the process ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	srv := &Server{cmd: cmd, done: make(chan error, 1)}
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		srv.done <- cmd.Wait()
		select {} // keep the thread: Pdeathsig follows it
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	ready := make(chan string, 1)
	var head strings.Builder // what it printed before it listened
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := runningRE.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
				break
			}
			if head.Len() < 16<<10 {
				head.WriteString(sc.Text() + "\n")
			}
		}
		// Its request log and tracebacks go to $MOTOTEST_LOG, if set.
		log := io.Discard
		if name := os.Getenv("MOTOTEST_LOG"); name != "" {
			if f, err := os.Create(name); err == nil {
				defer f.Close()
				log = f
			}
		}
		_, _ = io.Copy(log, out)
	}()
	select {
	case srv.Endpoint = <-ready:
		return srv, nil
	case err := <-srv.done:
		return nil, fmt.Errorf("moto_server exited: %v: %s", err, strings.TrimSpace(head.String()))
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		<-srv.done
		return nil, fmt.Errorf("moto_server did not start within %s", startTimeout)
	}
}

// Stop ends moto_server (its data is in memory and goes with it).
func (s *Server) Stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop moto_server: %w", err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	return nil
}

// findMoto returns moto_server's path.
func findMoto() (string, error) {
	if p := os.Getenv("MOTO_SERVER"); p != "" {
		return p, nil
	}
	if root, err := repoRoot(); err == nil {
		p := filepath.Join(root, "bin", "pyvenv", "bin", "moto_server")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("moto_server"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("moto_server not found in bin/pyvenv, on PATH or at $MOTO_SERVER: %s", InstallHint)
}

// repoRoot is the directory holding go.mod, above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
