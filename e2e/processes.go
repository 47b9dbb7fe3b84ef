package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/testbin"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
)

// FreeAddr is a loopback address nothing listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Temporal is a Temporal dev server that keeps its state in a file, so it
// can be stopped and started again on the same address with nothing lost.
type Temporal struct {
	T      testing.TB
	Addr   string
	DBFile string
	dev    *testsuite.DevServer
}

// StartTemporal starts a Temporal dev server, persistent unless inMemory
// (faster, for benchmarks); it stops in t.Cleanup.
func StartTemporal(t testing.TB, inMemory bool) *Temporal {
	t.Helper()
	tp := &Temporal{T: t, Addr: FreeAddr(t)}
	if !inMemory {
		tp.DBFile = filepath.Join(t.TempDir(), "temporal.db")
	}
	tp.Start()
	t.Cleanup(tp.Stop)
	return tp
}

// Start starts the server (again).
func (tp *Temporal) Start() {
	tp.T.Helper()
	dev, err := testsuite.StartDevServer(context.Background(), testsuite.DevServerOptions{
		ExistingPath:  testbin.Temporal(tp.T),
		ClientOptions: &client.Options{HostPort: tp.Addr, Namespace: "default", Logger: quietLogger{}},
		DBFilename:    tp.DBFile,
		LogLevel:      "error",
		Stdout:        discard{}, Stderr: discard{},
	})
	if err != nil {
		tp.T.Fatalf("start Temporal dev server: %v", err)
	}
	tp.dev = dev
}

// Stop stops the server; its state stays in DBFile.
func (tp *Temporal) Stop() {
	if tp.dev != nil {
		_ = tp.dev.Stop()
		tp.dev = nil
	}
}

// Client is a client of the running server.
func (tp *Temporal) Client() client.Client { return tp.dev.Client() }

// Process is a gosling process started from the built binary, with its
// output kept in a log file that a failing test prints.
type Process struct {
	Name string
	Args []string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
}

// StartProcess runs `gosling ARGS...` with env added to the environment; it
// is killed in t.Cleanup if still running.
func StartProcess(t testing.TB, name, dir string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Args: args, Log: filepath.Join(dir, name+".log")}
	p.start(t, env)
	t.Cleanup(func() {
		p.Kill(syscall.SIGKILL)
		if t.Failed() {
			b, _ := os.ReadFile(p.Log)
			t.Logf("%s log (%s):\n%s", name, strings.Join(args, " "), tail(b, 6000))
		}
	})
	return p
}

func (p *Process) start(t testing.TB, env []string) {
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testbin.Gosling(t), p.Args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// Kill sends sig and waits up to 30 seconds for the process to end.
func (p *Process) Kill(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Exited tells whether the process has ended.
func (p *Process) Exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// PID is the process's ID.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// WaitHTTP polls url until it answers want, or fails the test after wait.
func WaitHTTP(t testing.TB, url string, want int, wait time.Duration, procs ...*Process) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var last string
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if p.Exited() {
				t.Fatalf("%s exited while waiting for %s", p.Name, url)
			}
		}
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %d within %s: %s", url, want, wait, last)
}
