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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

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
	cfg         Config
	token       string
	environment []string
	listen      string
	cache       *s3CacheTOML
	workDir     string
	// volumes are mounted into a docker executor's job containers.
	volumes []string
}

// renderRunnerConfig renders config.toml.
func renderRunnerConfig(sp runnerSpec) ([]byte, error) {
	r := sp.cfg.Runner
	e := runnerEntry{
		Name: sp.cfg.RunnerID, URL: sp.cfg.GitLabURL, Token: sp.token, Executor: sp.cfg.executor(),
		BuildsDir: r.BuildsDir, Environment: sp.environment, Cache: sp.cache,
	}
	if e.BuildsDir == "" && sp.workDir != "" {
		e.BuildsDir = filepath.Join(sp.workDir, "builds")
	}
	switch e.Executor {
	case ExecutorShell:
		e.Shell = "bash"
	case ExecutorDocker:
		e.Docker = &dockerTOML{Image: r.Image, PullPolicy: []string{"if-not-present"}, Volumes: sp.volumes}
	}
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

// start runs `gitlab-runner run` (or run-single) on config.toml.
func (s *supervisor) start(args []string, listen string) error {
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
	// Jobs start from gitlab-runner's environment: allow-listed variables
	// and the machine's labels, never the agent's credentials or token.
	cmd.Env = RunnerEnv(os.Environ())
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

// signal sends sig to gitlab-runner.
func (s *supervisor) signal(sig syscall.Signal) error {
	if !s.running() {
		return errNoRunner
	}
	return s.proc.Signal(sig)
}

var errNoRunner = errors.New("gitlab-runner is not running")

// stop asks gitlab-runner to stop gracefully (SIGQUIT: finish the running
// jobs, take no new one) and waits up to grace; then it is killed.
func (s *supervisor) stop(ctx context.Context, grace time.Duration) error {
	if !s.running() {
		return nil
	}
	s.log.Info("stopping gitlab-runner gracefully (SIGQUIT): running jobs finish, no new job is taken", "grace", grace)
	_ = s.proc.Signal(syscall.SIGQUIT)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-s.done:
		_ = os.Remove(filepath.Join(s.workDir, runnerPIDFile))
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	s.log.Warn("gitlab-runner did not stop in time: killing it")
	_ = s.proc.Signal(syscall.SIGKILL)
	<-s.done
	_ = os.Remove(filepath.Join(s.workDir, runnerPIDFile))
	return fmt.Errorf("gitlab-runner killed after %s", grace)
}

// versionRE finds the version in `gitlab-runner --version`'s output.
var versionRE = regexp.MustCompile(`(?m)^Version:\s*(\S+)`)

// runnerVersion asks gitlab-runner its version.
func runnerVersion(ctx context.Context, binary string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", binary, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s --version printed no Version: line", binary)
	}
	return string(m[1]), nil
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
