package runnerstandin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Why a job ended other than by its own script, as a context cause.
var (
	errJobCanceled = errors.New("canceled")
	errJobTimeout  = errors.New("job timeout")
	errAborted     = errors.New("aborted: terminated")
)

// jobOutcome is what the runner reports at the end.
type jobOutcome struct {
	state         string // success or failed
	failureReason string
	exitCode      int
}

// runJob runs one job with the shell executor and reports it. abort ends
// it as a forceful stop does.
func (m *Multi) runJob(abort context.Context, rc RunnerConfig, job *jobResponse) {
	started := time.Now()
	short := ShortToken(rc.Token)
	m.metrics.jobStarted(rc, m.systemID)
	m.trackJob(job, rc, started)
	defer m.untrackJob(job.ID)
	cid := m.takeConcurrentID(rc)
	defer m.freeConcurrentID(rc, cid)
	log := m.log.With("job", job.ID, "runner", short, "project", job.JobInfo.ProjectID)
	log.Info("Checking for jobs... received", "repo_url", cleanURL(job.GitInfo.RepoURL))

	timeout := time.Duration(job.RunnerInfo.Timeout) * time.Second
	if timeout <= 0 {
		timeout = time.Hour
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stopAbort := context.AfterFunc(abort, func() { cancel(errAborted) })
	defer stopAbort()
	timer := time.AfterFunc(timeout, func() { cancel(errJobTimeout) })
	defer timer.Stop()

	vars, masked := m.jobEnvironment(rc, job, cid)
	trace := newJobTrace(m.net, rc, job, masked, log, func(status string) {
		log.Warn("Job is no longer running in GitLab: stopping it", "job-status", status)
		cancel(errJobCanceled)
	})
	traceCtx, stopTrace := context.WithCancel(context.Background())
	traceDone := make(chan struct{})
	go func() { defer close(traceDone); trace.run(traceCtx) }()

	host, _ := os.Hostname()
	trace.Printf("Running with %s %s (%s)\n", Banner, Version, Revision)
	trace.Printf("  on %s %s, system ID: %s\n", rc.Name, short, m.systemID)
	trace.Printf("Preparing the \"shell\" executor\nUsing Shell (bash) executor...\n")
	if job.Image != nil && job.Image.Name != "" {
		trace.Printf("WARNING: image %q is ignored: the shell executor runs on the machine itself\n", job.Image.Name)
	}
	trace.Printf("Preparing environment\nRunning on %s...\n", host)

	var caches *jobCaches
	if len(job.Cache) > 0 {
		var err error
		if caches, err = m.newJobCaches(rc, job); err != nil {
			trace.Printf("WARNING: the job runs without its cache: %v\n", err)
			log.Warn("the job runs without its cache", "error", err)
		}
	}
	outcome := m.execute(ctx, m.projectDir(rc, job, cid), job, vars, trace, caches)
	stopTrace()
	<-traceDone

	switch outcome.state {
	case "success":
		trace.Printf("Job succeeded\n")
	default:
		switch outcome.failureReason {
		case "script_failure":
			trace.Printf("ERROR: Job failed: exit status %d\n", outcome.exitCode)
		case "job_execution_timeout":
			trace.Printf("ERROR: Job failed: execution took longer than %s seconds\n", timeout)
		case "runner_system_failure":
			trace.Printf("ERROR: Job failed (system failure): %v\n", context.Cause(ctx))
		case "job_canceled":
			trace.Printf("ERROR: Job failed: canceled\n")
		default:
			trace.Printf("ERROR: Job failed: %s\n", outcome.failureReason)
		}
	}
	reportCtx, cancelReport := context.WithTimeout(context.Background(), m.cfgShutdownTimeout())
	defer cancelReport()
	log = log.With("duration_s", time.Since(started).Seconds())
	full := trace.finish(reportCtx)
	if errors.Is(context.Cause(ctx), errJobCanceled) {
		// gitlab-runner still sends its final update, which GitLab
		// refuses (403, Job-Status: canceled).
		log.Info("Job canceled in GitLab")
		m.report(reportCtx, rc, job, jobOutcome{state: "failed", failureReason: "job_canceled"}, full, log)
		m.metrics.jobFinished(rc, m.systemID, "job_canceled", time.Since(started))
		return
	}
	m.report(reportCtx, rc, job, outcome, full, log)
	m.metrics.jobFinished(rc, m.systemID, outcome.failureReason, time.Since(started))
}

// report sends the final state, retrying as gitlab-runner does until
// GitLab answers.
func (m *Multi) report(ctx context.Context, rc RunnerConfig, job *jobResponse, o jobOutcome, trace []byte, log *slog.Logger) {
	for attempt := 1; ; attempt++ {
		res, err := m.net.updateJob(ctx, rc, job, o.state, o.failureReason, o.exitCode, trace)
		switch {
		case err == nil && res.status == http.StatusOK:
			log.Info("Submitting job to coordinator... ok", "state", o.state, "failure_reason", o.failureReason, "exit_code", o.exitCode)
			return
		case err == nil && (res.status == http.StatusForbidden || res.status == http.StatusNotFound):
			log.Warn("Submitting job to coordinator... aborted", "code", res.status, "job-status", res.jobStatus)
			return
		}
		log.Warn("Submitting job to coordinator... failed", "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(min(attempt, 5)) * time.Second):
		}
	}
}

// jobEnvironment is the job's environment, in gitlab-runner's order:
// the runner's process environment, the runner's own CI_ variables,
// config.toml's environment, then the job's variables (later wins). It
// also returns the values to mask.
func (m *Multi) jobEnvironment(rc RunnerConfig, job *jobResponse, cid int) ([]string, []string) {
	projectDir := m.projectDir(rc, job, cid)
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			set(k, v)
		}
	}
	for k, v := range map[string]string{
		"CI_SERVER": "yes", "CI_JOB_ID": strconv.FormatInt(job.ID, 10), "CI_JOB_TOKEN": job.Token,
		"CI_SERVER_URL": strings.TrimRight(rc.URL, "/"), "CI_PROJECT_ID": strconv.FormatInt(job.JobInfo.ProjectID, 10),
		"CI_PROJECT_DIR": projectDir, "CI_BUILDS_DIR": m.buildsDir(rc), "CI_CONCURRENT_ID": strconv.Itoa(cid), "CI_CONCURRENT_PROJECT_ID": strconv.Itoa(cid),
		"CI_RUNNER_VERSION": Version, "CI_RUNNER_REVISION": Revision, "CI_RUNNER_SHORT_TOKEN": ShortToken(rc.Token),
		"CI_RUNNER_EXECUTABLE_ARCH": runtime.GOOS + "/" + runtime.GOARCH, "CI_DISPOSABLE_ENVIRONMENT": "", "CI_SHARED_ENVIRONMENT": "true",
	} {
		if v != "" {
			set(k, v)
		}
	}
	for _, kv := range rc.Environment {
		if k, v, ok := strings.Cut(kv, "="); ok {
			set(k, v)
		}
	}
	// gitlab-runner's JobVariables.Expand: each value is expanded against
	// the whole list as given (the last of a key winning), not against the
	// variables expanded before it, so the order of the job's variables does
	// not matter; $$ stays $, and $*, $#, $1... are empty.
	given := maps.Clone(vals)
	for _, v := range job.Variables {
		given[v.Key] = v.Value
	}
	lookup := func(k string) string {
		switch k {
		case "$":
			return k
		case "*", "#", "@", "!", "?", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9":
			return ""
		}
		return given[k]
	}
	masked := []string{job.Token}
	for _, v := range job.Variables {
		value := v.Value
		if !v.Raw {
			value = os.Expand(value, lookup)
		}
		set(v.Key, value)
		if v.Masked {
			masked = append(masked, v.Value, value)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out, masked
}

func (m *Multi) buildsDir(rc RunnerConfig) string {
	switch {
	case rc.BuildsDir == "":
		return filepath.Join(m.workDir, "builds")
	case filepath.IsAbs(rc.BuildsDir):
		return rc.BuildsDir
	}
	return filepath.Join(m.workDir, rc.BuildsDir)
}

// projectDir is <builds_dir>/<short token>/<concurrent id>/<project path>,
// gitlab-runner's layout: jobs running at once never share a directory.
func (m *Multi) projectDir(rc RunnerConfig, job *jobResponse, cid int) string {
	path := fmt.Sprintf("project-%d", job.JobInfo.ProjectID)
	for _, v := range job.Variables {
		if v.Key == "CI_PROJECT_PATH" && v.Value != "" && !strings.Contains(v.Value, "..") {
			path = v.Value
		}
	}
	return filepath.Join(m.buildsDir(rc), ShortToken(rc.Token), strconv.Itoa(cid), filepath.FromSlash(path))
}

// execute runs the job's steps: script (before_script and script), then
// after_script whatever happened, unless the job was canceled.
func (m *Multi) execute(ctx context.Context, dir string, job *jobResponse, env []string, trace *jobTrace, caches *jobCaches) jobOutcome {
	trace.Printf("Getting source from Git repository\n")
	code, err := getSources(ctx, dir, job, env, trace)
	switch {
	case errors.Is(context.Cause(ctx), errJobCanceled):
		return jobOutcome{state: "failed", failureReason: "job_canceled"}
	case errors.Is(context.Cause(ctx), errJobTimeout):
		return jobOutcome{state: "failed", failureReason: "job_execution_timeout"}
	case errors.Is(context.Cause(ctx), errAborted):
		return jobOutcome{state: "failed", failureReason: "runner_system_failure"}
	case err != nil:
		trace.Printf("ERROR: %v\n", err)
		return jobOutcome{state: "failed", failureReason: "runner_system_failure"}
	case code != 0:
		return jobOutcome{state: "failed", failureReason: "script_failure", exitCode: code}
	}
	if caches != nil {
		caches.restore(ctx, dir, env, trace)
	}

	outcome := jobOutcome{state: "success"}
	for _, step := range job.Steps {
		if step.Name != "script" {
			continue
		}
		trace.Printf("Executing \"step_script\" stage of the job script\n")
		code, err := runScript(ctx, dir, env, step.Script, trace)
		switch {
		case errors.Is(context.Cause(ctx), errJobTimeout):
			outcome = jobOutcome{state: "failed", failureReason: "job_execution_timeout"}
		case errors.Is(context.Cause(ctx), errAborted):
			outcome = jobOutcome{state: "failed", failureReason: "runner_system_failure"}
		case errors.Is(context.Cause(ctx), errJobCanceled):
			return jobOutcome{state: "failed", failureReason: "job_canceled"}
		case err != nil:
			trace.Printf("ERROR: %v\n", err)
			outcome = jobOutcome{state: "failed", failureReason: "runner_system_failure"}
		case code != 0:
			outcome = jobOutcome{state: "failed", failureReason: "script_failure", exitCode: code}
		}
	}
	for _, step := range job.Steps {
		if step.Name != "after_script" || len(step.Script) == 0 || errors.Is(context.Cause(ctx), errAborted) {
			continue
		}
		trace.Printf("Running after_script\n")
		timeout := time.Duration(step.Timeout) * time.Second
		if timeout <= 0 {
			timeout = 5 * time.Minute
		}
		actx, cancel := context.WithTimeoutCause(context.Background(), timeout, errJobTimeout)
		code, err := runScript(actx, dir, env, step.Script, trace)
		cancel()
		if err != nil || code != 0 {
			trace.Printf("WARNING: after_script failed, but job will continue unaffected: exit status %d\n", code)
		}
	}
	if caches != nil && ctx.Err() == nil {
		caches.save(ctx, dir, env, outcome.state, trace)
	}
	return outcome
}

// runScript runs commands with bash as gitlab-runner's shell executor does:
// set -eo pipefail, each command echoed as "$ command" before it runs, the
// first failure ending the script with its exit code. The process group
// is killed when ctx ends.
func runScript(ctx context.Context, dir string, env, commands []string, out *jobTrace) (int, error) {
	var sb strings.Builder
	sb.WriteString("set -eo pipefail\nset +o noclobber\ncd " + bashQuote(dir) + "\n")
	for _, c := range commands {
		shown := c
		if first, _, multi := strings.Cut(strings.TrimSpace(c), "\n"); multi {
			shown = first + " # collapsed multi-line command"
		}
		sb.WriteString("echo " + bashQuote("$ "+shown) + "\n")
		sb.WriteString(c + "\n")
	}
	script, err := os.CreateTemp("", "gitlab-runner-standin-*.sh")
	if err != nil {
		return 0, fmt.Errorf("write the job script: %w", err)
	}
	defer os.Remove(script.Name())
	if _, err := script.WriteString(sb.String()); err != nil {
		script.Close()
		return 0, fmt.Errorf("write the job script: %w", err)
	}
	script.Close()

	cmd := exec.Command("bash", "--noprofile", "--norc", script.Name())
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	return runInGroup(ctx, cmd)
}

// runInGroup runs cmd in a process group of its own and returns its exit
// code; when ctx ends, the whole group (the command and whatever it
// started) gets SIGTERM, then SIGKILL 2 seconds later.
func runInGroup(ctx context.Context, cmd *exec.Cmd) (int, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode(), nil
	}
	return 0, err
}

// bashQuote is bash's $'...' quoting.
func bashQuote(s string) string {
	var b strings.Builder
	b.WriteString("$'")
	for _, r := range s {
		switch {
		case r == '\\' || r == '\'':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// cleanURL drops the credentials of a URL for logs.
func cleanURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + u[i+1:]
		}
	}
	return u
}
