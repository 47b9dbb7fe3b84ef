package gitlabtest

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Pipeline is a snapshot of a pipeline.
type Pipeline struct {
	ID        int64
	IID       int64
	ProjectID int64
	Ref       string
	SHA       string
	BeforeSHA string
	// Source is push, api, web, trigger, schedule, ...
	Source string
	// Status is GitLab's composite of its jobs' statuses: created,
	// pending, running, success, failed, canceled or skipped.
	Status string
	// Stages are the stages that have jobs, in order.
	Stages []string
	// Variables are the pipeline's own (POST /pipeline variables), given to
	// every job.
	Variables  []Variable
	CreatedAt  time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
}

type pipeline struct {
	Pipeline
}

func (p *pipeline) snapshot() Pipeline {
	out := p.Pipeline
	out.Stages = slices.Clone(p.Stages)
	out.Variables = slices.Clone(p.Variables)
	return out
}

// PipelineSpec describes a pipeline for CreatePipeline.
type PipelineSpec struct {
	Ref    string // main when empty
	Source string // push when empty
	// Stages orders the jobs' stages; when empty, the order in which Jobs
	// first name them. Stages without jobs are dropped, as GitLab does.
	Stages    []string
	Variables []Variable
	Jobs      []JobSpec
}

// Errors of CreatePipeline and friends.
var (
	ErrNoProject  = errors.New("no such project")
	ErrNoCIConfig = errors.New("missing CI config file: put a .gitlab-ci.yml in the project (PutFile)")
	ErrNoJob      = errors.New("no such job")
	ErrNoJobs     = errors.New("a pipeline needs at least one job")
	// ErrFilteredByRules is GitLab's refusal when the jobs' rules: left no
	// job in the pipeline; POST /projects/:id/pipeline answers it with
	// GitLab's message, rulesPreventedMessage.
	ErrFilteredByRules = errors.New("pipeline will not run for the selected trigger: the rules configuration prevented any jobs from being added to the pipeline")
)

// rulesPreventedMessage is GitLab's message for ErrFilteredByRules (since
// GitLab 15.8, gitlab-org/gitlab!107297).
const rulesPreventedMessage = "Pipeline will not run for the selected trigger. The rules configuration prevented any jobs from being added to the pipeline."

// CreatePipeline makes a pipeline of jobs as GitLab does on a push: the
// jobs' rules (JobSpec.Rules) are evaluated first, against the predefined
// variables (CI_PIPELINE_SOURCE is spec.Source, CI_COMMIT_REF_NAME and
// CI_COMMIT_BRANCH spec.Ref, CI_JOB_NAME, CI_PROJECT_PATH, ...), then the
// job's variables (the file's global ones, then its own), then
// spec.Variables, the later winning; it returns ErrFilteredByRules when they
// leave no job. Every job starts created, the first stage's jobs become
// pending (a runner may take them), and later stages follow as earlier ones
// succeed; a failure skips the rest but for when: always jobs. Job Hooks and
// Pipeline Hooks go to the project's hooks at each change. Each job's stage
// must be in spec.Stages when that is given.
func (s *Server) CreatePipeline(projectID int64, spec PipelineSpec) (Pipeline, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createPipeline(projectID, spec)
}

// CreatePipelineFromCIConfig reads the project's .gitlab-ci.yml (see
// PutFile and ParseCIConfig) and makes its pipeline for ref with the given
// pipeline variables, as POST /projects/:id/pipeline does (source api);
// errors are ParseCIConfig's, ErrNoCIConfig and CreatePipeline's.
func (s *Server) CreatePipelineFromCIConfig(projectID int64, ref string, variables []Variable) (Pipeline, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createPipelineFromFile(projectID, ref, "api", variables)
}

func (s *Server) createPipelineFromFile(projectID int64, ref, source string, variables []Variable) (Pipeline, error) {
	if _, ok := s.projects[projectID]; !ok {
		return Pipeline{}, ErrNoProject
	}
	src, ok := s.fileAt(projectID, ref, CIConfigPath)
	if !ok {
		return Pipeline{}, ErrNoCIConfig
	}
	cfg, err := ParseCIConfig(src)
	if err != nil {
		return Pipeline{}, err
	}
	return s.createPipeline(projectID, PipelineSpec{Ref: ref, Source: source, Stages: cfg.Stages, Variables: variables, Jobs: cfg.Jobs})
}

func (s *Server) createPipeline(projectID int64, spec PipelineSpec) (Pipeline, error) {
	pr, ok := s.projects[projectID]
	if !ok {
		return Pipeline{}, ErrNoProject
	}
	if len(spec.Jobs) == 0 {
		return Pipeline{}, ErrNoJobs
	}
	spec.Ref, spec.Source = cmp.Or(spec.Ref, "main"), cmp.Or(spec.Source, "push")
	if slices.ContainsFunc(spec.Jobs, func(j JobSpec) bool { return j.Rules != nil }) {
		var kept []JobSpec
		for _, js := range spec.Jobs {
			if js.Rules != nil {
				when, in := applyRules(js.Rules, js.When, ruleVariables(pr, spec, js))
				if !in {
					continue
				}
				js.When = when
			}
			kept = append(kept, js)
		}
		if len(kept) == 0 {
			return Pipeline{}, ErrFilteredByRules
		}
		spec.Jobs = kept
	}
	order := spec.Stages
	for _, j := range spec.Jobs {
		stage := cmp.Or(j.Stage, "test")
		if len(spec.Stages) > 0 && !slices.Contains(spec.Stages, stage) {
			return Pipeline{}, fmt.Errorf("job %s: stage %q is not one of the pipeline's stages %v", j.Name, stage, spec.Stages)
		}
		if len(spec.Stages) == 0 && !slices.Contains(order, stage) {
			order = append(order, stage)
		}
	}
	var stages []string
	for _, st := range order {
		if slices.ContainsFunc(spec.Jobs, func(j JobSpec) bool { return cmp.Or(j.Stage, "test") == st }) {
			stages = append(stages, st)
		}
	}
	now := s.now().UTC()
	p := &pipeline{Pipeline{
		ID: s.newID("pipeline"), ProjectID: projectID, Ref: spec.Ref,
		Source: spec.Source, Status: "created", Stages: stages,
		Variables: slices.Clone(spec.Variables), CreatedAt: now,
	}}
	p.IID = s.newID(fmt.Sprintf("pipeline-iid-%d", projectID))
	p.SHA, p.BeforeSHA = s.pipelineCommit(projectID, p.ID, p.Ref)
	s.pipelines[p.ID] = p
	for _, js := range spec.Jobs {
		js.Stage = cmp.Or(js.Stage, "test")
		js.Ref = p.Ref
		js.PipelineID = p.ID
		js.Status = "created"
		j := s.newJob(projectID, js)
		j.Name = cmp.Or(j.Name, "build")
		j.StageIdx = slices.Index(stages, js.Stage)
		s.jobs[j.ID] = j
	}
	s.processPipeline(p)
	return p.snapshot(), nil
}

// ruleVariables are what a job's rules:if: reads when spec's pipeline is
// made: the predefined variables, the job's (global ones first), then the
// pipeline's, a later one winning over an earlier one of the same key.
func ruleVariables(p *project, spec PipelineSpec, js JobSpec) map[string]string {
	out := map[string]string{}
	for _, list := range [][]Variable{pipelinePredefined(p, spec.Ref, spec.Source, js.Name, cmp.Or(js.Stage, "test")), js.Variables, spec.Variables} {
		for _, v := range list {
			out[v.Key] = v.Value
		}
	}
	return out
}

// Pipeline returns one pipeline and whether it exists.
func (s *Server) Pipeline(id int64) (Pipeline, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pipelines[id]
	if !ok {
		return Pipeline{}, false
	}
	return p.snapshot(), true
}

// PipelineJobs returns a pipeline's jobs by stage, then ID.
func (s *Server) PipelineJobs(pipelineID int64) []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Job
	for _, j := range s.pipelineJobs(pipelineID) {
		out = append(out, j.snapshot())
	}
	return out
}

func (s *Server) pipelineJobs(pipelineID int64) []*job {
	var out []*job
	for _, j := range s.jobs {
		if j.PipelineID == pipelineID {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b *job) int {
		return cmp.Or(cmp.Compare(a.StageIdx, b.StageIdx), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// compositeStatus is GitLab's Gitlab::Ci::Status::Composite: one status for
// a set of jobs. A failed job that may fail counts as a success with
// warnings, which does not hold the pipeline back.
func compositeStatus(jobs []*job) string {
	if len(jobs) == 0 {
		return ""
	}
	seen := map[string]bool{}
	for _, j := range jobs {
		st := j.Status
		if st == "failed" && j.AllowFailure {
			st = "ignored"
		}
		seen[st] = true
	}
	only := func(allowed ...string) bool {
		for st := range seen {
			if !slices.Contains(allowed, st) {
				return false
			}
		}
		return true
	}
	anyOf := func(sts ...string) bool { return slices.ContainsFunc(sts, func(st string) bool { return seen[st] }) }
	switch {
	case only("skipped", "ignored") && seen["skipped"]:
		return "skipped"
	case only("success", "skipped", "ignored"):
		return "success"
	case only("created", "ignored"):
		return "created"
	case only("canceled", "success", "skipped", "ignored"):
		return "canceled"
	case only("pending", "created", "skipped", "ignored"):
		return "pending"
	case anyOf("running", "pending"):
		return "running"
	case anyOf("created"):
		return "running"
	default:
		return "failed"
	}
}

// processPipeline is GitLab's pipeline processing: a stage's created jobs
// become pending once every earlier stage is done and succeeded, or
// skipped once one failed (when: always jobs become pending then too); then the pipeline takes the composite status
// of its jobs. Every change sends its webhooks. The caller holds s.mu.
func (s *Server) processPipeline(p *pipeline) {
	// A retried job's place is its retry's (GitLab processes the latest
	// jobs only).
	jobs := slices.DeleteFunc(s.pipelineJobs(p.ID), func(j *job) bool { return j.Retried })
	for idx := range p.Stages {
		var before []*job
		for _, j := range jobs {
			if j.StageIdx < idx {
				before = append(before, j)
			}
		}
		prior := compositeStatus(before)
		for _, j := range jobs {
			if j.StageIdx != idx || j.Status != "created" {
				continue
			}
			switch {
			case prior == "" || prior == "success" || prior == "skipped":
				s.moveJob(j, "pending")
			case (prior == "failed" || prior == "canceled") && j.When == "always":
				s.moveJob(j, "pending")
			case prior == "failed" || prior == "canceled":
				s.moveJob(j, "skipped")
			}
		}
	}
	next := compositeStatus(jobs)
	if next == "" || next == p.Status {
		return
	}
	now := s.now().UTC()
	p.Status = next
	switch next {
	case "running":
		if p.StartedAt == nil {
			p.StartedAt = &now
		}
	case "success", "failed", "canceled", "skipped":
		p.FinishedAt = &now
	}
	s.pipelineChanged(p)
}

// moveJob changes a job's status, keeps its times, wakes the runners that
// may take it and sends its Job Hook. The caller holds s.mu.
func (s *Server) moveJob(j *job, status string) {
	j.Status = status
	s.setJobTimes(j)
	if status == "pending" {
		s.tickQueues(j)
	}
	s.jobChanged(j)
}

// jobDone moves a running job to its final status and lets its pipeline go
// on. The caller holds s.mu.
func (s *Server) jobDone(j *job, status string) {
	s.moveJob(j, status)
	if p, ok := s.pipelines[j.PipelineID]; ok {
		s.processPipeline(p)
	}
}

// CancelJob cancels a job as POST /projects/:id/jobs/:job_id/cancel does:
// a job not yet finished becomes canceled at once, and a runner running it
// learns it from the 403 and Job-Status: canceled of its next update. It
// returns ErrNoJob for an unknown job.
func (s *Server) CancelJob(jobID int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobID]
	if !ok {
		return ErrNoJob
	}
	s.cancelJob(j)
	return nil
}

func (s *Server) cancelJob(j *job) {
	switch j.Status {
	case "created", "pending", "running", "waiting_for_resource", "preparing", "manual", "scheduled":
		s.jobDone(j, "canceled")
	}
}

// pipelineSHA is the commit a pipeline ran for.
func (s *Server) pipelineSHA(pipelineID int64) string {
	if p, ok := s.pipelines[pipelineID]; ok {
		return p.SHA
	}
	if sha, ok := s.loneSHAs[pipelineID]; ok {
		return sha
	}
	return commitSHA(pipelineID)
}

func (s *Server) pipelineSource(pipelineID int64) string {
	if p, ok := s.pipelines[pipelineID]; ok {
		return p.Source
	}
	return "push"
}

// pipelineStatusOf is the status of a job's pipeline; a job added without
// one (AddJob) stands for its pipeline.
func (s *Server) pipelineStatusOf(j *job) string {
	if p, ok := s.pipelines[j.PipelineID]; ok {
		return p.Status
	}
	return j.Status
}

// PutFile commits a file to a project's main branch, such as the
// .gitlab-ci.yml that POST /pipeline reads. It panics when the project does
// not exist.
func (s *Server) PutFile(projectID int64, path string, content []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.projects[projectID]; !ok {
		panic(fmt.Sprintf("gitlabtest: PutFile: no project %d", projectID))
	}
	s.commitLocked(projectID, "main", "put "+path, map[string][]byte{path: content})
}

// File returns a file of the project at ref (the default branch when
// empty), as GET /projects/:id/repository/files/:path/raw does.
func (s *Server) File(projectID int64, ref, path string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fileAt(projectID, ref, path)
}

// Trace returns a job's log as its runner sent it through PATCH
// /jobs/:id/trace.
func (s *Server) Trace(jobID int64) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.traces[jobID])
}

// pipelineDetailJSON is GitLab's Entities::Ci::PipelineWithMetadata.
type pipelineDetailJSON struct {
	pipelineJSON
	BeforeSHA      string       `json:"before_sha"`
	Tag            bool         `json:"tag"`
	YAMLErrors     *string      `json:"yaml_errors"`
	User           jobUserJSON  `json:"user"`
	StartedAt      *string      `json:"started_at"`
	FinishedAt     *string      `json:"finished_at"`
	CommittedAt    *string      `json:"committed_at"`
	Duration       *int64       `json:"duration"`
	QueuedDuration *int64       `json:"queued_duration"`
	Coverage       *string      `json:"coverage"`
	DetailedStatus statusDetail `json:"detailed_status"`
}

type statusDetail struct {
	Icon  string `json:"icon"`
	Text  string `json:"text"`
	Label string `json:"label"`
	Group string `json:"group"`
}

func (s *Server) pipelineDetail(r *http.Request, p *pipeline) pipelineDetailJSON {
	base := baseURL(r)
	pr := s.projects[p.ProjectID]
	updated := p.CreatedAt
	if p.FinishedAt != nil {
		updated = *p.FinishedAt
	} else if p.StartedAt != nil {
		updated = *p.StartedAt
	}
	out := pipelineDetailJSON{
		pipelineJSON: pipelineJSON{
			ID: p.ID, IID: p.IID, ProjectID: p.ProjectID, SHA: p.SHA, Ref: p.Ref, Status: p.Status, Source: p.Source,
			CreatedAt: timestamp(p.CreatedAt), UpdatedAt: timestamp(updated),
			WebURL: fmt.Sprintf("%s/%s/-/pipelines/%d", base, pr.PathWithNamespace, p.ID),
		},
		BeforeSHA:      p.BeforeSHA,
		User:           jobUserJSON{ID: 1, Username: "root", Name: "Administrator", State: "active", WebURL: base + "/root"},
		StartedAt:      timestampPtr(p.StartedAt),
		FinishedAt:     timestampPtr(p.FinishedAt),
		DetailedStatus: statusDetail{Icon: "status_" + p.Status, Text: p.Status, Label: p.Status, Group: p.Status},
	}
	if p.StartedAt != nil {
		q := int64(p.StartedAt.Sub(p.CreatedAt) / time.Second)
		out.QueuedDuration = &q
		if p.FinishedAt != nil {
			d := int64(p.FinishedAt.Sub(*p.StartedAt) / time.Second)
			out.Duration = &d
		}
	}
	return out
}

// createPipelineRoute is POST /projects/:id/pipeline: ref (required) and
// variables [{key, value, variable_type}]; the jobs come from the
// project's .gitlab-ci.yml. Errors answer 400 {"message": {"base": [...]}}
// as GitLab does.
func (s *Server) createPipelineRoute(w http.ResponseWriter, r *http.Request, _ *user) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	if !p.has("ref") {
		writeParamError(w, "ref is missing")
		return
	}
	var vars []Variable
	if raw, ok := p.raw("variables"); ok {
		list, ok := raw.([]any)
		if !ok {
			writeParamError(w, "variables is invalid")
			return
		}
		for _, item := range list {
			m, ok := item.(map[string]any)
			key, _ := m["key"].(string)
			if !ok || key == "" {
				writeParamError(w, "variables[key] is missing")
				return
			}
			value, _ := m["value"].(string)
			vars = append(vars, Variable{Key: key, Value: value})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	pl, err := s.createPipelineFromFile(pr.ID, p.str("ref"), "api", vars)
	if err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, ErrNoCIConfig):
			msg = "Missing CI config file"
		case errors.Is(err, ErrFilteredByRules):
			msg = rulesPreventedMessage
		}
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string][]string{"base": {msg}}})
		return
	}
	writeJSON(w, http.StatusCreated, s.pipelineDetail(r, s.pipelines[pl.ID]))
}

func (s *Server) getPipelineRoute(w http.ResponseWriter, r *http.Request, _ *user) {
	id, ok := pathID(w, r, "pipeline_id")
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	p, ok := s.pipelines[id]
	if !ok || p.ProjectID != pr.ID {
		writeMessage(w, http.StatusNotFound, "404 Not found")
		return
	}
	writeJSON(w, http.StatusOK, s.pipelineDetail(r, p))
}

// listPipelineJobs is GET /projects/:id/pipelines/:pipeline_id/jobs.
func (s *Server) listPipelineJobs(w http.ResponseWriter, r *http.Request, _ *user) {
	id, ok := pathID(w, r, "pipeline_id")
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	p, ok := s.pipelines[id]
	if !ok || p.ProjectID != pr.ID {
		writeMessage(w, http.StatusNotFound, "404 Not found")
		return
	}
	jobs := s.pipelineJobs(p.ID)
	if r.URL.Query().Get("include_retried") != "true" {
		jobs = slices.DeleteFunc(jobs, func(j *job) bool { return j.Retried })
	}
	page, ok := paginate(w, r, jobs)
	if !ok {
		return
	}
	out := make([]jobJSON, 0, len(page))
	for _, j := range page {
		out = append(out, s.jobJSON(r, j, false))
	}
	writeJSON(w, http.StatusOK, out)
}

// getRawFile is GET /projects/:id/repository/files/:file_path/raw, the
// path URL-encoded (a%2Fb.yml), at ref (a branch or a SHA; default main).
func (s *Server) getRawFile(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	b, ok := s.fileAt(pr.ID, r.URL.Query().Get("ref"), r.PathValue("file_path"))
	if !ok {
		writeMessage(w, http.StatusNotFound, "404 File Not Found")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Gitlab-File-Path", r.PathValue("file_path"))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// getJobTrace is GET /projects/:id/jobs/:job_id/trace: the job's log as
// plain text.
func (s *Server) getJobTrace(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.projectJob(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.traces[j.ID])
}

// cancelJobRoute is POST /projects/:id/jobs/:job_id/cancel: 201 with the
// job.
func (s *Server) cancelJobRoute(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.projectJob(w, r)
	if !ok {
		return
	}
	s.cancelJob(j)
	writeJSON(w, http.StatusCreated, s.jobJSON(r, j, false))
}
