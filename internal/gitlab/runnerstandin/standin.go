// Package runnerstandin is a gitlab-runner STAND-IN, not the real
// gitlab-runner. Current gitlab-runner releases cannot be built here (their
// Go modules need modules the module proxy refuses, and Debian does not
// package them); the one that can, a 12.8.0 pre-release of 2020, runs
// beside this stand-in in the differential test (differential_test.go),
// which holds the two to the same statuses, logs and runner-API calls.
// This package implements the part of a current gitlab-runner that
// Gosling's agent supervises, speaking GitLab's real runner API:
//   - config.toml (concurrent, check_interval, listen_address,
//     shutdown_timeout, [[runners]] with url, token, executor, builds_dir,
//     environment, limit, output_limit, cache_dir, an S3 [runners.cache]);
//   - POST /runners/verify, POST /jobs/request with long polling and
//     X-GitLab-Last-Update, PATCH /jobs/:id/trace with Content-Range (416
//     resynchronises), PUT /jobs/:id with state, failure_reason, exit_code
//     and the log's checksum, a 403 with Job-Status: canceled stopping the
//     job;
//   - the shell executor with bash: before_script and script, then
//     after_script; job variables, the runner's environment and CI_*
//     variables; masked values, and tokens with GitLab's token prefixes
//     (glpat-[MASKED]), replaced in the log; job timeouts;
//   - signals: SIGQUIT finishes running jobs and exits, SIGTERM and SIGINT
//     abort them (a second one exits at once), SIGHUP reloads config.toml,
//     which is also reloaded when it changes;
//   - /metrics on listen_address with gitlab-runner's metric names;
//   - job caches (the payload's cache: key, paths, untracked, policy,
//     when, fallback_keys): a zip archive restored before the script and
//     saved after after_script, in the S3 bucket of [runners.cache] (Rift's
//     or any other, through presigned URLs the AWS SDK signs), or in
//     cache_dir without one;
//   - the job's sources: git init, fetch of the payload's refspecs at its
//     depth from repo_url (with the job token), checkout of the SHA and
//     git clean, as the shell executor's fetch strategy does (git.go).
//
// It does not run images, services or artifacts.
// Every log line and every job log says it is a stand-in.
package runnerstandin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// What the stand-in calls itself.
const (
	// Banner opens every job log and labels every log line.
	Banner = "gitlab-runner STAND-IN, not the real gitlab-runner"
	// Name is sent as info.name in every runner API call.
	Name     = "gitlab-runner-standin"
	Version  = "18.6.0~standin"
	Revision = "standin"
)

// UserAgent is the User-Agent of the stand-in's requests, shaped like
// gitlab-runner's ("gitlab-runner 18.6.0 (18-6-stable; go1.24; linux/amd64)").
func UserAgent() string {
	return fmt.Sprintf("gitlab-runner %s (standin; %s; %s/%s)", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Options configure a Multi.
type Options struct {
	// ConfigFile is config.toml; it is re-read on Reload and when it
	// changes. Either it or Config is set.
	ConfigFile string
	// Config is used as is when there is no file (run-single).
	Config *Config
	// SystemIDDir, with Config, is the directory whose .runner_system_id
	// the runner sends: run-single --config takes the config file's, as
	// gitlab-runner's configfile.Load does (commands/internal/configfile).
	// Empty makes a new system ID (r_...), as run-single with flags does.
	SystemIDDir string
	// WorkingDirectory anchors relative builds_dir (default: the current
	// directory).
	WorkingDirectory string
	// ListenAddress overrides listen_address for /metrics.
	ListenAddress string
	Logger        *slog.Logger
	// MaxBuilds stops taking jobs after that many (0: no limit), as
	// run-single --max-builds.
	MaxBuilds int
	// WaitTimeout stops when no job came for that long (0: never), as
	// run-single --wait-timeout.
	WaitTimeout time.Duration
	// ConfigCheckInterval is how often the file is checked for changes
	// (default 3s, gitlab-runner's ReloadConfigInterval).
	ConfigCheckInterval time.Duration
}

// Multi is `gitlab-runner run`: it requests jobs for every configured
// runner and runs them, at most concurrent at once.
type Multi struct {
	opts     Options
	log      *slog.Logger
	net      *network
	metrics  *metrics
	systemID string
	workDir  string

	mu           sync.Mutex
	cfg          *Config
	cfgModTime   time.Time
	changed      chan struct{}
	busy         int
	busyBy       map[string]int
	feeders      map[string]context.CancelFunc
	stopping     bool
	builds       int
	lastActivity time.Time
	running      map[int64]runningJob
	// concurrentIDs are the CI_CONCURRENT_ID slots in use, per runner.
	concurrentIDs map[string]map[int]bool

	graceful     chan struct{}
	gracefulOnce sync.Once
	force        chan struct{}
	forceOnce    sync.Once
	abortCtx     context.Context
	abort        context.CancelFunc
	feedersWG    sync.WaitGroup
	jobsWG       sync.WaitGroup
}

type runningJob struct {
	url     string
	started time.Time
}

// NewMulti loads the configuration and prepares the runner; Run starts it.
func NewMulti(opts Options) (*Multi, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := &Multi{
		opts: opts, log: log.With("standin", Banner), net: newNetwork(), metrics: newMetrics(),
		changed: make(chan struct{}), busyBy: map[string]int{}, feeders: map[string]context.CancelFunc{},
		running: map[int64]runningJob{}, concurrentIDs: map[string]map[int]bool{}, graceful: make(chan struct{}), force: make(chan struct{}),
		lastActivity: time.Now(),
	}
	m.abortCtx, m.abort = context.WithCancel(context.Background())
	m.workDir = opts.WorkingDirectory
	if m.workDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		m.workDir = wd
	}
	switch {
	case opts.ConfigFile != "":
		cfg, warnings, err := LoadConfig(opts.ConfigFile)
		if err != nil {
			return nil, err
		}
		for _, w := range warnings {
			m.log.Warn("config.toml: " + w)
		}
		m.cfg = cfg
		if st, err := os.Stat(opts.ConfigFile); err == nil {
			m.cfgModTime = st.ModTime()
		}
	case opts.Config != nil:
		cfg := *opts.Config
		cfg.applyDefaults()
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		m.cfg = &cfg
	default:
		return nil, errors.New("no configuration: give --config PATH, or --url and --token")
	}
	m.systemID = systemID(cmp.Or(configDir(opts.ConfigFile), opts.SystemIDDir))
	m.describeConfig(m.cfg)
	m.metrics.configure(m.cfg, m.systemID)
	return m, nil
}

// SystemID is the runner's system ID (s_...), sent with every request.
func (m *Multi) SystemID() string { return m.systemID }

// MetricsHandler serves /metrics and /debug/jobs/list.
func (m *Multi) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/jobs/list", func(w http.ResponseWriter, _ *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		ids := make([]int64, 0, len(m.running))
		for id := range m.running {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		w.Header().Set("Content-Type", "text/plain")
		for _, id := range ids {
			j := m.running[id]
			fmt.Fprintf(w, "url=%s state=running stage=step_script executor_stage=step_script duration=%s\n", j.url, time.Since(j.started).Round(time.Millisecond))
		}
	})
	return mux
}

func (m *Multi) describeConfig(cfg *Config) {
	for _, rc := range cfg.Runners {
		if c := rc.Cache; c != nil && c.Type != "" && c.Type != "s3" {
			m.log.Warn(fmt.Sprintf("[runners.cache] Type = %q is not supported by the stand-in: jobs of this runner run without their cache", c.Type), "runner", ShortToken(rc.Token))
			continue
		}
		m.log.Info("Job caches are restored and saved", cacheSummary(rc)...)
	}
}

// Run takes and runs jobs until GracefulStop or Stop is called, then
// returns once the running jobs are done (or, after Stop, after
// shutdown_timeout). Canceling ctx returns at once, abandoning jobs, as a
// second SIGTERM does.
func (m *Multi) Run(ctx context.Context) error {
	m.mu.Lock()
	cfg := m.cfg
	m.mu.Unlock()
	m.log.Info("Starting multi-runner", "config", m.opts.ConfigFile, "builds", 0, "max_builds", cfg.Concurrent, "system_id", m.systemID)

	addr := cmp.Or(m.opts.ListenAddress, cfg.ListenAddress)
	var srv *http.Server
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen_address %s: %w (choose another with --listen-address)", addr, err)
		}
		srv = &http.Server{Handler: m.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		m.log.Info("Metrics server listening", "address", ln.Addr().String())
	}

	m.mu.Lock()
	m.applyConfigLocked()
	m.mu.Unlock()

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	if m.opts.ConfigFile != "" {
		go m.watchConfig(watchCtx)
	}
	if m.opts.WaitTimeout > 0 {
		go m.watchIdle(watchCtx)
	}

	var deadline <-chan time.Time
	select {
	case <-ctx.Done():
		m.stopFeeding()
		m.abort()
		return ctx.Err()
	case <-m.graceful:
		m.stopFeeding()
		m.log.Info("Graceful shutdown: taking no new jobs, finishing the running ones")
	case <-m.force:
		m.log.Warn("Forceful shutdown: aborting running jobs")
		m.stopFeeding()
		m.abort()
		deadline = time.After(m.cfgShutdownTimeout())
	}
	done := make(chan struct{})
	go func() { m.jobsWG.Wait(); close(done) }()
	for {
		select {
		case <-done:
			m.log.Info("All workers stopped.")
			return nil
		case <-m.force:
			if deadline == nil {
				m.log.Warn("Forceful shutdown: aborting running jobs")
				m.abort()
				deadline = time.After(m.cfgShutdownTimeout())
			}
		case <-deadline:
			return errors.New("shutdown_timeout passed with jobs still reporting")
		case <-ctx.Done():
			m.abort()
			return ctx.Err()
		}
	}
}

// GracefulStop is SIGQUIT: take no new jobs, finish the running ones, then
// Run returns.
func (m *Multi) GracefulStop() {
	m.mu.Lock()
	m.stopping = true
	m.broadcastLocked()
	m.mu.Unlock()
	m.gracefulOnce.Do(func() { close(m.graceful) })
}

// Stop is SIGTERM or SIGINT: take no new jobs, abort the running ones
// (reported failed, runner_system_failure) and return once they reported
// or shutdown_timeout passed.
func (m *Multi) Stop() {
	m.mu.Lock()
	m.stopping = true
	m.broadcastLocked()
	m.mu.Unlock()
	m.forceOnce.Do(func() { close(m.force) })
}

// Reload is SIGHUP: re-read config.toml. Running jobs go on; runners
// added start taking jobs, runners removed stop. A config that does not
// load is logged and the old one kept.
func (m *Multi) Reload() error {
	if m.opts.ConfigFile == "" {
		return nil
	}
	cfg, warnings, err := LoadConfig(m.opts.ConfigFile)
	if err != nil {
		m.log.Error("Failed to load config; keeping the previous one", "error", err)
		return err
	}
	for _, w := range warnings {
		m.log.Warn("config.toml: " + w)
	}
	m.describeConfig(cfg)
	m.mu.Lock()
	m.cfg = cfg
	if st, err := os.Stat(m.opts.ConfigFile); err == nil {
		m.cfgModTime = st.ModTime()
	}
	m.applyConfigLocked()
	m.broadcastLocked()
	m.mu.Unlock()
	m.metrics.configure(cfg, m.systemID)
	m.log.Info("Configuration loaded", "runners", len(cfg.Runners), "concurrent", cfg.Concurrent)
	return nil
}

// watchConfig reloads config.toml when its modification time changes.
func (m *Multi) watchConfig(ctx context.Context) {
	every := m.opts.ConfigCheckInterval
	if every <= 0 {
		every = 3 * time.Second
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		st, err := os.Stat(m.opts.ConfigFile)
		m.mu.Lock()
		changed := err == nil && !st.ModTime().Equal(m.cfgModTime)
		m.mu.Unlock()
		if changed {
			m.log.Info("config.toml changed: reloading")
			_ = m.Reload()
		}
	}
}

// watchIdle stops when no job came for WaitTimeout.
func (m *Multi) watchIdle(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		m.mu.Lock()
		idle := len(m.running) == 0 && time.Since(m.lastActivity) > m.opts.WaitTimeout
		m.mu.Unlock()
		if idle {
			m.log.Info("No job received within wait-timeout: stopping", "wait_timeout", m.opts.WaitTimeout)
			m.GracefulStop()
			return
		}
	}
}

func (m *Multi) cfgShutdownTimeout() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.shutdownTimeout()
}

func runnerKey(rc RunnerConfig) string { return rc.URL + "\x00" + rc.Token }

// applyConfigLocked starts a feeder per new runner and stops those of
// removed ones. The caller holds m.mu.
func (m *Multi) applyConfigLocked() {
	if m.stopping {
		return
	}
	keep := map[string]bool{}
	for _, rc := range m.cfg.Runners {
		key := runnerKey(rc)
		keep[key] = true
		if _, ok := m.feeders[key]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		m.feeders[key] = cancel
		m.feedersWG.Add(1)
		go m.feed(ctx, key)
	}
	for key, cancel := range m.feeders {
		if !keep[key] {
			cancel()
			delete(m.feeders, key)
		}
	}
}

func (m *Multi) stopFeeding() {
	m.mu.Lock()
	m.stopping = true
	for key, cancel := range m.feeders {
		cancel()
		delete(m.feeders, key)
	}
	m.broadcastLocked()
	m.mu.Unlock()
	m.feedersWG.Wait()
}

func (m *Multi) broadcastLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// runnerConfig is the current configuration of a runner, if still there.
func (m *Multi) runnerConfig(key string) (RunnerConfig, time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, rc := range m.cfg.Runners {
		if runnerKey(rc) == key {
			return rc, m.cfg.checkInterval(), true
		}
	}
	return RunnerConfig{}, 0, false
}

// acquire takes a slot under concurrent and the runner's limit.
func (m *Multi) acquire(ctx context.Context, rc RunnerConfig) bool {
	for {
		m.mu.Lock()
		if m.stopping || ctx.Err() != nil {
			m.mu.Unlock()
			return false
		}
		key := runnerKey(rc)
		if m.busy < m.cfg.Concurrent && (rc.Limit <= 0 || m.busyBy[key] < rc.Limit) {
			m.busy++
			m.busyBy[key]++
			m.mu.Unlock()
			return true
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// release gives a slot back; after a job it counts the build and stops
// taking jobs at MaxBuilds.
func (m *Multi) release(rc RunnerConfig, afterJob bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.busy--
	m.busyBy[runnerKey(rc)]--
	if afterJob {
		m.builds++
		m.lastActivity = time.Now()
		if m.opts.MaxBuilds > 0 && m.builds >= m.opts.MaxBuilds && !m.stopping {
			m.log.Info("max-builds reached: stopping", "builds", m.builds)
			m.stopping = true
			m.gracefulOnce.Do(func() { close(m.graceful) })
		}
	}
	m.broadcastLocked()
}

// feed requests jobs for one runner until ctx ends.
func (m *Multi) feed(ctx context.Context, key string) {
	defer m.feedersWG.Done()
	lastUpdate := ""
	for ctx.Err() == nil {
		rc, interval, ok := m.runnerConfig(key)
		if !ok || !m.acquire(ctx, rc) {
			return
		}
		start := time.Now()
		sent := lastUpdate
		job, lu, status, err := m.net.requestJob(ctx, rc, m.systemID, lastUpdate)
		m.metrics.request(rc, m.systemID, "request_job", status)
		lastUpdate = lu
		if job != nil {
			// GitLab gave the job away: it runs even if we are stopping.
			m.mu.Lock()
			m.lastActivity = time.Now()
			m.mu.Unlock()
			m.jobsWG.Add(1)
			go func() {
				defer m.jobsWG.Done()
				defer m.release(rc, true)
				m.runJob(m.abortCtx, rc, job)
			}()
			continue
		}
		m.release(rc, false)
		wait := interval - time.Since(start)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			m.metrics.errorsTotal.WithLabelValues("error").Inc()
			m.log.Error("Checking for jobs... error", "runner", ShortToken(rc.Token), "error", err)
			wait = interval
		case status == http.StatusForbidden:
			m.metrics.errorsTotal.WithLabelValues("error").Inc()
			m.log.Error("Checking for jobs... forbidden", "runner", ShortToken(rc.Token))
			wait = interval
		case status == http.StatusTooManyRequests || status >= 500:
			m.metrics.errorsTotal.WithLabelValues("warning").Inc()
			m.log.Warn("Checking for jobs... failed", "runner", ShortToken(rc.Token), "status", status)
			wait = interval
		case status == http.StatusNoContent && lu != sent:
			// The queue moved since our last_update: ask again at once;
			// GitLab holds that request (long polling) or answers 204
			// with this same value, and then we wait.
			wait = 0
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

func (m *Multi) trackJob(job *jobResponse, rc RunnerConfig, started time.Time) {
	url := strings.TrimSuffix(cleanURL(job.GitInfo.RepoURL), ".git")
	if url == "" {
		url = strings.TrimRight(rc.URL, "/")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running[job.ID] = runningJob{url: fmt.Sprintf("%s/-/jobs/%d", url, job.ID), started: started}
}

// takeConcurrentID is the lowest CI_CONCURRENT_ID free for the runner.
func (m *Multi) takeConcurrentID(rc RunnerConfig) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := runnerKey(rc)
	if m.concurrentIDs[key] == nil {
		m.concurrentIDs[key] = map[int]bool{}
	}
	id := 0
	for m.concurrentIDs[key][id] {
		id++
	}
	m.concurrentIDs[key][id] = true
	return id
}

func (m *Multi) freeConcurrentID(rc RunnerConfig, id int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.concurrentIDs[runnerKey(rc)], id)
}

func (m *Multi) untrackJob(id int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.running, id)
}

// VerifyResult is one runner's answer to POST /runners/verify.
type VerifyResult struct {
	Name       string
	ShortToken string
	Valid      bool
	Err        error
}

// Verify checks every runner's token with GitLab, as `gitlab-runner
// verify` does.
func Verify(ctx context.Context, cfg *Config, configFile string) []VerifyResult {
	n := newNetwork()
	id := systemID(configDir(configFile))
	var out []VerifyResult
	for _, rc := range cfg.Runners {
		ok, err := n.verify(ctx, rc, id)
		out = append(out, VerifyResult{Name: rc.Name, ShortToken: ShortToken(rc.Token), Valid: ok, Err: err})
	}
	return out
}

// WriteWrapper writes an executable script named gitlab-runner into dir
// that runs `gosling dev gitlab-runner "$@"` with the given gosling binary,
// so whatever runs "gitlab-runner" from PATH runs the stand-in. It returns
// the script's path.
func WriteWrapper(dir, gosling string) (string, error) {
	abs, err := filepath.Abs(gosling)
	if err != nil {
		return "", fmt.Errorf("gitlab-runner wrapper: %w", err)
	}
	script := "#!/bin/sh\n" +
		"# " + Banner + ": Gosling's stand-in, speaking GitLab's runner API.\n" +
		"exec " + shellQuote(abs) + " dev gitlab-runner \"$@\"\n"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("gitlab-runner wrapper: %w", err)
	}
	path := filepath.Join(dir, "gitlab-runner")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("gitlab-runner wrapper: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("gitlab-runner wrapper: %w", err)
	}
	return path, nil
}

// shellQuote is POSIX single quoting.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// configDir is the directory of a config.toml path, "" for none.
func configDir(configFile string) string {
	if configFile == "" {
		return ""
	}
	return filepath.Dir(configFile)
}
