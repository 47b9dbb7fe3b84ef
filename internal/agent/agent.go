// Package agent is the process that lives on a runner's machine and
// supervises gitlab-runner there: it reads the runner's token from the
// egg's secret backend, verifies it with GitLab, writes gitlab-runner's
// config.toml (token, executor, the egg's runner.env with secrets resolved
// and masked, the Rift cache, listen_address), starts `gitlab-runner run`
// (VMs) or `gitlab-runner run-single` (serverless), forwards token reloads,
// stops it gracefully before the machine stops, and reports to MotherGoose
// through its API only, with the runner's own token: ready, heartbeats,
// jobs, versions (internal/agentapi). It holds no Temporal address or
// credential. It updates itself, and gitlab-runner, to the versions the
// Nest pins.
//
// On the local provider the "machine" is the agent process itself,
// launched, paused, resumed and stopped by OpenTofu through `gosling
// agent`; gitlab-runner there is whatever `gitlab-runner` the
// configuration names (in `gosling dev`, the gitlab-runner stand-in).
package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gosling-ci/gosling/internal/agentapi"
)

// Files of the agent's work directory.
const (
	configFile    = "config.json"
	pidFile       = "agent.pid"
	logFile       = "agent.log"
	heartbeatFile = "heartbeat"
	tokenFile     = "token.json"
	stateFile     = "state.json"
	// stopFile marks a shutdown Gosling asked for (Stop), which is no
	// interruption.
	stopFile     = "stop-requested"
	serveURLFile = "serve.url"
	launchFile   = "launch.json"
)

// LogFile is the agent's log in its work directory (local provider).
func LogFile(workDir string) string { return filepath.Join(workDir, logFile) }

// LaunchOptions shape a launched agent.
type LaunchOptions struct {
	// MaxRun is a deadline after which the agent exits (0: none).
	MaxRun time.Duration `json:"max_run,omitempty"`
	// Serve launches `gosling agent serve`: a serverless runner that runs
	// when invoked over HTTP (see Serve), on a free port of 127.0.0.1
	// written to serve.url.
	Serve bool `json:"serve,omitempty"`
}

// Launch starts the agent in the background for the machine in workDir,
// unless it is already running there (a retried apply must not start a
// second one). self is the gosling binary. A served agent is waited for
// until it listens.
func Launch(self, workDir string, cfg agentapi.Config, o LaunchOptions) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return err
	}
	if err := writeConfig(workDir, cfg); err != nil {
		return err
	}
	if _, ok := alivePID(workDir); ok {
		return nil
	}
	if o.Serve {
		_ = os.Remove(filepath.Join(workDir, serveURLFile))
	}
	// A machine booted again (Power) runs the way it was launched.
	if b, err := json.Marshal(o); err == nil {
		_ = writeFileAtomic(filepath.Join(workDir, launchFile), b, 0o600)
	}
	if err := start(self, workDir, o); err != nil {
		return err
	}
	if !o.Serve {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if u, err := ServeURL(workDir); err == nil && u != "" {
			return nil
		}
		if _, ok := alivePID(workDir); !ok {
			return fmt.Errorf("the agent exited before it served; see %s", LogFile(workDir))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent does not serve after 30s; see %s", LogFile(workDir))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ServeURL is where a served agent of workDir takes invocations.
func ServeURL(workDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(workDir, serveURLFile))
	return strings.TrimSpace(string(b)), err
}

func start(self, workDir string, o LaunchOptions) error {
	cfg, err := readConfig(workDir)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(LogFile(workDir), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"agent", "run", "--work-dir", workDir}
	if o.Serve {
		args = []string{"agent", "serve", "--work-dir", workDir, "--listen", "127.0.0.1:0"}
	}
	if o.MaxRun > 0 {
		args = append(args, "--max-run", o.MaxRun.String())
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = workDir
	// A machine starts clean: allow-listed variables and its labels, never
	// the environment of the worker or tofu process that made it.
	cmd.Env = MachineEnv(os.Environ(), cfg, machineHome(workDir))
	// A session of its own: the agent outlives the tofu process that made
	// it, and its process group (gitlab-runner, the jobs) is the machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	if err := os.WriteFile(filepath.Join(workDir, pidFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	return cmd.Process.Release()
}

// Stop ends the agent of workDir (resuming it first if it is stopped) and
// waits up to grace for it to exit: the agent stops gitlab-runner
// gracefully (SIGQUIT), so a running job finishes first. Past grace, the
// machine's whole process group is killed. Then every process still
// labelled as the machine's (a gitlab-runner or job that outlived a killed
// agent, one that left the group) is killed too (KillLocalMachine).
// Stopping an agent that is not running succeeds.
func Stop(workDir string, grace time.Duration) error {
	pid, ok := alivePID(workDir)
	if ok {
		// Asked for, this shutdown is no interruption of a spot or
		// preemptible machine.
		_ = os.WriteFile(filepath.Join(workDir, stopFile), []byte(time.Now().UTC().Format(time.RFC3339Nano)), 0o600)
		p, _ := os.FindProcess(pid)
		if processState(pid) == "T" {
			_ = killGroup(pid, syscall.SIGCONT)
		}
		_ = p.Signal(syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		for processAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if processAlive(pid) {
			_ = killGroup(pid, syscall.SIGKILL)
			for processAlive(pid) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	runnerID := filepath.Base(workDir)
	if cfg, err := readConfig(workDir); err == nil && cfg.RunnerID != "" {
		runnerID = cfg.RunnerID
	}
	if _, err := KillLocalMachine(machineHome(workDir), runnerID, 10*time.Second); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	if err := os.Remove(filepath.Join(workDir, pidFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(filepath.Join(workDir, stopFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// ErrNotInterruptible: the machine is bought on demand, which its cloud
// never takes away.
var ErrNotInterruptible = errors.New("the machine is bought on demand: only spot and preemptible machines are interrupted")

// Interrupt plays, on a local machine, what a cloud does to a Spot or
// preemptible one: the agent gets SIGTERM as a shutdown it did not ask
// for (as Compute Cloud's ACPI shutdown reaches it through systemd), tells
// MotherGoose and takes no new job; after grace the machine is gone, its
// whole process group killed, the running job with it. Errors:
// ErrNotInterruptible for a machine bought on demand; one that is not
// running is an error too.
func Interrupt(workDir string, grace time.Duration) error {
	cfg, err := readConfig(workDir)
	if err != nil {
		return fmt.Errorf("read the machine's configuration: %w", err)
	}
	if cfg.Interrupt == nil {
		return ErrNotInterruptible
	}
	pid, ok := alivePID(workDir)
	if !ok {
		return fmt.Errorf("the machine of runner %s is not running", cfg.RunnerID)
	}
	if processState(pid) == "T" {
		return fmt.Errorf("the machine of runner %s is asleep (Nadir): a stopped machine is not interrupted", cfg.RunnerID)
	}
	p, _ := os.FindProcess(pid)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal the agent of runner %s: %w", cfg.RunnerID, err)
	}
	deadline := time.Now().Add(grace)
	for processAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_ = killGroup(pid, syscall.SIGKILL)
	for processAlive(pid) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := KillLocalMachine(machineHome(workDir), cfg.RunnerID, 10*time.Second); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	// Gosling may have torn the machine down meanwhile (the pool retires
	// an interrupted runner at once), its pid file with it.
	if err := os.Remove(filepath.Join(workDir, pidFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// sleepTimeout bounds how long Power waits for gitlab-runner to stop
// before the machine is stopped all the same.
const sleepTimeout = 2 * time.Minute

// Power stops (a dormant Nadir machine) or resumes (Apex) the agent's
// machine. Stopping first asks the agent to stop gitlab-runner gracefully
// (SIGUSR1), then stops the process group (SIGSTOP), as a cloud stops an
// instance after its shutdown hooks; resuming continues it (SIGCONT), and
// the agent starts gitlab-runner again and reports ready. Resuming a
// machine whose process is gone boots it again. A non-nil cfg replaces
// the configuration first.
func Power(self, workDir, state string, cfg *agentapi.Config) error {
	if cfg != nil {
		if err := cfg.Validate(); err != nil {
			return err
		}
		if err := writeConfig(workDir, *cfg); err != nil {
			return err
		}
	}
	pid, ok := alivePID(workDir)
	switch state {
	case agentapi.PowerStopped:
		if !ok {
			return nil
		}
		if processState(pid) == "T" {
			return nil
		}
		if st, err := ReadState(workDir); err == nil && st.PID == pid && st.Phase == PhaseServing {
			if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
				return fmt.Errorf("tell agent %d to sleep: %w", pid, err)
			}
			deadline := time.Now().Add(sleepTimeout)
			for time.Now().Before(deadline) && processAlive(pid) {
				if st, err := ReadState(workDir); err == nil && st.Phase == PhaseDormant {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		return killGroup(pid, syscall.SIGSTOP)
	case agentapi.PowerRunning:
		if !ok {
			var o LaunchOptions
			if b, err := os.ReadFile(filepath.Join(workDir, launchFile)); err == nil {
				_ = json.Unmarshal(b, &o)
			}
			if o.Serve {
				_ = os.Remove(filepath.Join(workDir, serveURLFile))
			}
			return start(self, workDir, o)
		}
		if processState(pid) != "T" {
			return nil // already running: nothing to resume
		}
		return killGroup(pid, syscall.SIGCONT)
	}
	return fmt.Errorf("power state %q: want %s or %s", state, agentapi.PowerRunning, agentapi.PowerStopped)
}

// Status reports the agent process of workDir: its PID, whether it is alive
// and whether it is stopped (dormant).
type Status struct {
	PID           int       `json:"pid"`
	Alive         bool      `json:"alive"`
	Stopped       bool      `json:"stopped"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// Phase is the agent's own account (starting, serving, dormant,
	// stopping, done); RunnerPID is gitlab-runner's.
	Phase     string `json:"phase,omitempty"`
	RunnerPID int    `json:"runner_pid,omitempty"`
}

// Inspect returns the agent's status in workDir.
func Inspect(workDir string) Status {
	var s Status
	s.PID, s.Alive = alivePID(workDir)
	if s.Alive {
		s.Stopped = processState(s.PID) == "T"
		if st, err := ReadState(workDir); err == nil && st.PID == s.PID {
			s.Phase, s.RunnerPID = st.Phase, st.RunnerPID
		}
	}
	if b, err := os.ReadFile(filepath.Join(workDir, heartbeatFile)); err == nil {
		s.LastHeartbeat, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	}
	return s
}

func alivePID(workDir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(workDir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if !processAlive(pid) {
		return pid, false
	}
	// The PID may have been reused: it must be an agent of this work dir.
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), workDir) {
		return pid, false
	}
	return pid, true
}

func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	st := processState(pid)
	return st != "" && st != "Z" && st != "X"
}

// processState is the one-letter state from /proc/PID/stat (R, S, T, Z...).
func processState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// killGroup signals the process group that pid leads (a launched agent
// leads its own session), or pid alone when it leads none.
func killGroup(pid int, sig syscall.Signal) error {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		return syscall.Kill(-pid, sig)
	}
	return syscall.Kill(pid, sig)
}

// machineHome is the directory holding a machine's work directory, as its
// processes are labelled with it (LabelHome): absolute and clean.
func machineHome(workDir string) string {
	if abs, err := filepath.Abs(workDir); err == nil {
		workDir = abs
	}
	return filepath.Dir(workDir)
}
