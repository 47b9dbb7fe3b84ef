package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/workflows/contract"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
)

// envDevState names the state directory of a running `gosling dev`.
const envDevState = "GOSLING_DEV_STATE"

func devStateDir(getenv func(string) (string, bool)) string {
	if v, ok := getenv(envDevState); ok && v != "" {
		return v
	}
	return ".gosling"
}

// readDevState reads the dev.json a running `gosling dev` wrote.
func readDevState(dir string) (DevState, error) {
	var st DevState
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// SimulateRequest asks a running `gosling dev` to play one job through.
type SimulateRequest struct {
	Egg string `json:"egg"`
	// Tags are the job's tags (default: the egg's runner tags).
	Tags     []string `json:"tags,omitempty"`
	Duration string   `json:"duration,omitempty"`
	// Status is how the job ends: success (default), failed or canceled.
	Status string `json:"status,omitempty"`
}

// SimulateStep is one line of the NDJSON stream a simulation answers with.
type SimulateStep struct {
	Step    string `json:"step"`
	Message string `json:"message"`
	JobID   int64  `json:"job_id,omitempty"`
	Runner  string `json:"runner,omitempty"`
	Error   bool   `json:"error,omitempty"`
}

// simulator plays GitLab's side of a job against the running stack: it
// makes the job in the GitLab test server and sends its hooks to the API
// exactly as GitLab would.
type simulator struct {
	gl      *gitlabtest.Server
	store   store.Store
	tc      client.Client
	apiURL  string
	secrets *secrets.Resolver
	nest    func() *fly.Nest
	auth    *api.Authorizer
	// wait bounds each wait for the stack.
	wait time.Duration
}

func (s *simulator) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /dev/v1/simulate/job", s.simulateJob)
	return mux
}

func (s *simulator) simulateJob(w http.ResponseWriter, r *http.Request) {
	// The REST API's own check, with its tokens.
	if err := s.auth.Authorize(r.Context(), r.Header.Get("Authorization")); err != nil {
		http.Error(w, `{"error":"unauthorized","detail":"send the dev API token as a bearer token"}`, http.StatusUnauthorized)
		return
	}
	var req SimulateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, `{"error":"bad request","detail":"the body must be a JSON SimulateRequest"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	emit := func(st SimulateStep) {
		_ = enc.Encode(st)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	if err := s.run(r.Context(), req, emit); err != nil {
		emit(SimulateStep{Step: "failed", Message: err.Error(), Error: true})
	}
}

func (s *simulator) run(ctx context.Context, req SimulateRequest, emit func(SimulateStep)) error {
	if s.gl == nil {
		return errors.New("simulation needs the GitLab test server; with a real GitLab, run a pipeline there")
	}
	nest := s.nest()
	egg, ok := nest.Egg(req.Egg)
	if !ok {
		var names []string
		for _, e := range nest.Eggs {
			names = append(names, e.Name)
		}
		return fmt.Errorf("no egg %q in the Nest (eggs: %s)", req.Egg, strings.Join(names, ", "))
	}
	dur := 5 * time.Second
	if req.Duration != "" {
		d, err := time.ParseDuration(req.Duration)
		if err != nil || d < 0 {
			return fmt.Errorf("duration %q: use a Go duration such as 10s", req.Duration)
		}
		dur = d
	}
	final := req.Status
	if final == "" {
		final = "success"
	}
	if !slices.Contains([]string{"success", "failed", "canceled"}, final) {
		return fmt.Errorf("status %q: use success, failed or canceled", final)
	}
	tags := req.Tags
	if tags == nil {
		tags = egg.Runner.Tags
	}
	projects := testProjectsOf(s.gl, *egg)
	if len(projects) == 0 {
		return fmt.Errorf("egg %s has no project in the GitLab test server", egg.Name)
	}
	project := projects[0]
	secret, err := s.secrets.Resolve(ctx, egg.GitLab.WebhookSecret)
	if err != nil {
		return err
	}
	job := s.gl.AddJob(project.ID, gitlabtest.JobSpec{Name: "simulated", Stage: "test", Tags: tags})
	emit(SimulateStep{Step: "job", JobID: job.ID, Message: fmt.Sprintf("job %d created in %s (GitLab test server), tags [%s]", job.ID, project.PathWithNamespace, strings.Join(tags, ", "))})
	if ok, why := contract.TagsMatch(egg.Runner, tags); !ok {
		emit(SimulateStep{Step: "tags", JobID: job.ID, Message: "no runner of this egg can take it: " + why})
	}
	if err := s.hook(ctx, job.ID, secret, emit); err != nil {
		return err
	}

	kind, _ := contract.ChooseKind(*egg, "", fly.CloudLocal, false)
	pooled := kind != fly.RunnerServerless
	emit(SimulateStep{Step: "waiting", JobID: job.ID, Message: "waiting for a runner (watch it in the Temporal UI)"})
	runner, err := s.waitRunner(ctx, egg, job.ID, pooled)
	if err != nil {
		return err
	}
	emit(SimulateStep{Step: "runner", JobID: job.ID, Runner: runner.ID, Message: fmt.Sprintf("runner %s is %s (GitLab runner #%d, %s)", runner.ID, runner.State, runner.GitLabRunnerID, runner.Kind)})

	s.gl.SetJobStatus(project.ID, job.ID, "running", runner.GitLabRunnerID)
	if err := s.hook(ctx, job.ID, secret, emit); err != nil {
		return err
	}
	select {
	case <-time.After(dur):
	case <-ctx.Done():
		return ctx.Err()
	}
	s.gl.SetJobStatus(project.ID, job.ID, final, runner.GitLabRunnerID)
	if err := s.hook(ctx, job.ID, secret, emit); err != nil {
		return err
	}
	if pooled {
		emit(SimulateStep{Step: "done", JobID: job.ID, Runner: runner.ID, Message: fmt.Sprintf("the runner stays in Apex for the next job; idle for %s it sleeps in Nadir", egg.Apex.IdleTimeout)})
		return nil
	}
	if err := s.waitState(ctx, runner.ID, store.StateTerminated); err != nil {
		return err
	}
	emit(SimulateStep{Step: "done", JobID: job.ID, Runner: runner.ID, Message: "runner destroyed: its process, tofu resources and GitLab runner are gone"})
	return nil
}

// hook sends the job's current Job Hook, as GitLab does.
func (s *simulator) hook(ctx context.Context, jobID int64, secret string, emit func(SimulateStep)) error {
	spec, ok := s.gl.JobHook(jobID)
	if !ok {
		return fmt.Errorf("job %d vanished from the GitLab test server", jobID)
	}
	resp, err := s.gl.Deliver(ctx, s.apiURL+"/webhooks/gitlab", gitlabtest.EventJob, secret, gitlabtest.JobHookPayload(spec), gitlabtest.NewUUID())
	if err != nil {
		return fmt.Errorf("deliver the %s Job Hook: %w", spec.Status, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	emit(SimulateStep{Step: "webhook", JobID: jobID, Message: fmt.Sprintf("Job Hook %s -> %d %s", spec.Status, resp.StatusCode, bytes.TrimSpace(body)), Error: resp.StatusCode >= 300})
	if resp.StatusCode >= 300 {
		return fmt.Errorf("the API refused the %s Job Hook", spec.Status)
	}
	return nil
}

// waitRunner waits until a runner in service holds the job.
func (s *simulator) waitRunner(ctx context.Context, egg *fly.Egg, jobID int64, pooled bool) (store.Runner, error) {
	var found store.Runner
	err := s.poll(ctx, func() (bool, error) {
		id := ""
		if pooled {
			v, err := s.tc.QueryWorkflow(ctx, contract.PoolWorkflowID(egg.Name), "", contract.QueryPoolStatus)
			if err != nil {
				return false, nil
			}
			var st contract.PoolStatus
			if err := v.Get(&st); err != nil {
				return false, err
			}
			for _, r := range st.Runners {
				if r.State == contract.PoolApex && slices.Contains(r.Jobs, jobID) {
					id = r.ID
				}
			}
		} else {
			id = contract.RunnerIDFor(egg.Name, contract.RunnerWorkflowID(egg.GitLab.Host, jobID))
		}
		if id == "" {
			return false, nil
		}
		r, err := s.store.GetRunner(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		switch r.State {
		case store.StateActive:
			found = *r
			return true, nil
		case store.StateFailed, store.StateTerminated:
			return false, fmt.Errorf("runner %s ended %s: %s", r.ID, r.State, r.Reason)
		}
		return false, nil
	})
	return found, err
}

func (s *simulator) waitState(ctx context.Context, runnerID string, want store.RunnerState) error {
	return s.poll(ctx, func() (bool, error) {
		r, err := s.store.GetRunner(ctx, runnerID)
		if err != nil {
			return false, err
		}
		return r.State == want, nil
	})
}

func (s *simulator) poll(ctx context.Context, done func() (bool, error)) error {
	wait := s.wait
	if wait == 0 {
		wait = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: see the Temporal UI and the dev log", wait)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// NewCmdDevSimulate builds `gosling dev simulate`.
func NewCmdDevSimulate(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Play GitLab's side of a job against a running `gosling dev`",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newCmdDevSimulateJob(f))
	return cmd
}

func newCmdDevSimulateJob(f *Factory) *cobra.Command {
	var req SimulateRequest
	var stateDir string
	var asJSON bool
	var dur time.Duration
	cmd := &cobra.Command{
		Use:   "job --egg NAME",
		Short: "Send a job through the whole loop: webhook, workflow, tofu, runner, teardown",
		Long: `Simulate job makes a job in the GitLab test server of a running
` + "`gosling dev`" + ` and sends its Job Hooks to the API exactly as GitLab does:
pending (the demand for a runner), running once a runner holds it, and
the final status after --duration. It prints each step as it happens.

A VM egg's job is served by the egg's pool: the runner stays for the next
job and sleeps in Nadir when idle. A serverless egg's job gets its own
runner, destroyed when the job ends.`,
		Example: `  gosling dev simulate job --egg web-app
  gosling dev simulate job --egg web-app --tags docker,linux --duration 30s --status failed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Egg == "" {
				return flagErrorf("--egg is required")
			}
			req.Duration = dur.String()
			if !cmd.Flags().Changed("tags") {
				req.Tags = nil
			}
			st, err := readDevState(stateDir)
			if err != nil {
				return fmt.Errorf("no running `gosling dev` found in %s (%v): start one with `make run`", stateDir, err)
			}
			return simulateJob(cmd.Context(), f.IO, st, req, asJSON)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Egg, "egg", "", "the egg whose project runs the job (required)")
	fl.StringSliceVar(&req.Tags, "tags", nil, "the job's tags (default: the egg's runner tags)")
	fl.DurationVar(&dur, "duration", 5*time.Second, "how long the job runs")
	fl.StringVar(&req.Status, "status", "success", "how the job ends: success, failed or canceled")
	fl.StringVar(&stateDir, "state-dir", devStateDir(f.Getenv), "state directory of the running `gosling dev` ($"+envDevState+")")
	fl.BoolVar(&asJSON, "json", false, "print the steps as JSON lines")
	return cmd
}

func simulateJob(ctx context.Context, ios *IOStreams, st DevState, req SimulateRequest, asJSON bool) error {
	body, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, st.APIURL+"/dev/v1/simulate/job", bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Authorization", "Bearer "+st.APIToken)
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return fmt.Errorf("reach `gosling dev` at %s: %w (is it still running?)", st.APIURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("gosling dev answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	failed := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var step SimulateStep
		if err := json.Unmarshal(sc.Bytes(), &step); err != nil {
			return fmt.Errorf("unexpected answer: %s", sc.Text())
		}
		failed = failed || step.Step == "failed"
		if asJSON {
			fmt.Fprintln(ios.Out, sc.Text())
			continue
		}
		fmt.Fprintf(ios.Out, "%s %-8s %s\n", time.Now().Format("15:04:05"), step.Step, step.Message)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if failed {
		return errSilent(ExitError)
	}
	return nil
}
