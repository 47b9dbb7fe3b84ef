package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/childproc"
	"github.com/gosling-ci/gosling/internal/rift/riftapi"
	"github.com/pelletier/go-toml/v2"
)

// Files of gitlab-runner's in the agent's work directory.
const (
	runnerConfigFile = "config.toml"
	runnerPIDFile    = "gitlab-runner.pid"
	// runnerLogFile takes gitlab-runner's output. A file, not a pipe: a
	// pipe's reading end would close when the agent re-executes itself
	// (self-update), and gitlab-runner would die writing to it. The agent
	// tails the file into its own log, masked.
	runnerLogFile = "gitlab-runner.log"
)

// DefaultListenAddress is gitlab-runner's metrics address on cloud
// machines, its documented default port.
const DefaultListenAddress = "127.0.0.1:9252"

// DefaultWaitTimeout is how long a serverless runner waits for its job.
const DefaultWaitTimeout = 10 * time.Minute

// runnerTOML is gitlab-runner's config.toml, the part the agent writes
// (docs.gitlab.com/runner/configuration/advanced-configuration).
type runnerTOML struct {
	Concurrent      int           `toml:"concurrent"`
	CheckInterval   int           `toml:"check_interval"`
	ListenAddress   string        `toml:"listen_address,omitempty"`
	ShutdownTimeout int           `toml:"shutdown_timeout"`
	Runners         []runnerEntry `toml:"runners"`
}

type runnerEntry struct {
	Name        string       `toml:"name"`
	URL         string       `toml:"url"`
	Token       string       `toml:"token"`
	Executor    string       `toml:"executor"`
	Shell       string       `toml:"shell,omitempty"`
	BuildsDir   string       `toml:"builds_dir,omitempty"`
	Environment []string     `toml:"environment,omitempty"`
	Limit       int          `toml:"limit,omitempty"`
	Docker      *dockerTOML  `toml:"docker,omitempty"`
	Cache       *s3CacheTOML `toml:"cache,omitempty"`
}

type dockerTOML struct {
	Image      string `toml:"image"`
	Privileged bool   `toml:"privileged"`
	// Volumes are mounted into every job container (host:container:ro).
	Volumes []string `toml:"volumes,omitempty"`
	// PullPolicy "if-not-present" lets a Rift mirror or a warm VM serve
	// images without asking the registry each job.
	PullPolicy []string `toml:"pull_policy,omitempty"`
}

// s3CacheTOML is [runners.cache] with [runners.cache.s3], as Rift's
// renderer (riftapi.CacheSettings.TOML) writes it.
type s3CacheTOML struct {
	Type   string `toml:"Type"`
	Shared bool   `toml:"Shared"`
	S3     struct {
		ServerAddress      string `toml:"ServerAddress"`
		AuthenticationType string `toml:"AuthenticationType"`
		AccessKey          string `toml:"AccessKey"`
		SecretKey          string `toml:"SecretKey"`
		BucketName         string `toml:"BucketName"`
		BucketLocation     string `toml:"BucketLocation"`
		PathStyle          bool   `toml:"PathStyle"`
		Insecure           bool   `toml:"Insecure"`
	} `toml:"s3"`
}

// cacheFromRift reads Rift's rendering of an egg's cache section into the
// config.toml structure, so the file is written by one TOML encoder while
// Rift stays the one place that knows its settings.
func cacheFromRift(s riftapi.CacheSettings) (*s3CacheTOML, error) {
	var doc struct {
		Runners struct {
			Cache s3CacheTOML `toml:"cache"`
		} `toml:"runners"`
	}
	if err := toml.Unmarshal([]byte(s.TOML()), &doc); err != nil {
		return nil, fmt.Errorf("rift's cache settings: %w", err)
	}
	return &doc.Runners.Cache, nil
}

// runnerSpec is what a config.toml is written from.
type runnerSpec struct {
	cfg         agentapi.Config
	token       string
	environment []string
	listen      string
	cache       *s3CacheTOML
	workDir     string
	// volumes are mounted into a docker executor's job containers.
	volumes []string
}

// runnerEntryOf is the [[runners]] entry of a spec.
func runnerEntryOf(sp runnerSpec) runnerEntry {
	r := sp.cfg.Runner
	e := runnerEntry{
		Name: sp.cfg.RunnerID, URL: sp.cfg.GitLabURL, Token: sp.token, Executor: sp.cfg.Executor(),
		BuildsDir: r.BuildsDir, Environment: sp.environment, Cache: sp.cache,
	}
	if e.BuildsDir == "" && sp.workDir != "" {
		e.BuildsDir = filepath.Join(sp.workDir, "builds")
	}
	switch e.Executor {
	case agentapi.ExecutorShell:
		e.Shell = "bash"
	case agentapi.ExecutorDocker:
		e.Docker = &dockerTOML{Image: r.Image, PullPolicy: []string{"if-not-present"}, Volumes: sp.volumes}
	}
	return e
}

// renderRunnerConfig renders config.toml.
func renderRunnerConfig(sp runnerSpec) ([]byte, error) {
	r := sp.cfg.Runner
	e := runnerEntryOf(sp)
	doc := runnerTOML{
		Concurrent: max(1, r.Concurrent), CheckInterval: 3, ListenAddress: sp.listen,
		// A graceful stop waits for jobs; a forceful one gives aborted
		// jobs this long to report.
		ShutdownTimeout: 30,
		Runners:         []runnerEntry{e},
	}
	var b bytes.Buffer
	b.WriteString("# Written by the gosling agent: changes are overwritten at the next start or token reload.\n")
	enc := toml.NewEncoder(&b)
	enc.SetIndentTables(true)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("render config.toml: %w", err)
	}
	return b.Bytes(), nil
}

// freeListenAddress picks a free port on 127.0.0.1 for gitlab-runner's
// metrics.
func freeListenAddress() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// supervisor runs gitlab-runner as a child process and keeps its pid in
// the work directory, so an agent that re-executed itself (self-update)
// adopts the process its previous binary started.
type supervisor struct {
	workDir string
	binary  string
	log     *slog.Logger
	out     io.Writer

	proc   *os.Process
	done   chan struct{}
	code   int
	listen string

	tailMu   sync.Mutex
	tailOff  int64
	tailOnce sync.Once
}

// tail copies what gitlab-runner wrote since the last call to s.out.
func (s *supervisor) tail() {
	s.tailMu.Lock()
	defer s.tailMu.Unlock()
	f, err := os.Open(filepath.Join(s.workDir, runnerLogFile))
	if err != nil {
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return
	}
	if st.Size() < s.tailOff {
		s.tailOff = 0 // a new gitlab-runner truncated it
	}
	if st.Size() == s.tailOff {
		return
	}
	n, _ := io.Copy(s.out, io.NewSectionReader(f, s.tailOff, st.Size()-s.tailOff))
	s.tailOff += n
}

// follow tails gitlab-runner's log every 100ms for the agent's life.
func (s *supervisor) follow() {
	s.tailOnce.Do(func() {
		go func() {
			for {
				s.tail()
				time.Sleep(100 * time.Millisecond)
			}
		}()
	})
}

func (s *supervisor) configPath() string { return filepath.Join(s.workDir, runnerConfigFile) }

// writeConfig writes config.toml, mode 0600: it holds the runner token and
// the resolved secret variables.
func (s *supervisor) writeConfig(b []byte) error {
	return writeFileAtomic(s.configPath(), b, 0o600)
}

// removeConfig deletes config.toml (it holds the runner token) once
// gitlab-runner no longer needs it.
func (s *supervisor) removeConfig() {
	if err := os.Remove(s.configPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("cannot remove config.toml", "error", err)
	}
}

// running tells whether gitlab-runner runs.
func (s *supervisor) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// exited is closed when gitlab-runner exits (nil before it started).
func (s *supervisor) exited() <-chan struct{} { return s.done }

// adopt takes over a gitlab-runner that a previous agent binary of this
// process started (syscall.Exec keeps the PID, and with it the children).
func (s *supervisor) adopt(listen string) bool {
	b, err := os.ReadFile(filepath.Join(s.workDir, runnerPIDFile))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !processAlive(pid) {
		return false
	}
	// It must be our child, and a gitlab-runner of this work directory.
	if ppid(pid) != os.Getpid() {
		return false
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), s.configPath()) {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	s.proc, s.listen = p, listen
	if st, err := os.Stat(filepath.Join(s.workDir, runnerLogFile)); err == nil {
		s.tailMu.Lock()
		s.tailOff = st.Size()
		s.tailMu.Unlock()
	}
	s.follow()
	s.watch()
	s.log.Info("adopted the running gitlab-runner", "pid", pid)
	return true
}

// start runs gitlab-runner with args, env added to the agent's
// environment; listen is its metrics address ("" for none).
func (s *supervisor) start(args, env []string, listen string) error {
	if s.running() {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(s.workDir, runnerLogFile), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.tailMu.Lock()
	s.tailOff = 0
	s.tailMu.Unlock()
	cmd := exec.Command(s.binary, args...)
	cmd.Dir = s.workDir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Jobs start from gitlab-runner's environment: allow-listed variables,
	// the machine's labels and what this gitlab-runner is given through
	// its environment (env: only a run-single older than GitLab Runner 17,
	// which reads no config.toml), never the agent's own credentials.
	cmd.Env = append(RunnerEnv(os.Environ()), env...)
	// gitlab-runner stays in the agent's process group: stopping the
	// machine's group stops everything on it; and it dies with the agent.
	cmd.SysProcAttr = childproc.DieWithParent()
	launcher().do(func() { err = cmd.Start() })
	if err != nil {
		return fmt.Errorf("start gitlab-runner (%s): %w", s.binary, err)
	}
	s.follow()
	s.proc, s.listen = cmd.Process, listen
	if err := writeFileAtomic(filepath.Join(s.workDir, runnerPIDFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		s.log.Warn("cannot record gitlab-runner's pid", "error", err)
	}
	s.watch()
	s.log.Info("gitlab-runner started", "pid", cmd.Process.Pid, "args", strings.Join(args, " "))
	return nil
}

func (s *supervisor) watch() {
	done := make(chan struct{})
	s.done = done
	p := s.proc
	go func() {
		st, err := p.Wait()
		s.tail()
		switch {
		case err != nil:
			s.code = -1
		case st.Exited():
			s.code = st.ExitCode()
		default:
			s.code = -1
		}
		close(done)
	}()
}

// lastWords is what gitlab-runner last logged (at most n lines, messages
// only, colours stripped): why it exited, for an error that says so.
func (s *supervisor) lastWords(n int) string {
	b, err := os.ReadFile(filepath.Join(s.workDir, runnerLogFile))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var out []string
	for _, l := range lines[max(0, len(lines)-n):] {
		if ev := parseLogLine(l); strings.TrimSpace(ev.msg) != "" {
			out = append(out, strings.TrimSpace(ev.msg))
		}
	}
	return strings.Join(out, "; ")
}

// signal sends sig to gitlab-runner.
func (s *supervisor) signal(sig syscall.Signal) error {
	if !s.running() {
		return errNoRunner
	}
	return s.proc.Signal(sig)
}

var errNoRunner = errors.New("gitlab-runner is not running")

// idleGrace is how long gitlab-runner may take to leave by itself once
// asked, while it runs no job, before it is told again: a gitlab-runner
// whose job request GitLab holds (long polling, 50 s behind Workhorse)
// leaves only when that request returns, and GitLab gives no job to a
// request whose runner went away.
const idleGrace = 3 * time.Second

// stop asks gitlab-runner to stop gracefully (SIGQUIT: finish the running
// jobs, take no new one) and waits up to grace; then it is killed. idle,
// when not nil, says whether it runs no job: once it has said so for
// idleGrace, gitlab-runner is told to stop at once (SIGTERM twice, its
// forced exit), so a stop does not wait out a long poll.
func (s *supervisor) stop(ctx context.Context, grace time.Duration, idle func() bool) error {
	if !s.running() {
		return nil
	}
	s.log.Info("stopping gitlab-runner gracefully (SIGQUIT): running jobs finish, no new job is taken", "grace", grace)
	_ = s.proc.Signal(syscall.SIGQUIT)
	if s.waitExit(ctx, grace, idle) {
		_ = os.Remove(filepath.Join(s.workDir, runnerPIDFile))
		return nil
	}
	s.log.Warn("gitlab-runner did not stop in time: killing it")
	_ = s.proc.Signal(syscall.SIGKILL)
	<-s.done
	_ = os.Remove(filepath.Join(s.workDir, runnerPIDFile))
	return fmt.Errorf("gitlab-runner killed after %s", grace)
}

// quit asks gitlab-runner to stop gracefully (SIGQUIT: finish the running
// jobs, take no new one) without waiting for it.
func (s *supervisor) quit() {
	if !s.running() {
		return
	}
	s.log.Info("asking gitlab-runner to stop gracefully (SIGQUIT): running jobs finish, no new job is taken")
	_ = s.proc.Signal(syscall.SIGQUIT)
}

// abort stops gitlab-runner forcefully (SIGTERM: running jobs are aborted
// and reported failed), as idle allows, and kills it after grace.
func (s *supervisor) abort(grace time.Duration, idle func() bool) {
	if !s.running() {
		return
	}
	_ = s.proc.Signal(syscall.SIGTERM)
	if !s.waitExit(context.Background(), grace, idle) {
		_ = s.proc.Signal(syscall.SIGKILL)
		<-s.done
	}
}

// waitExit waits up to grace for gitlab-runner to exit, telling it to
// hurry (SIGTERM) each time idle has held for idleGrace. It reports
// whether it exited.
func (s *supervisor) waitExit(ctx context.Context, grace time.Duration, idle func() bool) bool {
	t := time.NewTimer(grace)
	defer t.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var idleSince time.Time
	for {
		select {
		case <-s.done:
			return true
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		case <-tick.C:
			if idle == nil || !idle() {
				idleSince = time.Time{}
				continue
			}
			if idleSince.IsZero() {
				idleSince = time.Now()
			}
			if time.Since(idleSince) >= idleGrace {
				s.log.Info("gitlab-runner runs no job and has not stopped: telling it to stop now (SIGTERM)")
				_ = s.proc.Signal(syscall.SIGTERM)
				idleSince = time.Now()
			}
		}
	}
}

// ppid is a process's parent (0 when unknown).
func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}
