package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerapi"
	"github.com/gosling-ci/gosling/internal/rift/riftapi"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

// RunOptions are the inputs of Run and Serve.
type RunOptions struct {
	// WorkDir holds config.json (unless Config is given), config.toml,
	// the pid and state files and the builds.
	WorkDir string
	// Config, when set, is used instead of WorkDir/config.json (a
	// serverless container's $GOSLING_AGENT_CONFIG).
	Config *agentapi.Config
	// MaxRun is a deadline after which the agent stops (0: none).
	MaxRun time.Duration
	// OneJob runs gitlab-runner run-single for one job and exits (ECS
	// RunTask).
	OneJob bool
	// Version is this binary's version, reported and compared with the
	// Nest's pin.
	Version string
	Logger  *slog.Logger
	// Masker masks every secret the agent reads in its logs and in
	// gitlab-runner's output it forwards.
	Masker *secretstore.Masker
	// Output receives gitlab-runner's output (default os.Stderr), masked.
	Output io.Writer
	Getenv func(string) (string, bool)
	// HTTPClient is used for MotherGoose's API (default: 30s timeout).
	HTTPClient *http.Client
}

// Phases an agent reports in state.json.
const (
	PhaseStarting = "starting"
	PhaseServing  = "serving"
	PhaseDormant  = "dormant"
	PhaseStopping = "stopping"
	// PhaseDone is a one-job runner's (runner.mode single) once
	// gitlab-runner ran its job: the agent heartbeats on until the machine
	// is destroyed, and takes no other job.
	PhaseDone = "done"
)

// State is what a running agent writes to state.json of its work
// directory: Power and tests read it.
type State struct {
	PID   int    `json:"pid"`
	Phase string `json:"phase"`
	// RunnerPID is gitlab-runner's process, 0 when it does not run.
	RunnerPID int `json:"runner_pid,omitempty"`
	// Listen is gitlab-runner's listen_address.
	Listen  string `json:"listen,omitempty"`
	Version string `json:"version,omitempty"`
	// Jobs are the jobs the agent told MotherGoose of, and how: a
	// re-executed agent (self-update) goes on from there.
	Jobs map[int64]string `json:"jobs,omitempty"`
	At   time.Time        `json:"at"`
}

// ReadState returns the agent's state in workDir.
func ReadState(workDir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(workDir, stateFile))
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(b, &st)
	return st, err
}

// agent is one running agent: everything below is touched by Run's loop
// goroutine only.
type agent struct {
	// noticed is set once the cloud's interruption notice came.
	noticed bool
	opts    RunOptions
	cfg     agentapi.Config
	log     *slog.Logger
	tokens  *tokenSource
	sup     *supervisor
	watch   *jobWatcher
	output  *outputWatcher
	api     *agentapi.Client
	phase   string
	version string // gitlab-runner's
	// tokenVersion is the token version last verified.
	tokenVersion string
	updateErr    string
	updateTried  map[string]bool
	// reported are the jobs told to MotherGoose, and how.
	reported map[int64]string
	// ran are the jobs this agent saw end (serverless invocations answer
	// with them).
	ran []agentapi.JobReport
	// prevListen is the listen address of the gitlab-runner a previous
	// binary of this process started (self-update), to adopt.
	prevListen string
	// forward serves a containerd engine's local socket (engine.go).
	forward forwarder
}

func newAgent(opts RunOptions) (*agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Output == nil {
		opts.Output = os.Stderr
	}
	if opts.Masker == nil {
		opts.Masker = secretstore.NewMasker()
	}
	a := &agent{opts: opts, log: opts.Logger, tokens: &tokenSource{masker: opts.Masker, getenv: opts.Getenv},
		watch: newJobWatcher(), output: newOutputWatcher(), updateTried: map[string]bool{}, reported: map[int64]string{}}
	if err := a.loadConfig(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *agent) loadConfig() error {
	var cfg agentapi.Config
	var err error
	if a.opts.Config != nil {
		cfg, err = *a.opts.Config, a.opts.Config.Validate()
	} else {
		cfg, err = readConfig(a.opts.WorkDir)
	}
	if err != nil {
		return err
	}
	a.cfg = cfg
	a.log = a.opts.Logger.With("runner", cfg.RunnerID)
	bin := cfg.Runner.Binary
	if bin == "" {
		bin = "gitlab-runner"
	}
	if p, err := exec.LookPath(bin); err == nil {
		bin = p
	}
	if a.sup == nil {
		a.sup = &supervisor{workDir: a.opts.WorkDir, log: a.log, out: io.MultiWriter(secretstore.NewWriter(a.opts.Output, a.opts.Masker), a.output)}
	}
	a.sup.binary, a.sup.log = bin, a.log
	a.api = nil
	if cfg.APIURL != "" {
		api, err := agentapi.NewClient(cfg.APIURL, cfg.RunnerID, a.opts.HTTPClient)
		if err != nil {
			return err
		}
		a.api = api
	}
	return nil
}

func (a *agent) setPhase(phase string) {
	a.phase = phase
	st := State{PID: os.Getpid(), Phase: phase, Listen: a.sup.listen, Version: a.opts.Version, Jobs: a.reported, At: time.Now().UTC()}
	if a.sup.running() {
		st.RunnerPID = a.sup.proc.Pid
	}
	b, _ := json.Marshal(st)
	if err := writeFileAtomic(filepath.Join(a.opts.WorkDir, stateFile), b, 0o600); err != nil {
		a.log.Warn("cannot record the agent's state", "error", err)
	}
}

// Run is the agent of a VM (and of the local provider's machines): it
// verifies the runner token with GitLab, writes gitlab-runner's
// config.toml, starts (or, after a self-update, adopts) `gitlab-runner
// run`, reports ready to MotherGoose, then heartbeats and reports jobs
// until ctx ends or MaxRun passes; then it stops gitlab-runner gracefully
// (SIGQUIT: the running job finishes) and returns. Signals: SIGHUP
// re-reads the token and reloads gitlab-runner (token rotation); SIGUSR1
// stops gitlab-runner gracefully before the machine is put to sleep
// (Nadir); SIGCONT (resumed) starts it again and reports ready; SIGUSR2
// drains a retired machine (Drain: gitlab-runner stops taking jobs).
func Run(ctx context.Context, opts RunOptions) error {
	// Before anything else: the default action of SIGHUP and SIGUSR1 ends
	// the process, and Reload and Power signal an agent that has written
	// its state, which happens after this.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCONT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	if opts.MaxRun > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.MaxRun)
		defer cancel()
	}
	a, err := newAgent(opts)
	if err != nil {
		return err
	}
	if opts.OneJob {
		res := a.session(ctx, 0, agentapi.TriggerStart)
		if res.Error != "" {
			return errors.New(res.Error)
		}
		return nil
	}
	if st, err := ReadState(opts.WorkDir); err == nil && st.PID == os.Getpid() {
		// This process re-executed itself: gitlab-runner and what was
		// told of its jobs carry over.
		a.prevListen = st.Listen
		for id, status := range st.Jobs {
			a.reported[id] = status
			if status == agentapi.JobRunning {
				a.watch.running = append(a.watch.running, id)
			}
		}
		slices.Sort(a.watch.running)
	}
	a.setPhase(PhaseStarting)
	if err := a.retryUp(ctx, agentapi.TriggerStart); err != nil {
		return err
	}
	beat := time.NewTicker(time.Duration(max(a.cfg.HeartbeatSeconds, 1)) * time.Second)
	defer beat.Stop()
	var notice <-chan agentapi.Interruption
	if ic := a.cfg.Interrupt; ic != nil && ic.MetadataURL != "" {
		notice = a.watchSpotNotice(ctx, ic)
	}
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	restartAt := time.Time{}
	// jobsBefore counts the jobs told before gitlab-runner's last start;
	// crashes its exits in a row without one.
	jobsBefore, crashes := len(a.reported), 0
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				a.log.Info("deadline reached; stopping")
			} else if a.cfg.Interrupt != nil && a.phase == PhaseServing && !a.stopRequested() {
				// A spot or preemptible machine shut down while serving,
				// not told to sleep: its cloud is taking it away.
				a.interrupted(context.WithoutCancel(ctx), agentapi.Interruption{Source: agentapi.InterruptShutdown})
			} else {
				a.log.Info("stopping")
			}
			a.shutdown()
			return nil
		case n := <-notice:
			notice = nil
			a.interrupted(ctx, n)
		case s := <-sigs:
			switch s {
			case syscall.SIGCONT:
				if a.phase == PhaseDraining {
					continue // a retired machine serves no more
				}
				// Resumed: the machine may have been promoted, and
				// whoever promoted it waits for a ready report.
				a.log.Info("resumed")
				if err := a.loadConfig(); err != nil {
					return err
				}
				if a.phase != PhaseDormant && a.sup.running() {
					if err := a.reready(ctx); err != nil {
						a.log.Warn("report ready after resume", "error", err)
					}
					continue
				}
				if err := a.retryUp(ctx, agentapi.TriggerResume); err != nil {
					return err
				}
			case syscall.SIGHUP:
				a.reload(ctx)
			case syscall.SIGUSR1:
				a.sleep()
			case syscall.SIGUSR2:
				a.drain()
			}
		case <-a.sup.exited():
			if a.noticed {
				// gitlab-runner finished its jobs before the machine went.
				a.drainOutput(ctx)
				a.report(ctx, a.watch.finishAll(a.sup.listen))
				a.sup.done = nil
				continue
			}
			if a.phase == PhaseDormant || a.phase == PhaseStopping {
				continue
			}
			a.drainOutput(ctx)
			a.report(ctx, a.watch.finishAll(a.sup.listen))
			if a.phase == PhaseDraining {
				a.log.Info("gitlab-runner stopped: the drained machine takes no other job", "exit_code", a.sup.code)
				a.sup.done = nil
				continue
			}
			ranJob := len(a.reported) > jobsBefore
			if a.cfg.Runner.Mode == agentapi.ModeSingle && (ranJob || a.sup.code == 0) {
				// run-single ran its job (or waited --wait-timeout for
				// none): this machine was made for one job.
				a.log.Info("gitlab-runner ran its one job; this runner takes no other", "exit_code", a.sup.code)
				a.sup.done = nil
				a.setPhase(PhaseDone)
				continue
			}
			// A gitlab-runner that failed before taking any job took
			// nothing from GitLab: start it again, backing off.
			crashes++
			wait := min(2*time.Second<<min(crashes-1, 5), time.Minute)
			a.log.Warn("gitlab-runner exited; starting it again", "exit_code", a.sup.code, "last_words", a.opts.Masker.Mask(a.sup.lastWords(3)), "in", wait)
			a.sup.done = nil
			restartAt = time.Now().Add(wait)
		case <-poll.C:
			if !restartAt.IsZero() && time.Now().After(restartAt) {
				restartAt = time.Time{}
				jobsBefore = len(a.reported)
				if err := a.up(ctx, ""); err != nil {
					a.log.Warn("restart gitlab-runner", "error", err)
					restartAt = time.Now().Add(10 * time.Second)
				}
			}
			if a.sup.running() {
				if reps, err := a.watch.poll(ctx, a.sup.listen); err == nil {
					a.report(ctx, reps)
				}
			}
		case r := <-a.output.events:
			a.report(ctx, []agentapi.JobReport{r})
			crashes = 0
		case <-beat.C:
			a.heartbeat(ctx)
		}
	}
}

// stopRequested tells whether Gosling asked for this shutdown (Stop).
func (a *agent) stopRequested() bool {
	_, err := os.Stat(filepath.Join(a.opts.WorkDir, stopFile))
	return err == nil
}

// retryUp repeats up until it succeeds, the token is rejected (retrying
// cannot help), or ctx ends. A machine boots before everything it needs
// may be reachable, so transient failures are logged, not fatal.
func (a *agent) retryUp(ctx context.Context, trigger string) error {
	wait := 200 * time.Millisecond
	for {
		err := a.up(ctx, trigger)
		if err == nil || runnerapi.IsForbidden(err) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("not ready yet; retrying", "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// up verifies the token, writes config.toml and starts gitlab-runner (or
// adopts the one running), then reports ready for trigger ("" reports
// nothing: a restart).
func (a *agent) up(ctx context.Context, trigger string) error {
	token, version, err := a.verifiedToken(ctx, trigger)
	if err != nil {
		return err
	}
	if a.prevListen != "" && a.sup.adopt(a.prevListen) {
		a.log.Info("gitlab-runner kept running across the agent's re-execution")
		a.prevListen = ""
		if v, err := runnerVersion(ctx, a.sup.binary); err == nil {
			a.version = v
		}
	} else if err := a.startRunner(ctx, token, a.singleFlags()); err != nil {
		return err
	}
	a.setPhase(PhaseServing)
	if trigger == "" {
		return nil
	}
	if err := a.ready(ctx, token, version, trigger); err != nil {
		// gitlab-runner runs: serve on; the waiting workflow's timeout
		// decides, and heartbeats go on.
		a.log.Warn("ready not reported; serving all the same", "error", err)
	}
	return nil
}

// singleFlags are run-single's flags when the runner takes one job
// (runner.mode single), nil when it runs `gitlab-runner run`, taking jobs
// until stopped.
func (a *agent) singleFlags() []string {
	if a.cfg.Runner.Mode != agentapi.ModeSingle {
		return nil
	}
	return a.runSingleFlags(0)
}

// runSingleFlags are run-single's --max-builds 1 and --wait-timeout:
// waitSeconds, or the configured wait (default DefaultWaitTimeout).
func (a *agent) runSingleFlags(waitSeconds int) []string {
	if waitSeconds <= 0 {
		waitSeconds = a.cfg.Runner.WaitTimeoutSeconds
	}
	if waitSeconds <= 0 {
		waitSeconds = int(DefaultWaitTimeout / time.Second)
	}
	return []string{"--max-builds", "1", "--wait-timeout", strconv.Itoa(waitSeconds)}
}

// reready verifies the token and reports ready for a gitlab-runner that
// kept running.
func (a *agent) reready(ctx context.Context) error {
	token, version, err := a.verifiedToken(ctx, agentapi.TriggerResume)
	if err != nil {
		return err
	}
	return a.ready(ctx, token, version, agentapi.TriggerResume)
}

// verifiedToken reads the current token and checks it with GitLab.
func (a *agent) verifiedToken(ctx context.Context, trigger string) (token, version string, err error) {
	token, version, err = a.tokens.current(ctx, a.cfg)
	if err != nil {
		return "", "", fmt.Errorf("read the runner token: %w", err)
	}
	gl, err := runnerapi.New(a.cfg.GitLabURL, nil)
	if err != nil {
		return "", version, err
	}
	// As the machine's gitlab-runner will: one runner manager to GitLab.
	systemID, err := runnerapi.RunnerSystemID(a.opts.WorkDir)
	if err != nil {
		return "", version, fmt.Errorf("runner system ID: %w", err)
	}
	err = retry(ctx, func() error { return gl.VerifyRunner(ctx, token, systemID) })
	if trigger != "" && (err == nil || runnerapi.IsForbidden(err)) {
		recordToken(a.opts.WorkDir, trigger, version, err, a.log)
	}
	if err != nil {
		return "", version, fmt.Errorf("verify runner %s with GitLab: %w", a.cfg.RunnerID, err)
	}
	a.tokenVersion = version
	a.log.Info("runner token verified", "version", version)
	return token, version, nil
}

// writeRunnerConfig renders and writes config.toml with the token, the
// resolved variables, the Rift cache and a metrics address, and returns
// what it was written from.
func (a *agent) writeRunnerConfig(ctx context.Context, token string) (runnerSpec, error) {
	env, err := a.tokens.environment(ctx, a.cfg)
	if err != nil {
		return runnerSpec{}, err
	}
	listen := a.cfg.Runner.ListenAddress
	if listen == "" {
		if listen, err = freeListenAddress(); err != nil {
			return runnerSpec{}, err
		}
	}
	var cache *s3CacheTOML
	var eng *engineContext
	if rc := a.cfg.Runner.Rift; rc != nil && rc.URL != "" {
		cache, eng, err = a.rift(ctx, token, rc)
		if err != nil {
			// The cache and the engine only speed jobs up: run without
			// them.
			a.log.Warn("no Rift cache or engine for this runner", "rift", rc.URL, "error", err)
		}
	}
	sp := runnerSpec{cfg: a.cfg, token: token, environment: env, listen: listen, cache: cache, workDir: a.opts.WorkDir}
	if eng != nil {
		// Jobs get the engine context in their environment (config.toml,
		// not gitlab-runner's own environment); a docker executor's job
		// containers get its certificates mounted.
		sp.environment = append(append([]string(nil), sp.environment...), eng.env...)
		sp.volumes = eng.volumes
	}
	b, err := renderRunnerConfig(sp)
	if err != nil {
		return runnerSpec{}, err
	}
	if err := a.sup.writeConfig(b); err != nil {
		return runnerSpec{}, fmt.Errorf("write config.toml: %w", err)
	}
	return sp, nil
}

// rift asks Rift's control API, with the runner token, what it serves the
// egg: the build cache's settings and, for an egg with a rift engine, the
// engine context its jobs reach it with (engineContext).
func (a *agent) rift(ctx context.Context, token string, rc *agentapi.RiftConfig) (*s3CacheTOML, *engineContext, error) {
	var pool *x509.CertPool
	if rc.CA != "" {
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(rc.CA)) {
			return nil, nil, errors.New("runner.rift.ca holds no PEM certificate")
		}
	}
	c := riftapi.NewClient(rc.URL, token, pool)
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	rcfg, err := c.Config(cctx, a.cfg.Egg)
	if err != nil {
		return nil, nil, err
	}
	var cache *s3CacheTOML
	var errs []error
	if rcfg.Cache == nil {
		errs = append(errs, errors.New("rift serves no build cache"))
	} else {
		a.opts.Masker.Add(rcfg.Cache.SecretKey)
		if cache, err = cacheFromRift(*rcfg.Cache); err != nil {
			errs = append(errs, err)
		}
	}
	var eng *engineContext
	if rcfg.Engine != nil {
		if eng, err = a.engineContext(cctx, c, *rcfg.Engine); err != nil {
			errs = append(errs, fmt.Errorf("rift's engine: %w", err))
		}
	}
	return cache, eng, errors.Join(errs...)
}

// startRunner writes config.toml and starts `gitlab-runner run`, or, for
// single non-nil, run-single with those flags. Its command line follows
// the gitlab-runner it finds (runnerCaps): run-single reads config.toml
// from GitLab Runner 17 on, and is given every setting as flags and
// environment variables before. gitlab-runner logs in JSON (--log-format
// json, a flag rather than LOG_FORMAT, which jobs would inherit), so the
// agent reads job events from fields, not from coloured text.
func (a *agent) startRunner(ctx context.Context, token string, single []string) error {
	sp, err := a.writeRunnerConfig(ctx, token)
	if err != nil {
		return err
	}
	caps, err := detectRunner(ctx, a.sup.binary)
	if err != nil {
		a.log.Warn("cannot tell gitlab-runner's version", "error", err)
	}
	a.version = caps.version
	listen := sp.listen
	args := []string{"run", "--config", a.sup.configPath(), "--working-directory", a.opts.WorkDir}
	var env []string
	switch {
	case single == nil:
	case caps.singleReadsConfig():
		args = []string{"run-single", "--config", a.sup.configPath(), "--runner", a.cfg.RunnerID}
		if caps.singleListens() {
			args = append(args, "--listen-address", listen)
		} else {
			listen = ""
		}
		args = append(args, single...)
	default:
		args, env = legacySingle(sp, single)
		listen = ""
		a.log.Info("gitlab-runner's run-single reads no config.toml: its settings go as flags and environment", "version", caps.version)
	}
	a.watch = newJobWatcher()
	return a.sup.start(append([]string{"--log-format", "json"}, args...), env, listen)
}

func (a *agent) versions() agentapi.Versions {
	return agentapi.Versions{Agent: a.opts.Version, GitLabRunner: a.version}
}

// readyPatience bounds the retries of one ready report: past it the agent
// goes on serving (and heartbeating), and the waiting workflow's own
// timeout decides.
const readyPatience = 2 * time.Minute

// ready tells MotherGoose the runner is ready, having verified the runner
// token (of that version) with GitLab. It retries until MotherGoose takes
// it (a 401 too, as the runner's record may not name its credential yet)
// or readyPatience passes.
func (a *agent) ready(ctx context.Context, _, version, trigger string) error {
	if a.api == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, readyPatience)
	defer cancel()
	host, _ := os.Hostname()
	r := agentapi.Ready{Trigger: trigger, PID: os.Getpid(), Host: host, TokenVersion: version, Versions: a.versions(), At: time.Now().UTC()}
	var pins agentapi.Pins
	err := retryAll(ctx, func() error {
		credential, err := a.tokens.credential(ctx, a.cfg)
		if err != nil {
			return err
		}
		pins, err = a.api.Ready(ctx, credential, r)
		return err
	})
	if err != nil {
		return fmt.Errorf("report ready to MotherGoose: %w", err)
	}
	a.log.Info("ready reported", "trigger", trigger)
	a.apply(ctx, pins)
	return nil
}

// heartbeat writes the heartbeat file and posts a beat.
func (a *agent) heartbeat(ctx context.Context) {
	_ = os.WriteFile(filepath.Join(a.opts.WorkDir, heartbeatFile), []byte(time.Now().UTC().Format(time.RFC3339Nano)), 0o600)
	if a.api == nil || (a.phase != PhaseServing && a.phase != PhaseDone && a.phase != PhaseDraining) {
		return
	}
	bctx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
	defer cancel()
	credential, err := a.tokens.credential(bctx, a.cfg)
	if err != nil {
		a.log.Debug("heartbeat: cannot read the agent credential", "error", err)
		return
	}
	pins, err := a.api.Heartbeat(bctx, credential, agentapi.Beat{
		TokenVersion: a.tokenVersion, Versions: a.versions(), Jobs: a.watch.jobs(), UpdateError: a.updateErr, At: time.Now().UTC(),
	})
	if err != nil {
		a.log.Debug("heartbeat not delivered", "error", err)
		return
	}
	if a.phase == PhaseDone || a.phase == PhaseDraining {
		// A runner whose one job ran, or a drained one, updates nothing:
		// a new release would start gitlab-runner again.
		return
	}
	a.apply(ctx, pins)
}

// report tells MotherGoose of job changes, best effort.
func (a *agent) report(ctx context.Context, reps []agentapi.JobReport) {
	for _, r := range reps {
		if prev := a.reported[r.JobID]; prev == r.Status || prev == agentapi.JobSuccess || prev == agentapi.JobFailed {
			continue // told already; a job's end is told once
		}
		a.reported[r.JobID] = r.Status
		if len(a.reported) > 256 {
			for id, st := range a.reported {
				if id != r.JobID && st != agentapi.JobRunning {
					delete(a.reported, id)
				}
			}
		}
		a.log.Info("job", "job", r.JobID, "status", r.Status, "failure_reason", r.FailureReason)
		// The state file shows the jobs as told (what `gosling dev
		// interrupt` and a re-executed agent read).
		a.setPhase(a.phase)
		if r.Finished() {
			a.ran = append(a.ran, r)
		}
		if a.api == nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
		credential, err := a.tokens.credential(rctx, a.cfg)
		if err == nil {
			err = a.api.Job(rctx, credential, r)
		}
		cancel()
		if err != nil {
			a.log.Debug("job report not delivered", "job", r.JobID, "error", err)
		}
	}
}

// idle tells whether gitlab-runner runs no job, as far as its metrics and
// its log have told (both looked at afresh, and reported).
func (a *agent) idle() bool {
	ctx, cancel := context.WithTimeout(context.Background(), heartbeatTimeout)
	defer cancel()
	if reps, err := a.watch.poll(ctx, a.sup.listen); err == nil {
		a.report(ctx, reps)
	}
	a.drainOutput(ctx)
	for _, status := range a.reported {
		if status == agentapi.JobRunning {
			return false
		}
	}
	return true
}

// drainOutput reports the job lines gitlab-runner's log held.
func (a *agent) drainOutput(ctx context.Context) {
	for {
		select {
		case r := <-a.output.events:
			a.report(ctx, []agentapi.JobReport{r})
		default:
			return
		}
	}
}

// reload is the answer to SIGHUP: a new token. The agent re-reads its
// configuration, verifies the current token version with GitLab, rewrites
// config.toml and tells gitlab-runner to reload it (SIGHUP), which keeps
// its running jobs: they authenticate with their job tokens.
func (a *agent) reload(ctx context.Context) {
	if err := a.loadConfig(); err != nil {
		a.log.Warn("reload: configuration unreadable; keeping the current one", "error", err)
	}
	rctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	token, version, err := a.verifiedToken(rctx, TriggerReload)
	if err != nil {
		a.log.Warn("reload: new token not verified; running on", "version", version, "error", err)
		return
	}
	if a.sup.running() {
		if err := a.writeRunnerConfigKeepListen(rctx, token); err != nil {
			a.log.Warn("reload: config.toml not rewritten", "error", err)
			return
		}
		if err := a.sup.signal(syscall.SIGHUP); err != nil {
			a.log.Warn("reload: gitlab-runner not told", "error", err)
		}
	}
	a.log.Info("reload: runner token verified; gitlab-runner reloads it", "version", version)
}

// writeRunnerConfigKeepListen rewrites config.toml without moving the
// metrics address of the gitlab-runner that runs.
func (a *agent) writeRunnerConfigKeepListen(ctx context.Context, token string) error {
	keep := a.cfg.Runner.ListenAddress
	a.cfg.Runner.ListenAddress = a.sup.listen
	defer func() { a.cfg.Runner.ListenAddress = keep }()
	_, err := a.writeRunnerConfig(ctx, token)
	return err
}

// sleep is the answer to SIGUSR1: the machine is about to be stopped.
// gitlab-runner stops gracefully first.
func (a *agent) sleep() {
	a.phase = PhaseDormant
	if err := a.sup.stop(context.Background(), 24*time.Hour, a.idle); err != nil {
		a.log.Warn("stop gitlab-runner before sleeping", "error", err)
	}
	a.sup.done = nil
	a.setPhase(PhaseDormant)
	a.log.Info("gitlab-runner stopped; the machine may sleep")
}

// shutdown stops gitlab-runner gracefully: the running job finishes, as
// long as it takes (the stopper bounds the wait by killing the machine).
func (a *agent) shutdown() {
	a.setPhase(PhaseStopping)
	if err := a.sup.stop(context.Background(), 24*time.Hour, a.idle); err != nil {
		a.log.Warn("stop gitlab-runner", "error", err)
	}
	// The machine is going away: its runner token goes with it, and the
	// engine's socket.
	a.sup.removeConfig()
	a.forward.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.report(ctx, a.watch.finishAll(a.sup.listen))
}

func retry(ctx context.Context, fn func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if runnerapi.IsForbidden(err) {
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

// retryAll retries every failure until ctx ends.
func retryAll(ctx context.Context, fn func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 3*time.Second)
	}
}
