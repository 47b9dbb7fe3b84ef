package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// jobWatcher learns which jobs gitlab-runner runs and how they end from
// its listen_address, as an operator's monitoring would: GET
// /debug/jobs/list names the running jobs (one line each: "url=.../-/jobs/ID
// state=..." in its second format, the default since GitLab Runner 13,
// "id=ID url=<project> state=..." in the first, 12.x's default), and GET
// /metrics counts them (gitlab_runner_jobs{state=...})
// and their failures by reason (gitlab_runner_failed_jobs_total
// {failure_reason=...}). A job that leaves the list ended: failed when a
// failure was counted since the last look, else success.
type jobWatcher struct {
	hc      *http.Client
	running []int64
	failed  map[string]float64
	primed  bool
}

func newJobWatcher() *jobWatcher {
	return &jobWatcher{hc: &http.Client{Timeout: 5 * time.Second}, failed: map[string]float64{}}
}

// jobListRE finds a job's ID in either format of /debug/jobs/list.
var jobListRE = regexp.MustCompile(`(?:^|\s)id=(\d+)\b|/-/jobs/(\d+)\b`)

// poll reads gitlab-runner's listen address and returns what changed.
func (w *jobWatcher) poll(ctx context.Context, listen string) ([]agentapi.JobReport, error) {
	if listen == "" {
		return nil, nil
	}
	ids, err := w.list(ctx, listen)
	if err != nil {
		return nil, err
	}
	failed, err := w.failures(ctx, listen)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	var out []agentapi.JobReport
	for _, id := range ids {
		if !slices.Contains(w.running, id) {
			out = append(out, agentapi.JobReport{JobID: id, Status: agentapi.JobRunning, At: now})
		}
	}
	// New failures by reason since the last look.
	var reasons []string
	for reason, n := range failed {
		for d := n - w.failed[reason]; d >= 1 && w.primed; d-- {
			reasons = append(reasons, reason)
		}
	}
	slices.Sort(reasons)
	for _, id := range w.running {
		if slices.Contains(ids, id) {
			continue
		}
		r := agentapi.JobReport{JobID: id, Status: agentapi.JobSuccess, At: now}
		if len(reasons) > 0 {
			r.Status, r.FailureReason = agentapi.JobFailed, reasons[0]
			reasons = reasons[1:]
		}
		out = append(out, r)
	}
	w.running, w.failed, w.primed = ids, failed, true
	return out, nil
}

// finishAll reports every job still known as ended (gitlab-runner exited).
func (w *jobWatcher) finishAll(listen string) []agentapi.JobReport {
	// One last look: the final counters tell failures apart.
	if listen != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if out, err := w.poll(ctx, listen); err == nil {
			return out
		}
	}
	var out []agentapi.JobReport
	for _, id := range w.running {
		out = append(out, agentapi.JobReport{JobID: id, Status: agentapi.JobFailed, FailureReason: "runner_system_failure", At: time.Now().UTC()})
	}
	w.running = nil
	return out
}

// jobs are the running job IDs, as last seen.
func (w *jobWatcher) jobs() []int64 { return slices.Clone(w.running) }

func (w *jobWatcher) get(ctx context.Context, listen, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listen+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return resp.Body, nil
}

func (w *jobWatcher) list(ctx context.Context, listen string) ([]int64, error) {
	body, err := w.get(ctx, listen, "/debug/jobs/list")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	var ids []int64
	sc := bufio.NewScanner(io.LimitReader(body, 1<<20))
	for sc.Scan() {
		if m := jobListRE.FindStringSubmatch(sc.Text()); m != nil {
			if id, err := strconv.ParseInt(m[1]+m[2], 10, 64); err == nil && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids, sc.Err()
}

// failures sums gitlab_runner_failed_jobs_total by failure_reason.
func (w *jobWatcher) failures(ctx context.Context, listen string) (map[string]float64, error) {
	body, err := w.get(ctx, listen, "/metrics")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("gitlab-runner metrics: %w", err)
	}
	out := map[string]float64{}
	if f, ok := fams["gitlab_runner_failed_jobs_total"]; ok {
		for _, m := range f.GetMetric() {
			reason := "unknown_failure"
			for _, l := range m.GetLabel() {
				if l.GetName() == "failure_reason" {
					reason = l.GetValue()
				}
			}
			out[reason] += m.GetCounter().GetValue()
		}
	}
	return out, nil
}

// outputWatcher reads gitlab-runner's log as it is written and turns the
// lines that mark a job's start and end into reports, so even a job that
// starts and ends between two looks at the metrics is told, and a runner
// that serves no metrics (run-single before GitLab Runner 17) is followed
// at all. The agent runs gitlab-runner with --log-format json: a line is
// one object whose msg says what happened and whose job field says to
// which job (gitlab-runner's logrus fields; the stand-in's slog
// attributes). Lines of text (runner or text format, colours stripped) are
// read too, for a gitlab-runner run by other means. It knows
// gitlab-runner's own messages ("Checking for jobs... received", "Job
// succeeded", "Job failed: ...") and the stand-in's ("Submitting job to
// coordinator... ok" with state=success|failed).
type outputWatcher struct {
	events  chan agentapi.JobReport
	partial []byte
}

func newOutputWatcher() *outputWatcher {
	return &outputWatcher{events: make(chan agentapi.JobReport, 256)}
}

var (
	ansiRE         = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)
	jobFieldRE     = regexp.MustCompile(`\bjob="?(\d+)`)
	stateFieldRE   = regexp.MustCompile(`\bstate="?(success|failed)\b`)
	failReasonRE   = regexp.MustCompile(`\bfailure_reason="?([a-z_]+)`)
	exitStatusRE   = regexp.MustCompile(`exit (?:status|code) \d+`)
	timeoutRE      = regexp.MustCompile(`execution took longer than`)
	jobReceivedRE  = regexp.MustCompile(`(?i)checking for jobs\.\.\. ?received`)
	jobSucceededRE = regexp.MustCompile(`Job succeeded`)
	jobFailedRE    = regexp.MustCompile(`Job failed`)
	jobSubmittedRE = regexp.MustCompile(`Submitting job to coordinator\.\.\. ?ok`)
)

func (w *outputWatcher) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 {
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

// logEvent is one line of gitlab-runner's log: its message, the job it
// names (0 for none) and the fields that qualify it.
type logEvent struct {
	msg, state, failureReason string
	job                       int64
}

// parseLogLine reads a JSON line by its fields, any other line (colours
// stripped) by its key=value pairs.
func parseLogLine(l string) logEvent {
	if strings.HasPrefix(strings.TrimSpace(l), "{") {
		var f map[string]any
		if json.Unmarshal([]byte(l), &f) == nil {
			ev := logEvent{}
			ev.msg, _ = f["msg"].(string)
			ev.state, _ = f["state"].(string)
			ev.failureReason, _ = f["failure_reason"].(string)
			switch v := f["job"].(type) {
			case float64:
				ev.job = int64(v)
			case string:
				ev.job, _ = strconv.ParseInt(v, 10, 64)
			}
			return ev
		}
	}
	l = ansiRE.ReplaceAllString(l, "")
	ev := logEvent{msg: l}
	if m := jobFieldRE.FindStringSubmatch(l); m != nil {
		ev.job, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := stateFieldRE.FindStringSubmatch(l); m != nil {
		ev.state = m[1]
	}
	if m := failReasonRE.FindStringSubmatch(l); m != nil {
		ev.failureReason = m[1]
	}
	return ev
}

func (w *outputWatcher) line(l string) {
	ev := parseLogLine(l)
	if ev.job <= 0 {
		return
	}
	r := agentapi.JobReport{JobID: ev.job, At: time.Now().UTC()}
	reason := func() string {
		switch {
		case ev.failureReason != "":
			return ev.failureReason
		case timeoutRE.MatchString(ev.msg):
			return "job_execution_timeout"
		case exitStatusRE.MatchString(ev.msg):
			return "script_failure"
		}
		return "unknown_failure"
	}
	switch {
	case jobReceivedRE.MatchString(ev.msg):
		r.Status = agentapi.JobRunning
	case jobSubmittedRE.MatchString(ev.msg):
		if ev.state != agentapi.JobSuccess && ev.state != agentapi.JobFailed {
			return
		}
		r.Status = ev.state
		if r.Status == agentapi.JobFailed {
			r.FailureReason = reason()
		}
	case jobSucceededRE.MatchString(ev.msg):
		r.Status = agentapi.JobSuccess
	case jobFailedRE.MatchString(ev.msg):
		r.Status, r.FailureReason = agentapi.JobFailed, reason()
	default:
		return
	}
	select {
	case w.events <- r:
	default:
	}
}
