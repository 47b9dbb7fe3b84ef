// Package childproc sets up child processes that must not outlive the
// process that started them.
package childproc

import "syscall"

// DieWithParent returns the attributes of a child that gets SIGKILL when
// the thread that started it dies, however it dies (Linux's
// PR_SET_PDEATHSIG; elsewhere nothing is set, see the other file). Go may
// retire the starting OS thread only when a goroutine locked to it exits,
// which the callers here never do.
func DieWithParent() *syscall.SysProcAttr { return dieWithParent() }
