package agent

import "syscall"

// dieWithParent makes a child get SIGKILL when the agent that started it
// dies, however it dies (prctl PR_SET_PDEATHSIG).
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
