package agent

import (
	"runtime"
	"sync"
)

// Linux sends a child's parent-death signal (childproc.DieWithParent) when
// the thread that started the child ends, not only when its process does;
// and execve ends every thread but the calling one. The agent starts
// gitlab-runner and re-executes itself after an update (update.go) on one
// OS thread, the launcher, so gitlab-runner dies with its agent however the
// agent dies, and survives the agent's own re-execution.

// osThread runs functions on one OS thread locked to a goroutine that
// never ends.
type osThread struct{ work chan func() }

func newOSThread() *osThread {
	t := &osThread{work: make(chan func())}
	go func() {
		runtime.LockOSThread()
		for f := range t.work {
			f()
		}
	}()
	return t
}

// do runs f on the thread and waits for it.
func (t *osThread) do(f func()) {
	done := make(chan struct{})
	t.work <- func() { defer close(done); f() }
	<-done
}

// launcher is the agent's launcher thread.
var launcher = sync.OnceValue(newOSThread)
