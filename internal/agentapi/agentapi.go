// Package agentapi is the contract between a runner's agent and the rest
// of Gosling. The machine contract (machine.go, config.go): the agent's
// configuration (Config) and, per cloud and kind, the command lines,
// user-data and container settings the OpenTofu modules run it with
// (MachineContract), which package tofu renders without importing the
// agent. The wire contract with MotherGoose's agent endpoints
// (/agent/v1/runners/:id/...): the JSON bodies both sides read and write,
// and the agent's HTTP client. Every
// call authenticates with the machine's own agent credential
// ("Authorization: Bearer gsa-...", minted when the machine is provisioned,
// revoked at its teardown); the API compares it with the one stored for
// that runner, so a machine reports for itself only, and the GitLab runner
// token, which many machines may share, is no credential here.
//
//	POST /agent/v1/runners/:id/ready      Ready     -> 200 Pins
//	POST /agent/v1/runners/:id/heartbeat  Beat      -> 200 Pins
//	POST /agent/v1/runners/:id/jobs       JobReport -> 204
//	POST /agent/v1/runners/:id/interruption Interruption -> 204
//
// Errors answer {"error", "detail"} with 400 (bad body), 401 (unknown
// runner or wrong token, alike), 503 (store or Temporal unreachable:
// retry).
package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Paths under the API's base URL; %s is the runner ID, path-escaped.
const (
	PathReady     = "/agent/v1/runners/%s/ready"
	PathHeartbeat = "/agent/v1/runners/%s/heartbeat"
	PathJobs      = "/agent/v1/runners/%s/jobs"
	// PathInterruption takes the notice that the machine is being taken
	// away (Interruption).
	PathInterruption = "/agent/v1/runners/%s/interruption"
)

// Sources of an interruption notice.
const (
	// InterruptAWSSpot: EC2's Spot interruption notice, the instance
	// metadata's spot/instance-action (IMDSv2), about two minutes ahead.
	InterruptAWSSpot = "aws-spot"
	// InterruptShutdown: a shutdown the agent did not ask for (SIGTERM
	// from systemd, as Compute Cloud's ACPI shutdown of a preemptible VM
	// gives 30 seconds; an ECS stop of a Fargate Spot task, 120 seconds;
	// `gosling dev interrupt` on the local provider).
	InterruptShutdown = "shutdown"
)

// Interruption tells MotherGoose that the machine is being taken away by
// its cloud (a Spot or preemptible machine's capacity is reclaimed): the
// agent has stopped gitlab-runner from taking new jobs, and Jobs are the
// jobs it was running, which the machine will not finish. Deadline is
// when the machine goes (zero when unknown).
type Interruption struct {
	Source string `json:"source"`
	// Action is what the cloud will do (AWS's instance-action: stop,
	// terminate or hibernate); empty when it does not say.
	Action   string    `json:"action,omitempty"`
	Deadline time.Time `json:"deadline"`
	Jobs     []int64   `json:"jobs"`
	At       time.Time `json:"at"`
}

// Validate checks an interruption's fields.
func (i Interruption) Validate() error {
	if i.Source != InterruptAWSSpot && i.Source != InterruptShutdown {
		return fmt.Errorf("source %q: want %s or %s", i.Source, InterruptAWSSpot, InterruptShutdown)
	}
	for _, id := range i.Jobs {
		if id <= 0 {
			return errors.New("jobs must be GitLab job IDs (positive integers)")
		}
	}
	return nil
}

// Triggers of a ready report.
const (
	// TriggerStart: the agent started (a new machine, or a reboot).
	TriggerStart = "start"
	// TriggerResume: a dormant (Nadir) machine was resumed.
	TriggerResume = "resume"
	// TriggerInvoke: a serverless runner was invoked.
	TriggerInvoke = "invoke"
)

// Versions are what an agent runs.
type Versions struct {
	// Agent is the gosling binary's version.
	Agent string `json:"agent"`
	// GitLabRunner is gitlab-runner's version as `gitlab-runner --version`
	// prints it ("18.6.0"); empty before it first ran.
	GitLabRunner string `json:"gitlab_runner,omitempty"`
}

// Ready tells MotherGoose that the runner's token checked out with GitLab
// (POST /api/v4/runners/verify) and gitlab-runner runs with it.
type Ready struct {
	Trigger string `json:"trigger"`
	PID     int    `json:"pid"`
	Host    string `json:"host"`
	// TokenVersion is the version of the token's secret the agent read
	// and verified; empty when the backend cannot say.
	TokenVersion string    `json:"token_version,omitempty"`
	Versions     Versions  `json:"versions"`
	At           time.Time `json:"at"`
}

// Beat is a heartbeat: the agent is alive, runs these versions and these
// jobs.
type Beat struct {
	TokenVersion string   `json:"token_version,omitempty"`
	Versions     Versions `json:"versions"`
	// Jobs are the GitLab job IDs gitlab-runner is running.
	Jobs []int64 `json:"jobs"`
	// UpdateError says why the last self-update was refused (a bad
	// checksum, a binary that does not start); empty when none failed.
	UpdateError string    `json:"update_error,omitempty"`
	At          time.Time `json:"at"`
}

// Pins are the versions the Nest pins (MG/config.fly agent block), with
// the URLs to download them from; an empty version pins nothing. The
// checksum of a download is at its URL followed by ".sha256" (sha256sum
// format: the hex digest, then optionally the file name).
type Pins struct {
	Agent           string `json:"agent_version,omitempty"`
	AgentURL        string `json:"agent_url,omitempty"`
	GitLabRunner    string `json:"gitlab_runner_version,omitempty"`
	GitLabRunnerURL string `json:"gitlab_runner_url,omitempty"`
	// TokenVersion, in a heartbeat's answer, is the current version of the
	// runner's token secret ("" when its backend keeps none): an agent
	// that holds another one reloads its token.
	TokenVersion string `json:"token_version,omitempty"`
}

// Job statuses a JobReport carries, as GitLab names them.
const (
	JobRunning = "running"
	JobSuccess = "success"
	JobFailed  = "failed"
)

// JobReport is one change of a job gitlab-runner runs: it started
// (running) or ended (success or failed, with GitLab's failure_reason).
// The agent reads it from gitlab-runner's JSON log and, where it serves
// them, its listen_address (/debug/jobs/list and the gitlab_runner_jobs
// and gitlab_runner_failed_jobs_total metrics).
type JobReport struct {
	JobID         int64     `json:"job_id"`
	Status        string    `json:"status"`
	FailureReason string    `json:"failure_reason,omitempty"`
	At            time.Time `json:"at"`
}

// Validate checks a report's fields.
func (j JobReport) Validate() error {
	switch {
	case j.JobID <= 0:
		return errors.New("job_id must be a GitLab job ID (a positive integer)")
	case j.Status != JobRunning && j.Status != JobSuccess && j.Status != JobFailed:
		return fmt.Errorf("status %q: want %s, %s or %s", j.Status, JobRunning, JobSuccess, JobFailed)
	}
	return nil
}

// Finished tells whether the report ends the job.
func (j JobReport) Finished() bool { return j.Status == JobSuccess || j.Status == JobFailed }

// Error is an error answer of the agent endpoints.
type Error struct {
	StatusCode int    `json:"-"`
	Message    string `json:"error"`
	Detail     string `json:"detail,omitempty"`
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("MotherGoose answered %d %s: %s", e.StatusCode, e.Message, e.Detail)
	}
	return fmt.Sprintf("MotherGoose answered %d %s", e.StatusCode, e.Message)
}

// IsUnauthorized tells whether err is a 401: the runner is unknown to
// MotherGoose or its token is not the stored one (yet).
func IsUnauthorized(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusUnauthorized
}

// Client is the agent's side of the agent endpoints.
type Client struct {
	base     string
	runnerID string
	http     *http.Client
}

// NewClient returns a client of the API at baseURL (http(s)://host[:port]
// with an optional path prefix) for one runner. hc nil uses a client with
// a 30-second timeout.
func NewClient(baseURL, runnerID string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("MotherGoose API URL %q: want http(s)://host[:port]", baseURL)
	}
	if runnerID == "" {
		return nil, errors.New("agent API client: no runner ID")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: u.String(), runnerID: runnerID, http: hc}, nil
}

// Ready posts a ready report and returns the pins.
func (c *Client) Ready(ctx context.Context, credential string, r Ready) (Pins, error) {
	var p Pins
	err := c.post(ctx, PathReady, credential, r, &p)
	return p, err
}

// Heartbeat posts a beat and returns the pins.
func (c *Client) Heartbeat(ctx context.Context, credential string, b Beat) (Pins, error) {
	var p Pins
	err := c.post(ctx, PathHeartbeat, credential, b, &p)
	return p, err
}

// Job posts a job report.
func (c *Client) Job(ctx context.Context, credential string, j JobReport) error {
	return c.post(ctx, PathJobs, credential, j, nil)
}

// Interrupted posts an interruption notice.
func (c *Client) Interrupted(ctx context.Context, credential string, i Interruption) error {
	return c.post(ctx, PathInterruption, credential, i, nil)
}

func (c *Client) post(ctx context.Context, path, token string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	u := c.base + fmt.Sprintf(path, url.PathEscape(c.runnerID))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		e := &Error{StatusCode: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
		return e
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode the answer of %s: %w", path, err)
		}
	}
	return nil
}

// The invocation of a serverless runner: one HTTPS request whose answer
// comes when the runner is done, as Yandex Serverless Containers run work
// (the request lasts the job, at most the container's execution timeout,
// 60 minutes) and as the local provider's serverless runners copy them.
// The agent answers POST PathInvoke with an InvokeResult; GET PathHealth
// answers 200 once it serves.
const (
	PathInvoke = "/invoke"
	PathHealth = "/healthz"
)

// Invoke is the body of an invocation.
type Invoke struct {
	RunnerID string `json:"runner_id"`
	// WaitTimeoutSeconds is how long gitlab-runner waits for a job before
	// it gives up (run-single --wait-timeout); 0 takes the agent's setting.
	WaitTimeoutSeconds int `json:"wait_timeout_seconds,omitempty"`
}

// InvokeResult is the answer to an invocation: the jobs the runner ran
// and how gitlab-runner ended.
type InvokeResult struct {
	RunnerID string      `json:"runner_id"`
	Jobs     []JobReport `json:"jobs"`
	// ExitCode is gitlab-runner's exit status (-1 when it was killed).
	ExitCode   int       `json:"exit_code"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}
