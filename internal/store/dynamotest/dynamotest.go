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
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/testbin"
)

// InstallHint is what to do when dynalite is missing.
const InstallHint = "run scripts/tools.sh dynalite to install it into bin/node"

// Region is the region test DSNs name; dynalite accepts any.
const Region = "us-east-1"

// startTimeout bounds dynalite's start.
const startTimeout = time.Minute

var shared = &testbin.Shared[*Server]{Name: "dynamotest: dynalite", Start: StartServer}

// tables numbers table prefixes so every DSN names fresh tables.
var tables atomic.Int64

// M is what Runner wraps: a *testing.M, or another Runner.
type M = testbin.M

// Runner wraps m so that its Run shares one dynalite between every Start
// and DSN call and stops it when the tests end. It composes with
// pgtest.Main: pgtest.Main(dynamotest.Runner(m)).
func Runner(m M) M { return shared.Runner(m) }

// Start returns the endpoint (http://127.0.0.1:PORT) of a dynalite that
// lives at least as long as the test. It fails the test when dynalite
// cannot start, including when it is not installed: tests that need it
// must not silently pass without it.
func Start(t testing.TB) string {
	t.Helper()
	return shared.Get(t).Endpoint
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

// Server is one running dynalite; Stop kills it (its data is in memory
// and goes with it).
type Server struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string

	*testbin.Process
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
	cmd.Stderr = cmd.Stdout
	proc, err := testbin.StartProcess(cmd, stdout, func(line string) bool { return strings.Contains(line, "listening") }, nil, startTimeout)
	if err != nil {
		return nil, fmt.Errorf("dynalite on port %d: %w", port, err)
	}
	return &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Process: proc}, nil
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
