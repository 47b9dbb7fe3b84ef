// Package agent is the process that lives on a runner's machine: it checks
// the runner's token with GitLab, tells MotherGoose it is ready, heartbeats,
// re-reads its token when told to (SIGHUP, see Reload), and stops cleanly.
// On the local provider the "machine" is this process itself, launched and
// stopped by OpenTofu through `gosling agent`.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/secrets"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

// Config is the agent's configuration. It names the runner token's secret
// URI; the token itself is resolved at run time and never written down.
type Config struct {
	RunnerID   string `json:"runner_id"`
	Egg        string `json:"egg"`
	GitLabURL  string `json:"gitlab_url"`
	TokenRef   string `json:"token_ref"`
	SecretsDir string `json:"secrets_dir,omitempty"`
	// Ready says where to send the ready signal.
	Ready ReadyTarget `json:"ready"`
	// HeartbeatSeconds is how often the agent writes its heartbeat.
	HeartbeatSeconds int `json:"heartbeat_seconds,omitempty"`
	// HeartbeatURL, when set, is MotherGoose's heartbeat endpoint for this
	// runner; the agent posts there with its runner token each beat.
	HeartbeatURL string `json:"heartbeat_url,omitempty"`
}

// ReadyTarget is the Temporal workflow that waits for this runner.
type ReadyTarget struct {
	TemporalAddress string `json:"temporal_address"`
	Namespace       string `json:"namespace"`
	WorkflowID      string `json:"workflow_id"`
	Signal          string `json:"signal"`
}

// Ready is the payload of the ready signal. Its JSON matches the workflow's
// contract (workflows.RunnerReady).
type Ready struct {
	RunnerID string    `json:"runner_id"`
	PID      int       `json:"pid"`
	Host     string    `json:"host"`
	At       time.Time `json:"at"`
}

const (
	configFile    = "config.json"
	pidFile       = "agent.pid"
	logFile       = "agent.log"
	heartbeatFile = "heartbeat"
	tokenFile     = "token.json"
)

// Launch starts the agent in the background for the machine in workDir,
// unless it is already running there (a retried apply must not start a
// second one). self is the gosling binary.
func Launch(self, workDir string, cfg Config, maxRun time.Duration) error {
	if cfg.RunnerID == "" {
		return errors.New("agent config has no runner_id")
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
	return start(self, workDir, maxRun)
}

// writeConfig replaces the agent's configuration; a running agent reads it
// again when it is resumed.
func writeConfig(workDir string, cfg Config) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(workDir, configFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(workDir, configFile))
}

func start(self, workDir string, maxRun time.Duration) error {
	logf, err := os.OpenFile(filepath.Join(workDir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"agent", "run", "--work-dir", workDir}
	if maxRun > 0 {
		args = append(args, "--max-run", maxRun.String())
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = workDir
	// A session of its own: the agent outlives the tofu process that made it.
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
// waits for it to exit. Stopping an agent that is not running succeeds.
func Stop(workDir string, grace time.Duration) error {
	pid, ok := alivePID(workDir)
	if ok {
		p, _ := os.FindProcess(pid)
		_ = p.Signal(syscall.SIGCONT)
		_ = p.Signal(syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		for processAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if processAlive(pid) {
			_ = p.Signal(syscall.SIGKILL)
			for processAlive(pid) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	if err := os.Remove(filepath.Join(workDir, pidFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Power stops (SIGSTOP: a dormant Nadir machine) or resumes (SIGCONT: Apex)
// the agent. Resuming a machine whose process is gone boots it again. A
// non-nil cfg replaces the configuration first.
func Power(self, workDir, state string, cfg *Config) error {
	if cfg != nil {
		if err := writeConfig(workDir, *cfg); err != nil {
			return err
		}
	}
	pid, ok := alivePID(workDir)
	switch state {
	case "stopped":
		if !ok {
			return nil
		}
		p, _ := os.FindProcess(pid)
		return p.Signal(syscall.SIGSTOP)
	case "running":
		if !ok {
			return start(self, workDir, 0)
		}
		if processState(pid) != "T" {
			return nil // already running: nothing to resume
		}
		p, _ := os.FindProcess(pid)
		return p.Signal(syscall.SIGCONT)
	}
	return fmt.Errorf("power state %q: want running or stopped", state)
}

// Status reports the agent process of workDir: its PID, whether it is alive
// and whether it is stopped (dormant).
type Status struct {
	PID           int       `json:"pid"`
	Alive         bool      `json:"alive"`
	Stopped       bool      `json:"stopped"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
}

// Inspect returns the agent's status in workDir.
func Inspect(workDir string) Status {
	var s Status
	s.PID, s.Alive = alivePID(workDir)
	if s.Alive {
		s.Stopped = processState(s.PID) == "T"
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

// Run is the agent itself: check the token with GitLab, signal readiness,
// heartbeat until told to stop or the deadline passes. A SIGCONT (the
// machine resumed from Nadir) re-checks and re-signals.
func Run(ctx context.Context, workDir string, maxRun time.Duration, log *slog.Logger) error {
	if maxRun > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxRun)
		defer cancel()
	}
	cont := make(chan os.Signal, 1)
	signal.Notify(cont, syscall.SIGCONT)
	defer signal.Stop(cont)
	// Before anything else: SIGHUP's default action would end the process,
	// and Reload only signals an agent that has written its token status,
	// which happens after this.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := readConfig(workDir)
	if err != nil {
		return err
	}
	tokens := &tokenSource{}
	interval := time.Duration(max(cfg.HeartbeatSeconds, 1)) * time.Second
	if err := retryReady(ctx, workDir, cfg, tokens, TriggerStart, log); err != nil {
		return err
	}
	beat := time.NewTicker(interval)
	defer beat.Stop()
	for beats := 0; ; beats++ {
		_ = os.WriteFile(filepath.Join(workDir, heartbeatFile), []byte(time.Now().UTC().Format(time.RFC3339Nano)), 0o600)
		if beats > 0 {
			// Not at once: the runner's record gets its token reference
			// when MotherGoose has seen it ready.
			sendHeartbeat(ctx, cfg, tokens, log)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				log.Info("deadline reached; exiting", "runner", cfg.RunnerID)
			} else {
				log.Info("stopping", "runner", cfg.RunnerID)
			}
			return nil
		case <-cont:
			log.Info("resumed", "runner", cfg.RunnerID)
			if cfg, err = readConfig(workDir); err != nil {
				return err
			}
			if err := retryReady(ctx, workDir, cfg, tokens, TriggerResume, log); err != nil {
				return err
			}
		case <-hup:
			// A new token: re-read it and verify it, and keep running
			// whatever comes of it, so a job in progress is never dropped.
			if c, err := readConfig(workDir); err == nil {
				cfg = c
			} else {
				log.Warn("reload: configuration unreadable; keeping the current one", "runner", cfg.RunnerID, "error", err)
			}
			reloadToken(ctx, workDir, cfg, tokens, log)
		case <-beat.C:
		}
	}
}

// retryReady repeats becomeReady until it succeeds, the token is rejected
// (retrying cannot help), or ctx ends. A machine boots before everything it
// needs may be reachable, so transient failures are logged, not fatal.
func retryReady(ctx context.Context, workDir string, cfg Config, tokens *tokenSource, trigger string, log *slog.Logger) error {
	wait := 200 * time.Millisecond
	for {
		err := becomeReady(ctx, workDir, cfg, tokens, trigger, log)
		if err == nil || gitlab.IsForbidden(err) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("not ready yet; retrying", "runner", cfg.RunnerID, "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

func readConfig(workDir string) (Config, error) {
	var cfg Config
	b, err := os.ReadFile(filepath.Join(workDir, configFile))
	if err != nil {
		return cfg, err
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("agent config: %w", err)
	}
	return cfg, nil
}

// becomeReady verifies the token and signals the waiting workflow, retrying
// transient failures until ctx ends.
func becomeReady(ctx context.Context, workDir string, cfg Config, tokens *tokenSource, trigger string, log *slog.Logger) error {
	version, err := verifyToken(ctx, cfg, tokens)
	if err != nil {
		if gitlab.IsForbidden(err) {
			recordToken(workDir, trigger, version, err, log)
		}
		return err
	}
	recordToken(workDir, trigger, version, nil, log)
	log.Info("runner token verified", "runner", cfg.RunnerID, "version", version)
	if cfg.Ready.WorkflowID == "" {
		return nil
	}
	c, err := client.Dial(client.Options{HostPort: cfg.Ready.TemporalAddress, Namespace: cfg.Ready.Namespace, Logger: slogAdapter{log}})
	if err != nil {
		return fmt.Errorf("connect to Temporal: %w", err)
	}
	defer c.Close()
	host, _ := os.Hostname()
	payload := Ready{RunnerID: cfg.RunnerID, PID: os.Getpid(), Host: host, At: time.Now().UTC()}
	var gone *serviceerror.NotFound
	err = retry(ctx, func() error {
		err := c.SignalWorkflow(ctx, cfg.Ready.WorkflowID, "", cfg.Ready.Signal, payload)
		if errors.As(err, &gone) {
			return nil // nobody waits any more: the machine was resumed after a restart
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("signal ready to %s: %w", cfg.Ready.WorkflowID, err)
	}
	if gone != nil {
		log.Info("no workflow waits for this runner's ready signal", "runner", cfg.RunnerID, "workflow", cfg.Ready.WorkflowID)
		return nil
	}
	log.Info("ready signalled", "runner", cfg.RunnerID, "workflow", cfg.Ready.WorkflowID)
	return nil
}

// verifyToken reads the runner's token afresh and checks it with GitLab,
// retrying transient failures until ctx ends. It returns the version of the
// secret it read ("" when the backend cannot say).
func verifyToken(ctx context.Context, cfg Config, tokens *tokenSource) (string, error) {
	token, version, err := tokens.current(ctx, cfg)
	if err != nil {
		return "", err
	}
	gl, err := gitlab.NewRunnerClient(cfg.GitLabURL)
	if err != nil {
		return version, err
	}
	if err := retry(ctx, func() error { return gl.VerifyRunner(ctx, token) }); err != nil {
		return version, fmt.Errorf("verify runner %s with GitLab: %w", cfg.RunnerID, err)
	}
	return version, nil
}

// tokenSource reads the runner token through one resolver over the local
// secret store, kept for the agent's life and emptied before every read
// that must see a new version.
type tokenSource struct {
	dir string
	r   *secrets.Resolver
}

func (s *tokenSource) resolver(cfg Config) (*secrets.Resolver, error) {
	if s.r != nil && s.dir == cfg.SecretsDir {
		return s.r, nil
	}
	r := secrets.NewResolver()
	if cfg.SecretsDir != "" {
		l, err := secrets.OpenLocal(cfg.SecretsDir)
		if err != nil {
			return nil, err
		}
		r.Register(l)
	}
	s.r, s.dir = r, cfg.SecretsDir
	return r, nil
}

// current purges the cache and returns the token with the version it is:
// the current version is looked up first and then read pinned, so value
// and version always belong together, even while a rotation writes.
func (s *tokenSource) current(ctx context.Context, cfg Config) (token, version string, err error) {
	if t := os.Getenv("GOSLING_RUNNER_TOKEN"); t != "" {
		return t, "", nil // mounted by the platform (Serverless Containers, ECS)
	}
	r, err := s.resolver(cfg)
	if err != nil {
		return "", "", err
	}
	r.Purge()
	ref := fly.SecretRef(cfg.TokenRef)
	u, err := ref.Parse()
	if err == nil && u.Version == "" {
		// A backend that lists no versions (or forbids listing) still
		// resolves the current value; its version is then unknown.
		if vs, verr := r.Versions(ctx, ref); verr == nil {
			for _, v := range vs {
				if v.Current {
					u.Version = v.ID
				}
			}
		}
		if u.Version != "" {
			ref = fly.SecretRef(u.String())
		}
	}
	token, err = r.Resolve(ctx, ref)
	if err != nil {
		return "", "", err
	}
	return token, u.Version, nil
}

func retry(ctx context.Context, fn func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if gitlab.IsForbidden(err) {
			return err // a rejected token does not get better by retrying
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}
