// Package dynamotest runs dynalite (npm's DynamoDB-compatible server on
// LevelDB in memory) for tests of the DynamoDB engine, and a stand-in for
// the YDB Document API's authentication in front of it.
//
// A package whose tests need DynamoDB shares one dynalite between them:
//
//	func TestMain(m *testing.M) { os.Exit(dynamotest.Runner(m).Run()) }
//
//	func TestSomething(t *testing.T) {
//		dsn := dynamotest.DSN(t) // a table prefix of its own on the shared server
//		...
//	}
//
// Without Runner, every Start call runs a server of its own and stops it
// when the test ends. dynalite is found at $DYNALITE (its cli.js), in the
// repository's bin/node (scripts/tools.sh dynalite installs it there), or
// as dynalite on PATH; Node.js must be on PATH.
//
// dynalite has no TransactWriteItems; the engine needs none (see the store
// package doc), so everything it does runs here as in production.
package dynamotest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// InstallHint is what to do when dynalite is missing.
const InstallHint = "run scripts/tools.sh dynalite to install it into bin/node"

// Region is the region test DSNs name; dynalite accepts any.
const Region = "us-east-1"

// startTimeout bounds dynalite's start.
const startTimeout = time.Minute

var shared struct {
	managed atomic.Bool
	once    sync.Once
	srv     *Server
	err     error
	stopped atomic.Bool
}

// tables numbers table prefixes so every DSN names fresh tables.
var tables atomic.Int64

// M is what Runner wraps: a *testing.M, or another Runner.
type M interface{ Run() int }

type runner struct{ m M }

// Runner wraps m so that its Run shares one dynalite between every Start
// and DSN call and stops it when the tests end. It composes with
// pgtest.Main: pgtest.Main(dynamotest.Runner(m)).
func Runner(m M) M {
	shared.managed.Store(true)
	return runner{m: m}
}

func (r runner) Run() int {
	code := r.m.Run()
	shared.stopped.Store(true)
	shared.once.Do(func() { shared.err = errors.New("the shared dynalite has been stopped") })
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "dynamotest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Start returns the endpoint (http://127.0.0.1:PORT) of a dynalite that
// lives at least as long as the test. It fails the test when dynalite
// cannot start, including when it is not installed: tests that need it
// must not silently pass without it.
func Start(t testing.TB) string {
	t.Helper()
	if shared.managed.Load() {
		shared.once.Do(func() { shared.srv, shared.err = StartServer() })
		if shared.err != nil {
			t.Fatalf("dynamotest: %v", shared.err)
		}
		return shared.srv.Endpoint
	}
	srv, err := StartServer()
	if err != nil {
		t.Fatalf("dynamotest: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("dynamotest: %v", err)
		}
	})
	return srv.Endpoint
}

// TablePrefix returns a table prefix no other call in this process returns.
func TablePrefix() string {
	return fmt.Sprintf("t%d-%d", os.Getpid(), tables.Add(1))
}

// DSN returns a dynamodb:// DSN for fresh tables on a dynalite (Start).
// Credentials come from the environment: Credentials sets ones dynalite
// accepts.
func DSN(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("dynamodb://%s?region=%s&endpoint=%s", TablePrefix(), Region, url.QueryEscape(Start(t)))
}

// Credentials sets AWS credentials in the environment for the rest of the
// process when it has none, and keeps the SDK from asking an instance
// metadata service for them. dynalite checks only their form.
func Credentials() {
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		os.Setenv("AWS_ACCESS_KEY_ID", "AKIDDYNALITE")
		os.Setenv("AWS_SECRET_ACCESS_KEY", "dynalite-accepts-any-secret")
	}
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// Server is one running dynalite.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string

	cmd  *exec.Cmd
	done chan error
}

// StartServer starts dynalite on a free port of 127.0.0.1, retrying on
// another port when the chosen one was taken meanwhile.
func StartServer() (*Server, error) {
	cli, err := findDynalite()
	if err != nil {
		return nil, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("dynalite needs Node.js (node) on PATH: %w", err)
	}
	for attempt := 1; ; attempt++ {
		srv, err := startOn(node, cli)
		if err == nil || attempt == 3 {
			return srv, err
		}
	}
}

// findDynalite returns dynalite's cli.js.
func findDynalite() (string, error) {
	if p := os.Getenv("DYNALITE"); p != "" {
		return p, nil
	}
	if root, err := repoRoot(); err == nil {
		p := filepath.Join(root, "bin", "node", "node_modules", "dynalite", "cli.js")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("dynalite"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			return resolved, nil
		}
		return p, nil
	}
	return "", fmt.Errorf("dynalite not found in bin/node, on PATH or at $DYNALITE: %s", InstallHint)
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

func startOn(node, cli string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// Tables are active at once: the engine's waiter is tested against
	// DescribeTable all the same.
	cmd := exec.Command(node, cli, "--host", "127.0.0.1", "--port", fmt.Sprint(port),
		"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// The kernel kills dynalite when the thread that started it ends, so a
	// test binary that dies does not leave it running; the thread is
	// locked and kept until the process ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	srv := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, done: make(chan error, 1)}
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
		return nil, fmt.Errorf("start dynalite: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "listening") {
				close(ready)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case <-ready:
		return srv, nil
	case err := <-srv.done:
		return nil, fmt.Errorf("dynalite on port %d exited: %v: %s", port, err, strings.TrimSpace(stderr.String()))
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		<-srv.done
		return nil, fmt.Errorf("dynalite on port %d did not start within %s", port, startTimeout)
	}
}

// Stop kills dynalite (its data is in memory and goes with it).
func (s *Server) Stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop dynalite: %w", err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	return nil
}

// freePort asks the kernel for a port nobody listens on.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// waitContext is a short context for stand-in forwarding.
func waitContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
