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

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/apiclient"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/spf13/cobra"
)

// readDevState reads the dev.json a running `gosling dev` wrote.
func readDevState(dir string) (DevState, error) {
	var st DevState
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// SimulateRequest asks a running `gosling dev` to run one job through.
type SimulateRequest struct {
	Egg string `json:"egg"`
	// Tags are the job's tags (default: the egg's runner tags).
	Tags     []string `json:"tags,omitempty"`
	Duration string   `json:"duration,omitempty"`
	// Status is how the job ends: success (default), failed (its script
	// exits 1) or canceled (canceled in GitLab while it runs).
	Status string `json:"status,omitempty"`
}

// PipelineRequest asks a running `gosling dev` to run a pipeline from a
// .gitlab-ci.yml in one of an egg's projects.
type PipelineRequest struct {
	Egg string `json:"egg"`
	// CIConfig is the .gitlab-ci.yml's content.
	CIConfig string `json:"ci_config"`
	// Ref is the branch (main when empty).
	Ref string `json:"ref,omitempty"`
}

// SimulateStep is one line of the NDJSON stream a simulation answers with.
type SimulateStep struct {
	Step    string `json:"step"`
	Message string `json:"message"`
	JobID   int64  `json:"job_id,omitempty"`
	Job     string `json:"job,omitempty"`
	Runner  string `json:"runner,omitempty"`
	// Status is a job's or, on the last step, the pipeline's status.
	Status string `json:"status,omitempty"`
	// AllowedToFail marks a failed job whose allow_failure lets the
	// pipeline succeed.
	AllowedToFail bool `json:"allowed_to_fail,omitempty"`
	Error         bool `json:"error,omitempty"`
}

// simulator plays GitLab's side against the running stack: it makes
// pipelines in the GitLab test server, which sends their Job and Pipeline
// Hooks to the API by itself, as GitLab does; Gosling's runners (agents
// supervising the gitlab-runner stand-in) take the jobs through the runner
// API and run their scripts; the simulator streams the jobs' logs back.
type simulator struct {
	gl    *gitlabtest.Server
	store store.Store
	nest  func() *fly.Nest
	auth  *api.Authorizer
	// api is the dev API itself: why a job waits is what it answers.
	api *apiclient.Client
	// wait bounds each wait for the stack.
	wait time.Duration
}

func (s *simulator) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /dev/v1/simulate/job", s.stream(func(ctx context.Context, body []byte, emit func(SimulateStep)) error {
		var req SimulateRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return fmt.Errorf("the body must be a JSON SimulateRequest: %w", err)
		}
		return s.runJob(ctx, req, emit)
	}))
	mux.HandleFunc("POST /dev/v1/simulate/pipeline", s.stream(func(ctx context.Context, body []byte, emit func(SimulateStep)) error {
		var req PipelineRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return fmt.Errorf("the body must be a JSON PipelineRequest: %w", err)
		}
		return s.runPipeline(ctx, req, emit)
	}))
	return mux
}

// stream answers a simulation with its steps as NDJSON, flushed as they
// happen.
func (s *simulator) stream(run func(ctx context.Context, body []byte, emit func(SimulateStep)) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The REST API's own check, with its tokens.
		if err := s.auth.Authorize(r.Context(), r.Header.Get("Authorization")); err != nil {
			http.Error(w, `{"error":"unauthorized","detail":"send the dev API token as a bearer token"}`, http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
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
		if err := run(r.Context(), body, emit); err != nil {
			emit(SimulateStep{Step: "failed", Message: err.Error(), Error: true})
		}
	}
}

// eggProject is the egg and the first of its projects in the test server.
func (s *simulator) eggProject(name string) (*fly.Egg, gitlabtest.Project, error) {
	if s.gl == nil {
		return nil, gitlabtest.Project{}, errors.New("simulation needs the GitLab test server; with a real GitLab, run a pipeline there")
	}
	nest := s.nest()
	egg, ok := nest.Egg(name)
	if !ok {
		var names []string
		for _, e := range nest.Eggs {
			names = append(names, e.Name)
		}
		return nil, gitlabtest.Project{}, fmt.Errorf("no egg %q in the Nest (eggs: %s)", name, strings.Join(names, ", "))
	}
	projects := testProjectsOf(s.gl, *egg)
	if len(projects) == 0 {
		return nil, gitlabtest.Project{}, fmt.Errorf("egg %s has no project in the GitLab test server", egg.Name)
	}
	return egg, projects[0], nil
}

func (s *simulator) runJob(ctx context.Context, req SimulateRequest, emit func(SimulateStep)) error {
	egg, project, err := s.eggProject(req.Egg)
	if err != nil {
		return err
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
	script := []string{
		`echo "Simulated job of egg ` + egg.Name + ` on $(hostname), runner $CI_RUNNER_DESCRIPTION"`,
		fmt.Sprintf("sleep %.3f", dur.Seconds()),
	}
	if final == "failed" {
		script = append(script, `echo "failing on purpose (--status failed)"`, "exit 1")
	} else {
		script = append(script, `echo "done"`)
	}
	p, err := s.gl.CreatePipeline(project.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "simulated", Stage: "test", Tags: tags, Script: script}}})
	if err != nil {
		return err
	}
	job := s.gl.PipelineJobs(p.ID)[0]
	emit(SimulateStep{Step: "pipeline", JobID: job.ID, Job: job.Name, Message: fmt.Sprintf("pipeline %d with job %d created in %s (GitLab test server), tags [%s]; its hooks go to the API", p.ID, job.ID, project.PathWithNamespace, strings.Join(tags, ", "))})
	if ok, why := contract.TagsMatch(egg.Runner, tags); !ok {
		emit(SimulateStep{Step: "tags", JobID: job.ID, Message: "no runner of this egg can take it: " + why})
	}
	var onRunning func(gitlabtest.Job)
	if final == "canceled" {
		onRunning = func(j gitlabtest.Job) {
			time.AfterFunc(dur/2, func() { _ = s.gl.CancelJob(j.ID) })
		}
	}
	return s.follow(ctx, egg, p.ID, onRunning, emit)
}

func (s *simulator) runPipeline(ctx context.Context, req PipelineRequest, emit func(SimulateStep)) error {
	egg, project, err := s.eggProject(req.Egg)
	if err != nil {
		return err
	}
	if _, err := gitlabtest.ParseCIConfig([]byte(req.CIConfig)); err != nil {
		return fmt.Errorf(".gitlab-ci.yml: %w", err)
	}
	ref := req.Ref
	if ref == "" {
		ref = "main"
	}
	s.gl.PutFile(project.ID, gitlabtest.CIConfigPath, []byte(req.CIConfig))
	p, err := s.gl.CreatePipelineFromCIConfig(project.ID, ref, nil)
	if err != nil {
		return err
	}
	var names []string
	for _, j := range s.gl.PipelineJobs(p.ID) {
		names = append(names, fmt.Sprintf("%s (%s)", j.Name, j.Stage))
	}
	emit(SimulateStep{Step: "pipeline", Message: fmt.Sprintf("pipeline %d created in %s (GitLab test server): %s", p.ID, project.PathWithNamespace, strings.Join(names, ", "))})
	return s.follow(ctx, egg, p.ID, nil, emit)
}

func finishedStatus(st string) bool {
	switch st {
	case "success", "failed", "canceled", "skipped":
		return true
	}
	return false
}

// follow streams a pipeline's jobs: who takes each, its log as the runner
// sends it (PATCH /jobs/:id/trace), its final status; then what became of
// the runners (a serverless one is destroyed, a pool's stays).
func (s *simulator) follow(ctx context.Context, egg *fly.Egg, pipelineID int64, onRunning func(gitlabtest.Job), emit func(SimulateStep)) error {
	taken := map[int64]bool{}
	done := map[int64]bool{}
	offsets := map[int64]int{}
	partial := map[int64]string{}
	var runners []string
	var status string
	emit(SimulateStep{Step: "waiting", Message: "waiting for a runner (watch the workflows in the Temporal UI)"})
	told := map[int64]bool{}
	var lastAsked time.Time
	logLines := func(j gitlabtest.Job, flush bool) {
		tr := s.gl.Trace(j.ID)
		if len(tr) > offsets[j.ID] {
			partial[j.ID] += string(tr[offsets[j.ID]:])
			offsets[j.ID] = len(tr)
		}
		// As GitLab's log viewer shows it: no colour codes, no section
		// markers; a line that held nothing else is left out.
		emitLine := func(line string) {
			plain := gitlab.PlainLogLine(line)
			if plain == "" && line != "" && line != "\r" {
				return
			}
			emit(SimulateStep{Step: "log", JobID: j.ID, Job: j.Name, Message: plain})
		}
		for {
			line, rest, ok := strings.Cut(partial[j.ID], "\n")
			if !ok {
				break
			}
			partial[j.ID] = rest
			emitLine(line)
		}
		if flush && partial[j.ID] != "" {
			emitLine(partial[j.ID])
			partial[j.ID] = ""
		}
	}
	err := s.poll(ctx, func() (bool, error) {
		p, ok := s.gl.Pipeline(pipelineID)
		if !ok {
			return false, fmt.Errorf("pipeline %d vanished from the GitLab test server", pipelineID)
		}
		jobs := s.gl.PipelineJobs(pipelineID)
		for _, j := range jobs {
			if j.RunnerID != 0 && !taken[j.ID] {
				// The GitLab runner is the egg's, shared by its machines
				// (runner managers): the machine that took the job is the
				// one whose agent reported it. Wait for that report while
				// the job runs.
				var machine string
				if rec, err := s.store.GetJob(ctx, egg.GitLab.Host, j.ID); err == nil {
					machine = rec.RunnerID
				}
				if machine == "" && !finishedStatus(j.Status) {
					continue
				}
				taken[j.ID] = true
				msg := fmt.Sprintf("job %d (%s) taken by GitLab runner #%d", j.ID, j.Name, j.RunnerID)
				id := ""
				if r, err := s.store.GetRunner(ctx, machine); machine != "" && err == nil {
					id = r.ID
					msg = fmt.Sprintf("job %d (%s) taken by runner %s (GitLab runner #%d, %s, %s)", j.ID, j.Name, r.ID, j.RunnerID, r.Kind, r.State)
					if !slices.Contains(runners, r.ID) {
						runners = append(runners, r.ID)
					}
				}
				emit(SimulateStep{Step: "runner", JobID: j.ID, Job: j.Name, Runner: id, Message: msg})
				if onRunning != nil {
					onRunning(j)
				}
			}
			logLines(j, false)
			if finishedStatus(j.Status) && !done[j.ID] {
				done[j.ID] = true
				logLines(j, true)
				msg := fmt.Sprintf("job %d (%s): %s", j.ID, j.Name, j.Status)
				if j.FailureReason != "" {
					msg += " (" + j.FailureReason + ")"
				}
				allowed := j.Status == "failed" && j.AllowFailure
				if allowed {
					msg += ", allowed to fail"
				}
				emit(SimulateStep{Step: "job", JobID: j.ID, Job: j.Name, Status: j.Status, Message: msg, AllowedToFail: allowed})
			}
		}
		if time.Since(lastAsked) >= time.Second {
			lastAsked = time.Now()
			s.whyWaiting(ctx, egg, jobs, told, emit)
			if err := blocked(egg.Name, jobs, told); err != nil {
				return false, err
			}
		}
		if !finishedStatus(p.Status) {
			return false, nil
		}
		for _, j := range jobs {
			if !done[j.ID] {
				return false, nil
			}
		}
		status = p.Status
		return true, nil
	})
	if err != nil {
		return err
	}
	kind, _ := contract.ChooseKind(*egg, "", fly.CloudLocal, false)
	if kind != fly.RunnerServerless {
		emit(SimulateStep{Step: "done", Status: status, Runner: strings.Join(runners, ","), Message: fmt.Sprintf("pipeline %s; the runner stays in Apex for the next job; idle for %s it sleeps in Nadir", status, egg.Apex.IdleTimeout)})
		return nil
	}
	for _, id := range runners {
		if err := s.waitState(ctx, id, store.StateTerminated); err != nil {
			return err
		}
	}
	emit(SimulateStep{Step: "done", Status: status, Runner: strings.Join(runners, ","), Message: fmt.Sprintf("pipeline %s; runner destroyed: its process, tofu resources and GitLab runner are gone", status)})
	return nil
}

// whyWaiting says, once per job, why a pending job of the pipeline gets no
// runner: the reason the egg's pool or, for a serverless egg, its gate
// gives in its status, as the REST API answers it (GET
// /api/v1/pools/:egg or /api/v1/gates/:egg, field ignored).
func (s *simulator) whyWaiting(ctx context.Context, egg *fly.Egg, jobs []gitlabtest.Job, told map[int64]bool, emit func(SimulateStep)) {
	if s.api == nil {
		return
	}
	pending := map[int64]gitlabtest.Job{}
	for _, j := range jobs {
		if j.Status == "pending" && j.RunnerID == 0 && !told[j.ID] {
			pending[j.ID] = j
		}
	}
	if len(pending) == 0 {
		return
	}
	var ignored []contract.IgnoredJob
	if contract.UsesPool(*egg) {
		st, err := s.api.GetPool(ctx, egg.Name)
		if err != nil {
			return
		}
		ignored = st.Ignored
	} else {
		st, err := s.api.GetGate(ctx, egg.Name)
		if err != nil {
			return
		}
		ignored = st.Ignored
	}
	for _, ig := range ignored {
		if j, ok := pending[ig.JobID]; ok && !told[j.ID] {
			told[j.ID] = true
			emit(SimulateStep{Step: "waiting", JobID: j.ID, Job: j.Name, Message: fmt.Sprintf("job %d (%s) gets no runner: %s", j.ID, j.Name, ig.Reason)})
		}
	}
}

// blocked is an error when the pipeline can go no further: no job runs,
// and a pending job is one the egg's pool or gate said it gives no runner
// (told, by whyWaiting), the rest waiting for it or done. The job stays
// pending in GitLab, where another runner could take it; here none will.
func blocked(egg string, jobs []gitlabtest.Job, told map[int64]bool) error {
	var stuck []string
	for _, j := range jobs {
		switch {
		case finishedStatus(j.Status), j.Status == "created", j.Status == "manual", j.Status == "scheduled":
		case j.Status == "pending" && j.RunnerID == 0 && told[j.ID]:
			stuck = append(stuck, fmt.Sprintf("%d (%s)", j.ID, j.Name))
		default:
			return nil
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	return fmt.Errorf("no runner of egg %s will take job %s (the reason is above): it stays pending in GitLab; give the job tags the egg's runners have, or change the egg's runner block", egg, strings.Join(stuck, ", "))
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
	cmd.AddCommand(NewCmdDevSimulateJob(f, nil))
	return cmd
}

// DevSimulateJobOptions are the inputs of `gosling dev simulate job`.
type DevSimulateJobOptions struct {
	IO       *IOStreams
	Request  SimulateRequest
	StateDir string
	JSON     bool
}

// NewCmdDevSimulateJob builds `gosling dev simulate job`.
func NewCmdDevSimulateJob(f *Factory, runF func(*DevSimulateJobOptions) error) *cobra.Command {
	opts := &DevSimulateJobOptions{IO: f.IO}
	var dur time.Duration
	cmd := &cobra.Command{
		Use:   "job --egg NAME",
		Short: "Run a job through the whole loop: webhook, workflow, tofu, runner, its script, teardown",
		Long: `Simulate job makes a pipeline of one job in the GitLab test server of a
running ` + "`gosling dev`" + `; the test server sends its Job and Pipeline Hooks to
the API as GitLab does. A Gosling runner (its agent supervising the
gitlab-runner the dev runs: the real GitLab Runner given by gosling dev
--gitlab-runner, as make run does when bin/gitlab-runner is built, else the
gitlab-runner STAND-IN; the dev's banner says which) takes the job through
GitLab's runner API and runs its script, which prints a line, sleeps
--duration and ends as --status says; the job's log comes back through the
runner API and is printed here.

A VM egg's job is served by the egg's pool: the runner stays for the next
job and sleeps in Nadir when idle. A serverless egg's job gets its own
runner, destroyed when the job ends.`,
		Example: `  gosling dev simulate job --egg web-app
  gosling dev simulate job --egg web-app --tags docker,linux --duration 30s --status failed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Request.Egg == "" {
				return flagErrorf("--egg is required")
			}
			opts.Request.Duration = dur.String()
			if !cmd.Flags().Changed("tags") {
				opts.Request.Tags = nil
			}
			if runF != nil {
				return runF(opts)
			}
			st, err := findDev(f.Getenv, opts.StateDir, true)
			if err != nil {
				return err
			}
			want := opts.Request.Status
			if want == "" {
				want = "success"
			}
			return streamSimulation(cmd.Context(), opts.IO, st, "/dev/v1/simulate/job", opts.Request, opts.JSON, want)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Request.Egg, "egg", "", "the egg whose project runs the job (required)")
	fl.StringSliceVar(&opts.Request.Tags, "tags", nil, "the job's tags (default: the egg's runner tags)")
	fl.DurationVar(&dur, "duration", 5*time.Second, "how long the job's script sleeps")
	fl.StringVar(&opts.Request.Status, "status", "success", "how the job ends: success, failed (its script exits 1) or canceled")
	fl.StringVar(&opts.StateDir, "state-dir", "", devStateUsage)
	fl.BoolVar(&opts.JSON, "json", false, "print the steps as JSON lines")
	return cmd
}

// DevPipelineOptions are the inputs of `gosling dev pipeline`.
type DevPipelineOptions struct {
	IO       *IOStreams
	File     string
	Request  PipelineRequest
	StateDir string
	JSON     bool
}

// NewCmdDevPipeline builds `gosling dev pipeline FILE`.
func NewCmdDevPipeline(f *Factory, runF func(*DevPipelineOptions) error) *cobra.Command {
	opts := &DevPipelineOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "pipeline FILE --egg NAME",
		Short: "Run a .gitlab-ci.yml's pipeline on Gosling's runners in a running `gosling dev`",
		Long: `Pipeline commits FILE as .gitlab-ci.yml to the egg's project in the GitLab
test server and creates its pipeline (POST /projects/:id/pipeline, as a
user would); the test server sends the Job and Pipeline Hooks to the API.
Gosling's runners take the jobs and run their scripts with the shell
executor of the gitlab-runner the dev runs (the real GitLab Runner, or
the gitlab-runner STAND-IN, as for dev simulate job); each job's log is
printed as it comes, a failed job with allow_failure as "allowed to
fail". While no
runner takes a job, the server's reason is printed; when no runner of the
egg will ever take a pending job (its tags, say), the command stops with
that reason and exit code 1. The exit code is 0 when the pipeline
succeeds (allowed failures included).

The keywords the GitLab test server reads (any other is refused, naming
it):

` + indent(gitlabtest.CIKeywords(), "  "),
		Example: `  gosling dev pipeline .gitlab-ci.yml --egg web-app
  gosling dev pipeline ci.yml --egg data-group --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			if opts.Request.Egg == "" {
				return flagErrorf("--egg is required")
			}
			b, err := os.ReadFile(opts.File)
			if err != nil {
				return flagErrorf("read %s: %v", opts.File, err)
			}
			if _, err := gitlabtest.ParseCIConfig(b); err != nil {
				return &CodeError{Code: ExitInvalidConfig, Err: fmt.Errorf("%s: %w", opts.File, err)}
			}
			opts.Request.CIConfig = string(b)
			if runF != nil {
				return runF(opts)
			}
			st, err := findDev(f.Getenv, opts.StateDir, true)
			if err != nil {
				return err
			}
			return streamSimulation(cmd.Context(), opts.IO, st, "/dev/v1/simulate/pipeline", opts.Request, opts.JSON, "success")
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Request.Egg, "egg", "", "the egg whose project runs the pipeline (required)")
	fl.StringVar(&opts.Request.Ref, "ref", "main", "the branch")
	fl.StringVar(&opts.StateDir, "state-dir", "", devStateUsage)
	fl.BoolVar(&opts.JSON, "json", false, "print the steps as JSON lines")
	return cmd
}

// streamSimulation posts a simulation and prints its steps as they come:
// job logs as "log [job] line". It fails when a step fails or the final
// status is not want.
func streamSimulation(ctx context.Context, ios *IOStreams, st DevState, path string, req any, asJSON bool, want string) error {
	body, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, st.APIURL+path, bytes.NewReader(body))
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
	failed, final := false, ""
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var step SimulateStep
		if err := json.Unmarshal(sc.Bytes(), &step); err != nil {
			return fmt.Errorf("unexpected answer: %s", sc.Text())
		}
		failed = failed || step.Step == "failed"
		if step.Step == "done" {
			final = step.Status
		}
		if asJSON {
			fmt.Fprintln(ios.Out, sc.Text())
			continue
		}
		switch step.Step {
		case "log":
			fmt.Fprintf(ios.Out, "%s %-8s [%s] %s\n", time.Now().Format("15:04:05"), step.Step, step.Job, step.Message)
		default:
			fmt.Fprintf(ios.Out, "%s %-8s %s\n", time.Now().Format("15:04:05"), step.Step, step.Message)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if failed || final != want {
		return errSilent(ExitError)
	}
	return nil
}

// indent puts prefix before every line of s.
func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}
