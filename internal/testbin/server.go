package testbin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// M is what a TestMain runs: a *testing.M, or a runner wrapping one.
type M interface{ Run() int }

// Stopper is a running server.
type Stopper interface{ Stop() error }

// Shared is one server that a package's tests share when its TestMain
// wraps the run in Runner; without it every Get starts one for its test
// alone. Name names it in errors; Start starts one.
type Shared[S Stopper] struct {
	Name  string
	Start func() (S, error)

	managed atomic.Bool
	once    sync.Once
	srv     S
	started bool
	err     error
}

// Runner wraps m so that its Run shares one server between every Get and
// stops it when the tests end; runners of several Shared servers compose.
func (s *Shared[S]) Runner(m M) M {
	s.managed.Store(true)
	return sharedRunner[S]{s: s, m: m}
}

type sharedRunner[S Stopper] struct {
	s *Shared[S]
	m M
}

func (r sharedRunner[S]) Run() int {
	code := r.m.Run()
	r.s.once.Do(func() { r.s.err = fmt.Errorf("the shared %s has been stopped", r.s.Name) })
	if r.s.started {
		if err := r.s.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", r.s.Name, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Get returns a server that lives at least as long as the test. It fails
// the test when the server cannot start, including when it is not
// installed: tests that need it must not silently pass without it.
func (s *Shared[S]) Get(t testing.TB) S {
	t.Helper()
	if s.managed.Load() {
		s.once.Do(func() {
			s.srv, s.err = s.Start()
			s.started = s.err == nil
		})
		if s.err != nil {
			t.Fatalf("%s: %v", s.Name, s.err)
		}
		return s.srv
	}
	srv, err := s.Start()
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	})
	return srv
}

// Process is a server process started by StartProcess.
type Process struct {
	cmd  *exec.Cmd
	done chan error
}

// StartProcess starts cmd and reads out (a pipe of its output, taken
// before) until ready accepts a line, then hands the rest of out to rest
// (nil discards it), which is closed at the end if it is an io.Closer. The kernel kills the process when the thread that
// started it ends, so a test binary that dies does not leave it running;
// that thread is locked and kept until the process ends. The error of a
// process that ends or does not become ready within wait holds what it
// printed.
func StartProcess(cmd *exec.Cmd, out io.Reader, ready func(line string) bool, rest io.Writer, wait time.Duration) (*Process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &Process{cmd: cmd, done: make(chan error, 1)}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.done <- cmd.Wait()
		select {} // keep the thread: Pdeathsig follows it
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	if rest == nil {
		rest = io.Discard
	}
	isReady := make(chan struct{})
	var head strings.Builder // what it printed before it was ready
	var headMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if ready(sc.Text()) {
				close(isReady)
				break
			}
			headMu.Lock()
			if head.Len() < 16<<10 {
				head.WriteString(sc.Text() + "\n")
			}
			headMu.Unlock()
		}
		_, _ = io.Copy(rest, out)
		if c, ok := rest.(io.Closer); ok {
			_ = c.Close()
		}
	}()
	printed := func() string {
		headMu.Lock()
		defer headMu.Unlock()
		return strings.TrimSpace(head.String())
	}
	select {
	case <-isReady:
		return p, nil
	case err := <-p.done:
		return nil, fmt.Errorf("%s exited: %v: %s", cmd.Path, err, printed())
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-p.done
		return nil, fmt.Errorf("%s was not ready within %s: %s", cmd.Path, wait, printed())
	}
}

// Stop sends SIGTERM and waits up to 10 seconds for the process to end,
// then kills it.
func (p *Process) Stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.cmd.Path, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}
