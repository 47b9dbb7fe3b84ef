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
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/testbin"
)

// InstallHint is what to do when moto is missing.
const InstallHint = "run scripts/tools.sh moto to install it into bin/pyvenv"

// startTimeout bounds moto_server's start (about a second here).
const startTimeout = time.Minute

var shared = &testbin.Shared[*Server]{Name: "mototest: moto_server", Start: StartServer}

// Runner wraps m so that its Run shares one moto_server between every
// Start and NewProxy call and stops it when the tests end.
func Runner(m testbin.M) testbin.M { return shared.Runner(m) }

// Start returns the endpoint (http://127.0.0.1:PORT) of a moto_server that
// lives at least as long as the test. It fails the test when moto cannot
// start, including when it is not installed: tests that need it must not
// silently pass without it.
func Start(t testing.TB) string {
	t.Helper()
	return shared.Get(t).Endpoint
}

// Server is one running moto_server.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string

	*testbin.Process
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
	// Its request log and tracebacks go to $MOTOTEST_LOG, if set.
	var log io.Writer
	if name := os.Getenv("MOTOTEST_LOG"); name != "" {
		f, err := os.Create(name)
		if err != nil {
			return nil, err
		}
		log = f
	}
	srv := &Server{}
	srv.Process, err = testbin.StartProcess(cmd, out, func(line string) bool {
		m := runningRE.FindStringSubmatch(line)
		if m != nil {
			srv.Endpoint = m[1]
		}
		return m != nil
	}, log, startTimeout)
	if err != nil {
		return nil, fmt.Errorf("moto_server: %w", err)
	}
	return srv, nil
}

// findMoto returns moto_server's path.
func findMoto() (string, error) {
	if p := os.Getenv("MOTO_SERVER"); p != "" {
		return p, nil
	}
	p := filepath.Join(testbin.Root(), "bin", "pyvenv", "bin", "moto_server")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("moto_server"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("moto_server not found in bin/pyvenv, on PATH or at $MOTO_SERVER: %s", InstallHint)
}
