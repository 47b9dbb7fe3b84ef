package agent

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// PhaseDraining is an agent whose machine is being retired: gitlab-runner
// was told to stop gracefully (SIGQUIT), so it takes no new job while a
// running one finishes; the agent reports that job and heartbeats on until
// the machine is destroyed, and never starts gitlab-runner again.
const PhaseDraining = "draining"

// drainTimeout bounds how long Drain waits for the agent to say it drains.
const drainTimeout = 10 * time.Second

// ErrNotServing is Drain's answer for an agent that serves no
// gitlab-runner (starting, dormant, stopping, or a one-job machine done).
var ErrNotServing = errors.New("agent is not serving")

// Drain tells the agent of workDir that its machine is retired (SIGUSR2):
// its gitlab-runner stops taking jobs at once, a running job finishes. It
// waits until the agent records PhaseDraining. An agent draining already
// succeeds. Errors: ErrNotRunning (no agent process), ErrStopped (a
// dormant machine: its gitlab-runner is stopped already), ErrNotServing,
// or the agent did not answer within drainTimeout.
func Drain(workDir string) error {
	pid, ok := alivePID(workDir)
	if !ok {
		return ErrNotRunning
	}
	if processState(pid) == "T" {
		return ErrStopped
	}
	st, err := ReadState(workDir)
	switch {
	case err != nil || st.PID != pid:
		return ErrNotServing
	case st.Phase == PhaseDraining:
		return nil
	case st.Phase != PhaseServing:
		return fmt.Errorf("%w (%s)", ErrNotServing, st.Phase)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Signal(syscall.SIGUSR2); err != nil {
		return fmt.Errorf("signal agent %d: %w", pid, err)
	}
	deadline := time.Now().Add(drainTimeout)
	for time.Now().Before(deadline) {
		if st, err := ReadState(workDir); err == nil && st.PID == pid && st.Phase == PhaseDraining {
			return nil
		}
		if !processAlive(pid) {
			return ErrNotRunning
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("agent %d did not start draining within %s", pid, drainTimeout)
}

// drain is the answer to SIGUSR2: gitlab-runner is told to stop
// gracefully and is not waited for; its exit is handled by Run's loop.
func (a *agent) drain() {
	if a.phase != PhaseServing {
		a.log.Info("drain asked while not serving: nothing to stop", "phase", a.phase)
		return
	}
	a.setPhase(PhaseDraining)
	a.sup.quit()
	a.log.Info("draining: gitlab-runner takes no new job; a running one finishes")
}
