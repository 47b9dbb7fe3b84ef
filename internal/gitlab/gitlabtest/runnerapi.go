package gitlabtest

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The runner API is what gitlab-runner speaks (GitLab's lib/api/ci/runner.rb
// behind Workhorse; gitlab-runner's network/gitlab.go on the other side):
//
//	POST  /runners/verify    token, system_id: 200 {id, token, token_expires_at}, 403
//	POST  /jobs/request      token, info, last_update, system_id: 201 job, 204 none
//	PUT   /jobs/:id          token (the job's), state, failure_reason, exit_code: 200, 400, 403
//	PATCH /jobs/:id/trace    JOB-TOKEN, Content-Range: start-end, the log's bytes
//
// Runners authenticate with their glrt- token; job calls with the job token
// the job came with, and only while the job runs: otherwise 403 with the
// job's status in Job-Status, which is how a runner learns of a cancel.
const (
	// DefaultLongPolling is how long jobs/request holds a runner whose
	// queue did not change, GitLab's recommended Workhorse setting.
	DefaultLongPolling = 50 * time.Second
	// DefaultRunnerRateLimit is GitLab's runner_jobs_request_api_limit:
	// requests per runner token per minute.
	DefaultRunnerRateLimit = 2000
	// traceUpdateInterval is the X-GitLab-Trace-Update-Interval GitLab
	// sends while someone watches the job's log, in seconds.
	traceUpdateInterval = "3"
	// maxTracePatch bounds one PATCH's body.
	maxTracePatch = 16 << 20
)

// failureReasons are the failure_reason values GitLab accepts from a runner
// (Ci::Build failure reasons a runner may report); anything else is
// recorded as unknown_failure.
var failureReasons = []string{
	"unknown_failure", "script_failure", "api_failure", "stuck_or_timeout_failure",
	"runner_system_failure", "missing_dependency_failure", "runner_unsupported",
	"job_execution_timeout", "archived_failure", "unmet_prerequisites",
	"scheduler_failure", "data_integrity_failure", "image_pull_failure",
}

// tokenMaskPrefixes are the token prefixes GitLab asks runners to mask.
var tokenMaskPrefixes = []string{"glpat-", "glcbt-", "glrt-", "gldt-", "glptt-", "glft-", "glimt-", "glsoat-"}

type rateCount struct {
	start time.Time
	n     int
}

// runnerByToken is the runner a runner API call authenticates as, or nil
// (403): an expired token authenticates no one, as in GitLab's
// authenticate_runner!. The caller holds s.mu.
func (s *Server) runnerByToken(token string) *runner {
	if token == "" {
		return nil
	}
	for _, rn := range s.runners {
		if rn.Token == token {
			if s.tokenExpired(rn) {
				return nil
			}
			return rn
		}
	}
	return nil
}

// heartbeat records a runner's contact and what its info says about it, as
// authenticate_runner! does. The caller holds s.mu.
func (s *Server) heartbeat(rn *runner, r *http.Request, p params) {
	now := s.now().UTC()
	rn.ContactedAt = &now
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		rn.IPAddress = host
	}
	if id := p.str("system_id"); id != "" {
		rn.SystemID = id
	}
	s.contactManager(rn, p.str("system_id"), infoStrings(p), rn.IPAddress)
	info, _ := p.raw("info")
	m, ok := info.(map[string]any)
	if !ok {
		return
	}
	for key, dst := range map[string]*string{
		"version": &rn.Version, "revision": &rn.Revision, "platform": &rn.Platform,
		"architecture": &rn.Architecture, "executor": &rn.Executor,
	} {
		if v, ok := m[key].(string); ok {
			*dst = v
		}
	}
}

// allowRequest counts a jobs/request against the token's limit. The caller
// holds s.mu.
func (s *Server) allowRequest(token string) (ok bool, retryAfter time.Duration) {
	if s.rateLimit <= 0 {
		return true, 0
	}
	now := s.now()
	c := s.rateCounts[token]
	if c == nil || now.Sub(c.start) >= s.rateWindow {
		c = &rateCount{start: now}
		s.rateCounts[token] = c
	}
	c.n++
	return c.n <= s.rateLimit, s.rateWindow - now.Sub(c.start)
}

// queueValue is the runner's current queue value, made on first use as
// ensure_runner_queue_value does. The caller holds s.mu.
func (s *Server) queueValue(rn *runner) string {
	if rn.queueValue == "" {
		rn.queueValue = randomString(8)
	}
	return rn.queueValue
}

// tickQueues changes the queue value of every runner that may take j, and
// wakes the long polls. The caller holds s.mu.
func (s *Server) tickQueues(j *job) {
	for _, rn := range s.runners {
		if s.canPick(rn, j) {
			rn.queueValue = randomString(8)
		}
	}
	s.wakePolls()
}

// tickRunner changes one runner's queue value (after its settings
// changed) and wakes the long polls. The caller holds s.mu.
func (s *Server) tickRunner(rn *runner) {
	rn.queueValue = randomString(8)
	s.wakePolls()
}

func (s *Server) wakePolls() {
	close(s.queueChanged)
	s.queueChanged = make(chan struct{})
}

// canPick says whether a runner may take a pending job: not paused, of the
// job's project (project runner), of a group holding the project, directly
// or through subgroups (group runner), or shared (instance runner); with
// every tag of the job, or allowed to run untagged jobs when the job has
// none. The caller holds s.mu.
func (s *Server) canPick(rn *runner, j *job) bool {
	if rn.Paused || j.Status != "pending" || j.RunnerID != 0 {
		return false
	}
	switch rn.Type {
	case "project_type":
		if !slices.Contains(rn.ProjectIDs, j.ProjectID) {
			return false
		}
	case "group_type":
		p, ok := s.projects[j.ProjectID]
		if !ok || !s.descendants(rn.GroupID)[p.GroupID] {
			return false
		}
	}
	if len(j.Tags) == 0 {
		return rn.RunUntagged
	}
	return containsAll(rn.Tags, j.Tags)
}

// requestJob is POST /jobs/request, with Workhorse's long polling in front
// of Rails: when last_update equals the runner's queue value, the request
// waits up to the long-polling time for the queue to change and answers
// 204 with the same X-GitLab-Last-Update if it does not. Then the oldest
// pending job the runner may take is given to it (201, the job is running
// from then on) or 204 with the current queue value.
func (s *Server) requestJob(w http.ResponseWriter, r *http.Request) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	if !p.has("token") {
		writeParamError(w, "token is missing")
		return
	}
	token, lastUpdate := p.str("token"), p.str("last_update")
	ctx, cancel := s.closedContext(r.Context())
	defer cancel()

	s.mu.Lock()
	defer s.mu.Unlock()
	rn := s.runnerByToken(token)
	if rn == nil {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	if ok, retry := s.allowRequest(token); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(retry.Seconds()+0.5))))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"message": map[string]string{"error": "This endpoint has been requested too many times. Try again later."}})
		return
	}
	s.heartbeat(rn, r, p)
	if rn.Paused {
		noContent(w, s.queueValue(rn))
		return
	}
	if lastUpdate != "" && lastUpdate == s.queueValue(rn) && s.longPoll > 0 {
		timer := time.NewTimer(s.longPoll)
		defer timer.Stop()
		s.held++
		defer func() { s.held-- }()
		for lastUpdate == s.queueValue(rn) {
			changed := s.queueChanged
			s.mu.Unlock()
			var done bool
			select {
			case <-changed:
			case <-timer.C:
				done = true
			case <-ctx.Done():
				done = true
			}
			s.mu.Lock()
			if s.runners[rn.ID] != rn || rn.Token != token {
				writeMessage(w, http.StatusForbidden, "403 Forbidden")
				return
			}
			if done {
				break
			}
		}
	}
	if ctx.Err() != nil {
		// The runner gave up or the server is closing: never hand a job to
		// a request nobody will read.
		noContent(w, lastUpdate)
		return
	}
	// Rails: runner_queue_value_latest? answers 204 at once.
	if lastUpdate != "" && lastUpdate == s.queueValue(rn) {
		noContent(w, lastUpdate)
		return
	}
	newUpdate := s.queueValue(rn)
	var picked *job
	for _, j := range s.sortedJobs() {
		if s.canPick(rn, j) && (picked == nil || j.ID < picked.ID) {
			picked = j
		}
	}
	if picked == nil {
		noContent(w, newUpdate)
		return
	}
	s.assignJob(picked, rn)
	picked.managerSystemID = cmp.Or(p.str("system_id"), LegacySystemID)
	writeJSON(w, http.StatusCreated, s.jobPayload(r, picked, rn))
}

// HeldRequests is how many POST /jobs/request are being held by long
// polling right now.
func (s *Server) HeldRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

func noContent(w http.ResponseWriter, lastUpdate string) {
	w.Header().Set("X-GitLab-Last-Update", lastUpdate)
	w.WriteHeader(http.StatusNoContent)
}

// assignJob gives a pending job to a runner: running, with a fresh job
// token and the runner's maximum timeout applied. The caller holds s.mu.
func (s *Server) assignJob(j *job, rn *runner) {
	j.RunnerID = rn.ID
	j.Token = "glcbt-" + randomString(10)
	if j.Timeout == 0 {
		j.Timeout = DefaultJobTimeout
	}
	if max := time.Duration(rn.MaximumTimeout) * time.Second; max > 0 && max < j.Timeout {
		j.Timeout = max
	}
	s.moveJob(j, "running")
	if p, ok := s.pipelines[j.PipelineID]; ok {
		s.processPipeline(p)
	}
}

// The job payload, GitLab's Entities::Ci::JobRequest::Response, with the
// field names gitlab-runner's common.JobResponse decodes.
type (
	jobPayloadJSON struct {
		ID            int64              `json:"id"`
		Token         string             `json:"token"`
		AllowGitFetch bool               `json:"allow_git_fetch"`
		JobInfo       jobInfoJSON        `json:"job_info"`
		GitInfo       gitInfoJSON        `json:"git_info"`
		RunnerInfo    runnerInfoJSON     `json:"runner_info"`
		Variables     []Variable         `json:"variables"`
		Steps         []stepJSON         `json:"steps"`
		Image         *imageJSON         `json:"image"`
		Services      []imageJSON        `json:"services"`
		Artifacts     []any              `json:"artifacts"`
		Cache         []cacheJSON        `json:"cache"`
		Credentials   []any              `json:"credentials"`
		Dependencies  []any              `json:"dependencies"`
		Features      gitlabFeaturesJSON `json:"features"`
		Hooks         []any              `json:"hooks"`
	}
	jobInfoJSON struct {
		ID                 int64   `json:"id"`
		Name               string  `json:"name"`
		Stage              string  `json:"stage"`
		ProjectID          int64   `json:"project_id"`
		ProjectName        string  `json:"project_name"`
		TimeInQueueSeconds float64 `json:"time_in_queue_seconds"`
	}
	gitInfoJSON struct {
		RepoURL          string   `json:"repo_url"`
		RepoObjectFormat string   `json:"repo_object_format"`
		Ref              string   `json:"ref"`
		SHA              string   `json:"sha"`
		BeforeSHA        string   `json:"before_sha"`
		RefType          string   `json:"ref_type"`
		Refspecs         []string `json:"refspecs"`
		Depth            int      `json:"depth"`
	}
	runnerInfoJSON struct {
		Timeout          int64   `json:"timeout"`
		RunnerSessionURL *string `json:"runner_session_url"`
	}
	stepJSON struct {
		Name         string   `json:"name"`
		Script       []string `json:"script"`
		Timeout      int64    `json:"timeout"`
		When         string   `json:"when"`
		AllowFailure bool     `json:"allow_failure"`
	}
	// cacheJSON is Entities::Ci::JobRequest::Cache.
	cacheJSON struct {
		Key          string   `json:"key"`
		Untracked    bool     `json:"untracked"`
		Policy       string   `json:"policy"`
		Paths        []string `json:"paths"`
		When         string   `json:"when"`
		FallbackKeys []string `json:"fallback_keys"`
	}
	imageJSON struct {
		Name string `json:"name"`
	}
	gitlabFeaturesJSON struct {
		TraceSections     bool     `json:"trace_sections"`
		TokenMaskPrefixes []string `json:"token_mask_prefixes"`
		FailureReasons    []string `json:"failure_reasons"`
	}
)

// afterScriptTimeout is GitLab's fixed after_script timeout.
const afterScriptTimeout = 5 * time.Minute

// pipelinePredefined are the predefined variables
// (docs.gitlab.com/ci/variables/predefined_variables) GitLab knows of a job
// when it makes the pipeline, before a runner takes the job: what a rule's
// if: reads, and the start of the job payload's variables. source is
// GitLab's CI_PIPELINE_SOURCE: push, api, schedule, trigger, web, ...
func pipelinePredefined(p *project, ref, source, jobName, stage string) []Variable {
	pub := func(k, v string) Variable { return Variable{Key: k, Value: v, Public: true} }
	return []Variable{
		pub("CI", "true"), pub("GITLAB_CI", "true"),
		pub("CI_JOB_NAME", jobName), pub("CI_JOB_STAGE", stage),
		pub("CI_PIPELINE_SOURCE", source),
		pub("CI_PROJECT_ID", strconv.FormatInt(p.ID, 10)), pub("CI_PROJECT_NAME", p.Name), pub("CI_PROJECT_PATH", p.PathWithNamespace),
		pub("CI_PROJECT_NAMESPACE", p.PathWithNamespace[:max(strings.LastIndex(p.PathWithNamespace, "/"), 0)]),
		pub("CI_COMMIT_REF_NAME", ref), pub("CI_COMMIT_BRANCH", ref), pub("CI_DEFAULT_BRANCH", "main"),
	}
}

// jobPayload renders the job a runner gets, with GitLab's predefined
// variables (docs.gitlab.com/ci/variables/predefined_variables), then the
// job's own, then the pipeline's. The caller holds s.mu.
func (s *Server) jobPayload(r *http.Request, j *job, rn *runner) jobPayloadJSON {
	base := baseURL(r)
	u, _ := url.Parse(base)
	p := s.projects[j.ProjectID]
	pl := s.pipelines[j.PipelineID]
	sha := s.pipelineSHA(j.PipelineID)
	beforeSHA := sha
	iid, source := j.PipelineID, "push"
	var pipelineVars []Variable
	if pl != nil {
		beforeSHA, iid, source, pipelineVars = pl.BeforeSHA, pl.IID, pl.Source, pl.Variables
	}
	repoURL := fmt.Sprintf("%s://gitlab-ci-token:%s@%s/%s.git", u.Scheme, j.Token, u.Host, p.PathWithNamespace)
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	pub := func(k, v string) Variable { return Variable{Key: k, Value: v, Public: true} }
	vars := append(pipelinePredefined(p, j.Ref, source, j.Name, j.Stage),
		pub("CI_SERVER_URL", base), pub("CI_SERVER_HOST", u.Hostname()), pub("CI_SERVER_PORT", port),
		pub("CI_SERVER_PROTOCOL", u.Scheme), pub("CI_API_V4_URL", base+"/api/v4"),
		pub("CI_JOB_ID", strconv.FormatInt(j.ID, 10)),
		pub("CI_JOB_URL", fmt.Sprintf("%s/%s/-/jobs/%d", base, p.PathWithNamespace, j.ID)),
		Variable{Key: "CI_JOB_TOKEN", Value: j.Token, Masked: true},
		Variable{Key: "CI_REPOSITORY_URL", Value: repoURL},
		pub("CI_PIPELINE_ID", strconv.FormatInt(j.PipelineID, 10)), pub("CI_PIPELINE_IID", strconv.FormatInt(iid, 10)),
		pub("CI_PROJECT_URL", base+"/"+p.PathWithNamespace),
		pub("CI_COMMIT_SHA", sha), pub("CI_COMMIT_SHORT_SHA", sha[:8]), pub("CI_COMMIT_BEFORE_SHA", beforeSHA),
		pub("CI_RUNNER_ID", strconv.FormatInt(rn.ID, 10)), pub("CI_RUNNER_DESCRIPTION", rn.Description),
		pub("CI_RUNNER_TAGS", `["`+strings.Join(rn.Tags, `", "`)+`"]`),
	)
	if len(rn.Tags) == 0 {
		vars[len(vars)-1].Value = "[]"
	}
	vars = append(vars, j.Variables...)
	vars = append(vars, pipelineVars...)

	timeout := int64(j.Timeout / time.Second)
	steps := []stepJSON{{
		Name: "script", Script: append(slices.Clone(j.BeforeScript), j.Script...),
		Timeout: timeout, When: "on_success", AllowFailure: j.AllowFailure,
	}}
	if len(j.AfterScript) > 0 {
		steps = append(steps, stepJSON{Name: "after_script", Script: slices.Clone(j.AfterScript), Timeout: int64(afterScriptTimeout / time.Second), When: "always", AllowFailure: true})
	}
	out := jobPayloadJSON{
		ID: j.ID, Token: j.Token, AllowGitFetch: true,
		JobInfo: jobInfoJSON{ID: j.ID, Name: j.Name, Stage: j.Stage, ProjectID: p.ID, ProjectName: p.Name, TimeInQueueSeconds: s.now().Sub(j.CreatedAt).Seconds()},
		GitInfo: gitInfoJSON{
			RepoURL: repoURL, RepoObjectFormat: "sha1", Ref: j.Ref, SHA: sha, BeforeSHA: beforeSHA, RefType: "branch",
			Refspecs: []string{fmt.Sprintf("+refs/pipelines/%d:refs/pipelines/%d", j.PipelineID, j.PipelineID), fmt.Sprintf("+refs/heads/%s:refs/remotes/origin/%s", j.Ref, j.Ref)},
			Depth:    20,
		},
		RunnerInfo: runnerInfoJSON{Timeout: timeout},
		Variables:  vars,
		Steps:      steps,
		Services:   []imageJSON{}, Artifacts: []any{}, Cache: cachePayload(j), Credentials: []any{}, Dependencies: []any{}, Hooks: []any{},
		Features: gitlabFeaturesJSON{TraceSections: true, TokenMaskPrefixes: tokenMaskPrefixes, FailureReasons: failureReasons},
	}
	if j.Image != "" {
		out.Image = &imageJSON{Name: j.Image}
	}
	return out
}

// authenticateJob is authenticate_job!: the job must exist, the token must
// be its job token and the job must be running; otherwise 403, with the
// job's status in Job-Status when that is the reason. The caller holds s.mu.
func (s *Server) authenticateJob(w http.ResponseWriter, r *http.Request, token string) (*job, bool) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return nil, false
	}
	j, ok := s.jobs[id]
	if !ok || j.Token == "" || token != j.Token {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return nil, false
	}
	if j.Status != "running" {
		w.Header().Set("Job-Status", j.Status)
		writeMessage(w, http.StatusForbidden, "403 Forbidden - Job is not running")
		return nil, false
	}
	if rn, ok := s.runners[j.RunnerID]; ok {
		now := s.now().UTC()
		rn.ContactedAt = &now
	}
	return j, true
}

// updateJob is PUT /jobs/:id as lib/api/ci/runner.rb and
// Ci::UpdateBuildStateService answer it: the token parameter is required
// (400 "token is missing"), the job authenticates by it (403, with
// Job-Status once the job no longer runs: how a runner learns of a
// cancel), then the state decides: running keeps the job alive, success
// and failed end it (failure_reason, exit_code) and the pipeline moves
// on, all 200; anything else (none, empty, pending outside GitLab 18's
// two-phase job commit) is 400.
func (s *Server) updateJob(w http.ResponseWriter, r *http.Request) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	if !p.has("token") {
		writeParamError(w, "token is missing")
		return
	}
	state := p.str("state")
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.authenticateJob(w, r, p.str("token"))
	if !ok {
		return
	}
	status := http.StatusOK
	switch state {
	case "running":
	case "success":
		j.FailureReason = ""
		s.setExitCode(j, p)
		s.jobDone(j, "success")
	case "failed":
		reason := p.str("failure_reason")
		if !slices.Contains(failureReasons, reason) {
			reason = "unknown_failure"
		}
		j.FailureReason = reason
		s.setExitCode(j, p)
		s.jobDone(j, "failed")
	default:
		status = http.StatusBadRequest
	}
	if status == http.StatusOK {
		w.Header().Set("X-GitLab-Trace-Update-Interval", traceUpdateInterval)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(strconv.Itoa(status)))
}

func (s *Server) setExitCode(j *job, p params) {
	if code, ok := p.integer("exit_code"); ok {
		c := int(code)
		j.ExitCode = &c
	}
}

// patchTrace is PATCH /jobs/:id/trace: the body is the next part of the
// log, Content-Range says where it starts. A start other than the stored
// log's length answers 416 with Range: 0-<length>, so the runner resends
// from there; success answers 202 with Job-Status, Range and
// X-GitLab-Trace-Update-Interval.
func (s *Server) patchTrace(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxTracePatch+1))
	if err != nil {
		writeMessage(w, http.StatusBadRequest, "400 Bad request - "+err.Error())
		return
	}
	if len(body) > maxTracePatch {
		writeMessage(w, http.StatusRequestEntityTooLarge, "413 Request Entity Too Large")
		return
	}
	token := r.URL.Query().Get("token")
	if token == "" {
		token = r.Header.Get("JOB-TOKEN")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.authenticateJob(w, r, token)
	if !ok {
		return
	}
	cr, ok := r.Header["Content-Range"]
	if !ok || len(cr) == 0 {
		writeMessage(w, http.StatusBadRequest, "400 Missing header Content-Range")
		return
	}
	startStr, _, _ := strings.Cut(strings.TrimSpace(cr[0]), "-")
	start, err := strconv.Atoi(startStr)
	size := len(s.traces[j.ID])
	if err != nil || start != size {
		w.Header().Set("Range", fmt.Sprintf("0-%d", size))
		writeMessage(w, http.StatusRequestedRangeNotSatisfiable, "416 Range Not Satisfiable")
		return
	}
	s.traces[j.ID] = append(s.traces[j.ID], body...)
	h := w.Header()
	h.Set("Job-Status", j.Status)
	h.Set("Range", fmt.Sprintf("0-%d", len(s.traces[j.ID])))
	h.Set("X-GitLab-Trace-Update-Interval", traceUpdateInterval)
	w.WriteHeader(http.StatusAccepted)
}

// cachePayload is a job's cache entries as GitLab sends them: defaults
// filled in (key "default", policy pull-push, when on_success), and each
// key suffixed "-protected" or "-non_protected" by whether the job's ref
// is protected, unless the entry says unprotect (docs.gitlab.com/ci/caching,
// "Cache key names").
func cachePayload(j *job) []cacheJSON {
	out := make([]cacheJSON, 0, len(j.Cache))
	suffix := "-non_protected"
	if refProtected(j.Ref) {
		suffix = "-protected"
	}
	for _, c := range j.Cache {
		e := cacheJSON{
			Key: cmp.Or(c.Key, "default"), Untracked: c.Untracked, Policy: cmp.Or(c.Policy, "pull-push"),
			Paths: slices.Clone(c.Paths), When: cmp.Or(c.When, "on_success"), FallbackKeys: slices.Clone(c.FallbackKeys),
		}
		if e.Paths == nil {
			e.Paths = []string{}
		}
		if e.FallbackKeys == nil {
			e.FallbackKeys = []string{}
		}
		if !c.Unprotect {
			e.Key += suffix
		}
		out = append(out, e)
	}
	return out
}

// refProtected tells whether a branch is protected: the test server
// protects the default branch, main, as GitLab does on a new project.
func refProtected(ref string) bool { return ref == "main" }
