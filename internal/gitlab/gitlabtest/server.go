// Package gitlabtest is an in-memory GitLab that speaks the part of REST API
// v4 Gosling uses, with GitLab's real response shapes, status codes,
// pagination headers and error bodies. Tests drive it through the Go API
// (AddProject, AddJob, FailNext, ...) and talk to it over HTTP exactly as they
// would to gitlab.com; it can also be mounted elsewhere through Handler.
//
// What it models: users authenticated by PRIVATE-TOKEN or Authorization:
// Bearer; groups with subgroups; projects, optionally shared into other
// groups, with files (a .gitlab-ci.yml); runners created through POST
// /user/runners with their glrt- tokens; pipelines made from a small subset
// of .gitlab-ci.yml, whose jobs' rules: decide which jobs a pipeline gets
// and whose stages run in order; the runner API that gitlab-runner speaks
// (runners/verify, jobs/request with Workhorse's long polling, job updates,
// trace patches), so a runner really runs the jobs;
// project hooks, to which Job Hooks and Pipeline Hooks are delivered at
// every state change the runner API or the pipeline engine makes; each
// project's Git repository, served for fetching over Git's smart HTTP
// protocol by Git's own http-backend (git.go), so a runner fetches the
// commit its job names.
// What it does not: memberships and roles (every authenticated user may read
// and change everything, except that instance runners and GET /runners/all
// need an administrator), pushes, artifacts, caches, environments,
// workflow:, needs: and the rest of the CI language beyond the subset that
// ParseCIConfig documents.
package gitlabtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// apiPrefix is where GitLab mounts REST API v4.
const apiPrefix = "/api/v4"

// Server is an in-memory GitLab. It is safe for concurrent use.
type Server struct {
	mu       sync.Mutex
	now      func() time.Time
	baseURL  string
	nextID   map[string]int64
	users    map[string]*user // by token
	groups   map[int64]*group
	projects map[int64]*project
	runners  map[int64]*runner
	jobs     map[int64]*job
	hooks    map[int64]*hook
	// repos are the projects' Git histories (repository.go), written to
	// bare repositories under gitDir (git.go).
	repos    map[int64]*repository
	gitDir   string
	faults   []*fault
	requests []RequestRecord
	token    string

	pipelines map[int64]*pipeline
	// loneSHAs are the commits of jobs added without a pipeline (AddJob),
	// by their pipeline ID.
	loneSHAs map[int64]string
	// traces are the jobs' logs as runners patched them.
	traces map[int64][]byte

	// longPoll is how long jobs/request waits for the runner's queue to
	// change, as Workhorse does; queueChanged is closed (and replaced) at
	// every change of any runner's queue, waking the waiting requests.
	longPoll     time.Duration
	queueChanged chan struct{}
	held         int
	// rateLimit caps jobs/request per runner token per rateWindow.
	rateLimit  int
	rateWindow time.Duration
	rateCounts map[string]*rateCount

	deliveries     *deliverer
	dropDeliveries int
	// hookLogs are the deliveries made, as GitLab logs them
	// (hookevents.go); resendCounts count resends per project and user.
	hookLogs     []HookEvent
	resendCounts map[string]*rateCount
	// autoDisable is WebHooks::AutoDisabling: on unless
	// WithoutWebhookAutoDisabling.
	autoDisable bool
	// faultyHooks holds the delivery faults of hookhealth.go.
	faultyHooks deliveryFaults

	// staleManagerAfter is how long a runner manager lives without
	// contact; creationCap runners may be created per project or group
	// per creationWindow, and creations holds when they were, by scope
	// (managers.go).
	staleManagerAfter time.Duration
	creationCap       int
	creationWindow    time.Duration
	creations         map[string][]time.Time
	// tokenExpiration is runner_token_expiration_interval (managers.go).
	tokenExpiration time.Duration

	// closing is closed by Close: long polls answer at once.
	closing   chan struct{}
	closeOnce sync.Once

	mux  *http.ServeMux
	http *httptest.Server

	// redirects are the old paths of renamed and transferred projects,
	// lower case, as GitLab's redirect_routes keep them (moves.go).
	redirects map[string]int64
}

// Option configures a Server.
type Option func(*Server)

// WithToken sets the default administrator's token instead of a random one,
// for a local development run that wants a stable token.
func WithToken(token string) Option {
	return func(s *Server) { s.token = token }
}

// WithClock replaces time.Now, for tests of runner status (online, offline,
// stale) that need time to move.
func WithClock(now func() time.Time) Option {
	return func(s *Server) { s.now = now }
}

// WithLongPolling sets how long POST /jobs/request holds a runner whose
// queue has not changed since its last_update (default DefaultLongPolling,
// as GitLab recommends for Workhorse's apiCiLongPollingDuration; 0 answers
// 204 at once, like GitLab without Workhorse).
func WithLongPolling(d time.Duration) Option {
	return func(s *Server) { s.longPoll = d }
}

// WithRunnerRateLimit sets how many POST /jobs/request one runner token may
// make per window before 429 (default DefaultRunnerRateLimit a minute, the
// runner_jobs_request_api_limit of GitLab's application settings).
func WithRunnerRateLimit(requests int, window time.Duration) Option {
	return func(s *Server) { s.rateLimit, s.rateWindow = requests, window }
}

// WithoutWebhookAutoDisabling turns GitLab's automatic disabling of
// failing hooks off, as self-managed instances have it by default (the
// auto_disabling_webhooks setting; GitLab.com has it on): failures are
// still counted, but a hook keeps getting every delivery.
func WithoutWebhookAutoDisabling() Option {
	return func(s *Server) { s.autoDisable = false }
}

// WithBaseURL sets the URL the server is reached at when it is mounted in
// a server of one's own (see NewServer): hooks and URLs in payloads use it.
func WithBaseURL(u string) Option {
	return func(s *Server) { s.baseURL = strings.TrimSuffix(u, "/") }
}

// New returns a started Server listening on 127.0.0.1 on a free port.
// Close it when done.
func New(opts ...Option) *Server {
	s := NewServer(opts...)
	s.Start()
	return s
}

// NewServer returns a Server that is not listening yet: call Start, or mount
// Handler in a server of your own.
func NewServer(opts ...Option) *Server {
	s := &Server{
		now:      time.Now,
		nextID:   map[string]int64{},
		users:    map[string]*user{},
		groups:   map[int64]*group{},
		projects: map[int64]*project{},
		runners:  map[int64]*runner{},
		jobs:     map[int64]*job{},
		hooks:    map[int64]*hook{},

		redirects: map[string]int64{},

		pipelines:    map[int64]*pipeline{},
		loneSHAs:     map[int64]string{},
		traces:       map[int64][]byte{},
		longPoll:     DefaultLongPolling,
		queueChanged: make(chan struct{}),
		rateLimit:    DefaultRunnerRateLimit,
		rateWindow:   time.Minute,
		rateCounts:   map[string]*rateCount{},
		resendCounts: map[string]*rateCount{},
		autoDisable:  true,
		closing:      make(chan struct{}),

		staleManagerAfter: DefaultStaleManagerAfter,
		creationCap:       DefaultRunnerCreationCap,
		creationWindow:    DefaultRunnerCreationWindow,
		creations:         map[string][]time.Time{},
	}
	s.deliveries = newDeliverer(s)
	for _, o := range opts {
		o(s)
	}
	if s.token == "" {
		s.token = "glpat-" + randomString(10)
	}
	s.addUser(s.token, "root", true)
	s.routes()
	return s
}

// Start listens on 127.0.0.1 on a free port. It panics if already started.
func (s *Server) Start() {
	if s.http != nil {
		panic("gitlabtest: server already started")
	}
	s.http = httptest.NewServer(s.Handler())
}

// URL is the server's base URL, such as http://127.0.0.1:38411: what a
// client is configured with (the API lives under /api/v4). It is empty until
// Start.
func (s *Server) URL() string {
	if s.http == nil {
		return s.baseURL
	}
	return s.http.URL
}

// Close stops the server: waiting long polls answer at once, webhook
// deliveries under way are abandoned, idle connections are closed. It
// blocks until all outstanding requests have completed.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.deliveries.close()
	if s.http != nil {
		s.http.Close()
	}
	s.removeGitRoot()
}

// closedContext returns a context that ends with parent or when the
// server closes, for requests that wait.
func (s *Server) closedContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Token is the default administrator's personal access token.
func (s *Server) Token() string { return s.token }

// Handler serves the API with fault injection and request recording.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serve)
}

type user struct {
	id       int64
	username string
	admin    bool
}

// AddUser registers a non-administrator whose personal access token is token
// and returns the user's ID.
func (s *Server) AddUser(token string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[token]; ok {
		panic("gitlabtest: AddUser: token already in use")
	}
	u := s.addUser(token, "", false)
	u.username = fmt.Sprintf("user%d", u.id)
	return u.id
}

func (s *Server) addUser(token, username string, admin bool) *user {
	u := &user{id: s.newID("user"), username: username, admin: admin}
	s.users[token] = u
	return u
}

// newID hands out IDs per kind, starting at 1, the way GitLab's tables do.
func (s *Server) newID(kind string) int64 {
	s.nextID[kind]++
	return s.nextID[kind]
}

// id is the last ID handed out for kind.
func (s *Server) id(kind string) int64 { return s.nextID[kind] }

// randomString returns n random bytes, hex encoded.
func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("gitlabtest: random token: %v", err))
	}
	return hex.EncodeToString(b)
}

// newRunnerToken mimics GitLab's runner authentication tokens: glrt- and
// 20 characters.
func newRunnerToken() string { return "glrt-" + randomString(10) }

// Group is a snapshot of a group.
type Group struct {
	ID       int64
	Name     string
	Path     string
	FullPath string
	ParentID int64
}

type group struct {
	Group
	createdAt time.Time
}

// AddGroup creates a group with the URL slug path (no slashes) under parent
// (0 for a top-level group) and returns it. It panics when the parent does
// not exist or the full path is taken.
func (s *Server) AddGroup(path string, parentID int64) Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	if path == "" || strings.Contains(path, "/") {
		panic(fmt.Sprintf("gitlabtest: AddGroup: path %q must be one non-empty segment", path))
	}
	full := path
	if parentID != 0 {
		parent, ok := s.groups[parentID]
		if !ok {
			panic(fmt.Sprintf("gitlabtest: AddGroup: no parent group %d", parentID))
		}
		full = parent.FullPath + "/" + path
	}
	if s.groupByFullPath(full) != nil {
		panic(fmt.Sprintf("gitlabtest: AddGroup: group %q exists", full))
	}
	g := &group{
		Group:     Group{ID: s.newID("group"), Name: path, Path: path, FullPath: full, ParentID: parentID},
		createdAt: s.now().UTC(),
	}
	s.groups[g.ID] = g
	return g.Group
}

func (s *Server) groupByFullPath(full string) *group {
	for _, g := range s.groups {
		if g.FullPath == full {
			return g
		}
	}
	return nil
}

// descendants returns the IDs of g and all its subgroups.
func (s *Server) descendants(id int64) map[int64]bool {
	out := map[int64]bool{id: true}
	for grew := true; grew; {
		grew = false
		for _, g := range s.groups {
			if !out[g.ID] && out[g.ParentID] {
				out[g.ID] = true
				grew = true
			}
		}
	}
	return out
}

// Project is a snapshot of a project.
type Project struct {
	ID                int64
	Name              string
	Path              string
	PathWithNamespace string
	GroupID           int64   // 0 for a project in a user namespace
	SharedWith        []int64 // groups the project is shared into
	Archived          bool
}

type project struct {
	Project
	createdAt time.Time
}

// AddProject creates a project. With groupID set, pathWithNamespace is either
// the project's slug or the group's full path followed by it; with groupID 0
// the project lives in a user namespace named by the path's first segment
// (namespace ID 0, kind user). It panics on inconsistent input.
func (s *Server) AddProject(pathWithNamespace string, groupID int64) Project {
	s.mu.Lock()
	defer s.mu.Unlock()
	full := pathWithNamespace
	if groupID != 0 {
		g, ok := s.groups[groupID]
		if !ok {
			panic(fmt.Sprintf("gitlabtest: AddProject: no group %d", groupID))
		}
		if !strings.Contains(full, "/") {
			full = g.FullPath + "/" + full
		}
		if !strings.HasPrefix(full, g.FullPath+"/") || strings.Contains(strings.TrimPrefix(full, g.FullPath+"/"), "/") {
			panic(fmt.Sprintf("gitlabtest: AddProject: %q is not directly in group %q", full, g.FullPath))
		}
	} else if strings.Count(full, "/") != 1 {
		panic(fmt.Sprintf("gitlabtest: AddProject: %q must be user/project without a group", full))
	}
	if s.projectByCurrentPath(full) != nil {
		panic(fmt.Sprintf("gitlabtest: AddProject: project %q exists", full))
	}
	// A new project takes the path over from any redirect.
	delete(s.redirects, strings.ToLower(full))
	slug := full[strings.LastIndex(full, "/")+1:]
	p := &project{
		Project:   Project{ID: s.newID("project"), Name: slug, Path: slug, PathWithNamespace: full, GroupID: groupID},
		createdAt: s.now().UTC(),
	}
	s.projects[p.ID] = p
	return p.Project
}

// ShareProject shares a project into a group, which makes it show up in that
// group's project list unless with_shared=false is asked for.
func (s *Server) ShareProject(projectID, groupID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectID]
	if !ok {
		panic(fmt.Sprintf("gitlabtest: ShareProject: no project %d", projectID))
	}
	if _, ok := s.groups[groupID]; !ok {
		panic(fmt.Sprintf("gitlabtest: ShareProject: no group %d", groupID))
	}
	if !slices.Contains(p.SharedWith, groupID) {
		p.SharedWith = append(p.SharedWith, groupID)
	}
}

// projectByPath finds a project by its full path, case-insensitively, or
// by an old path it was renamed or transferred from, as GitLab's
// find_by_full_path(follow_redirects: true) does for the API.
func (s *Server) projectByPath(full string) *project {
	if p := s.projectByCurrentPath(full); p != nil {
		return p
	}
	if id, ok := s.redirects[strings.ToLower(full)]; ok {
		return s.projects[id]
	}
	return nil
}

func (s *Server) projectByCurrentPath(full string) *project {
	for _, p := range s.projects {
		if strings.EqualFold(p.PathWithNamespace, full) {
			return p
		}
	}
	return nil
}

// Runner is a snapshot of a runner, token included, for assertions.
type Runner struct {
	ID             int64
	Token          string
	TokenExpiresAt *time.Time
	Type           string // instance_type, group_type or project_type
	GroupID        int64
	ProjectID      int64
	// ProjectIDs are the projects a project runner is assigned to: the
	// one it was created in first, then those it was enabled in (POST
	// /projects/:id/runners).
	ProjectIDs     []int64
	Description    string
	Tags           []string
	RunUntagged    bool
	Paused         bool
	Locked         bool
	AccessLevel    string
	MaximumTimeout int64 // seconds; 0 when unset
	ContactedAt    *time.Time
	CreatorID      int64

	// What the runner told about itself in its last jobs/request (or
	// verify): the version, revision, platform, architecture and executor
	// of its info, its system_id, and the address it called from.
	Version      string
	Revision     string
	Platform     string
	Architecture string
	Executor     string
	SystemID     string
	IPAddress    string
}

type runner struct {
	Runner
	maintenanceNote string
	createdAt       time.Time
	// queueValue is GitLab's runner queue value: changed whenever a job
	// the runner may take becomes pending, and compared with a request's
	// last_update for long polling.
	queueValue string
	// managers are the machines running it, by system_id (managers.go).
	managers map[string]*runnerManager
}

func (r *runner) snapshot() Runner {
	out := r.Runner
	out.Tags = slices.Clone(r.Tags)
	out.ProjectIDs = slices.Clone(r.ProjectIDs)
	return out
}

// Runners returns every runner, ordered by ID.
func (s *Server) Runners() []Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Runner, 0, len(s.runners))
	for _, r := range s.sortedRunners() {
		out = append(out, r.snapshot())
	}
	return out
}

// Runner returns one runner and whether it exists.
func (s *Server) Runner(id int64) (Runner, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runners[id]
	if !ok {
		return Runner{}, false
	}
	return r.snapshot(), true
}

// DeleteRunnerBehindBack removes a runner the way a person in GitLab's UI
// would: no request is recorded and no client is told.
func (s *Server) DeleteRunnerBehindBack(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.runners, id)
}

// SetRunnerContactedAt records a runner's last contact, which decides its
// status (online within two hours, like GitLab).
func (s *Server) SetRunnerContactedAt(id int64, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.runners[id]; ok {
		at = at.UTC()
		r.ContactedAt = &at
	}
}

func (s *Server) sortedRunners() []*runner {
	out := make([]*runner, 0, len(s.runners))
	for _, r := range s.runners {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *runner) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// JobSpec describes a job for AddJob and CreatePipeline.
type JobSpec struct {
	// ID gives the job this ID, as AddProjectWithID does for projects
	// (AddJob only; a new ID when 0). It panics when a job has it already.
	ID         int64
	Name       string
	Stage      string
	Ref        string
	Tags       []string
	Status     string // pending when empty (AddJob only)
	PipelineID int64  // a new pipeline when 0 (AddJob only)

	// What a runner runs, as .gitlab-ci.yml says it: before_script and
	// script make the payload's "script" step, after_script its
	// "after_script" step.
	Script       []string
	BeforeScript []string
	AfterScript  []string
	// Variables are the job's own (public in the payload).
	Variables    []Variable
	Image        string
	AllowFailure bool
	// Timeout bounds the job (GitLab's default, 1h, when zero); a runner's
	// maximum_timeout lowers it.
	Timeout time.Duration
	// Cache is the job's cache: entries, as .gitlab-ci.yml gives them
	// (docs.gitlab.com/ci/yaml/#cache).
	Cache []CacheSpec
	// When is on_success (when empty) or always: an always job runs even
	// when an earlier stage failed.
	When string
	// Rules, when not nil, decide at pipeline creation whether the job
	// joins the pipeline and with which When (docs.gitlab.com/ci/yaml/#rules):
	// the first rule that matches does, and no match leaves the job out.
	// AddJob ignores them.
	Rules []Rule
}

// CacheSpec is one entry of a job's cache: keyword. The job payload sends
// Key with GitLab's suffix: "-protected" on a protected ref (the test
// server protects main), "-non_protected" elsewhere, none with Unprotect.
type CacheSpec struct {
	// Key names the cache ("default" when empty); runners expand
	// variables in it.
	Key string `json:"key" yaml:"key"`
	// Paths are globs relative to the project directory.
	Paths []string `json:"paths" yaml:"paths"`
	// Untracked adds the files Git does not track.
	Untracked bool `json:"untracked" yaml:"untracked"`
	// Policy is pull, push or pull-push (the default).
	Policy string `json:"policy" yaml:"policy"`
	// When is on_success (the default), on_failure or always: when the
	// runner saves the cache.
	When string `json:"when" yaml:"when"`
	// FallbackKeys are tried in order when Key has no cache.
	FallbackKeys []string `json:"fallback_keys,omitempty" yaml:"fallback_keys"`
	Unprotect    bool     `json:"unprotect,omitempty" yaml:"unprotect"`
}

// Variable is a CI/CD variable as the runner API sends it in a job's
// variables: key, value, and whether it is public (shown in the log) and
// masked (replaced by [MASKED] in the log by the runner).
type Variable struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Public bool   `json:"public"`
	Masked bool   `json:"masked"`
}

// DefaultJobTimeout is GitLab's default project job timeout.
const DefaultJobTimeout = time.Hour

// Job is a snapshot of a job.
type Job struct {
	ID         int64
	ProjectID  int64
	PipelineID int64
	Name       string
	Stage      string
	Ref        string
	Tags       []string
	Status     string
	RunnerID   int64
	CreatedAt  time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time

	// StageIdx is the stage's position in its pipeline's stages.
	StageIdx     int
	Script       []string
	BeforeScript []string
	AfterScript  []string
	Variables    []Variable
	Image        string
	AllowFailure bool
	Timeout      time.Duration
	Cache        []CacheSpec
	// When is on_success or always, as the job's rules decided.
	When string
	// Token is the job token (glcbt-...) a runner got with the job; it
	// authenticates the runner's updates while the job runs.
	Token string
	// FailureReason is what the runner reported (script_failure,
	// job_execution_timeout, ...); ExitCode is the script's exit code when
	// the runner sent one.
	FailureReason string
	ExitCode      *int
	// Retried is set on a job that a retry replaced (GitLab's
	// Ci::Build#retried); RetriesCount counts the retries before this
	// job (its Job Hook's retries_count).
	Retried      bool
	RetriesCount int
}

type job struct {
	Job
	// managerSystemID is the system_id of the runner manager that took it.
	managerSystemID string
}

func (j *job) snapshot() Job {
	out := j.Job
	out.Tags = slices.Clone(j.Tags)
	out.Script = slices.Clone(j.Script)
	out.BeforeScript = slices.Clone(j.BeforeScript)
	out.AfterScript = slices.Clone(j.AfterScript)
	out.Variables = slices.Clone(j.Variables)
	out.Cache = slices.Clone(j.Cache)
	return out
}

// AddJob creates a job in a project, as test control: no webhook is sent.
// A pending job can be picked by a runner through POST /jobs/request. It
// panics when the project does not exist.
func (s *Server) AddJob(projectID int64, spec JobSpec) Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.projects[projectID]; !ok {
		panic(fmt.Sprintf("gitlabtest: AddJob: no project %d", projectID))
	}
	if spec.ID != 0 {
		if _, dup := s.jobs[spec.ID]; dup {
			panic(fmt.Sprintf("gitlabtest: AddJob: job %d exists", spec.ID))
		}
	}
	j := s.newJob(projectID, spec)
	if spec.ID != 0 {
		// Hand back the ID taken, and skip past it.
		s.nextID["job"]--
		j.ID = spec.ID
		s.nextID["job"] = max(s.nextID["job"], spec.ID)
	}
	if j.PipelineID == 0 {
		j.PipelineID = s.newID("pipeline")
	} else if j.PipelineID > s.id("pipeline") {
		s.nextID["pipeline"] = j.PipelineID
	}
	if j.Name == "" {
		j.Name = "build"
	}
	if j.Stage == "" {
		j.Stage = "test"
	}
	if j.Ref == "" {
		j.Ref = "main"
	}
	if j.Status == "" {
		j.Status = "pending"
	}
	if _, ok := s.pipelines[j.PipelineID]; !ok {
		if _, ok := s.loneSHAs[j.PipelineID]; !ok {
			s.loneSHAs[j.PipelineID], _ = s.pipelineCommit(projectID, j.PipelineID, j.Ref)
		}
	}
	s.setJobTimes(j)
	s.jobs[j.ID] = j
	if j.Status == "pending" {
		s.tickQueues(j)
	}
	return j.snapshot()
}

// newJob makes a job from a spec; the caller stores it. The caller holds
// s.mu.
func (s *Server) newJob(projectID int64, spec JobSpec) *job {
	return &job{Job: Job{
		ID:           s.newID("job"),
		ProjectID:    projectID,
		PipelineID:   spec.PipelineID,
		Name:         spec.Name,
		Stage:        spec.Stage,
		Ref:          spec.Ref,
		Tags:         slices.Clone(spec.Tags),
		Status:       spec.Status,
		CreatedAt:    s.now().UTC(),
		Script:       slices.Clone(spec.Script),
		BeforeScript: slices.Clone(spec.BeforeScript),
		AfterScript:  slices.Clone(spec.AfterScript),
		Variables:    slices.Clone(spec.Variables),
		Image:        spec.Image,
		AllowFailure: spec.AllowFailure,
		Timeout:      cmp.Or(spec.Timeout, DefaultJobTimeout),
		Cache:        slices.Clone(spec.Cache),
		When:         cmp.Or(spec.When, "on_success"),
	}}
}

// SetJobStatus moves a job to status and assigns it to runnerID (0 for no
// runner), as test control: no webhook is sent and the pipeline does not
// move on (a runner's PUT /jobs/:id does both). It panics when the job does
// not exist in the project.
func (s *Server) SetJobStatus(projectID, jobID int64, status string, runnerID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobID]
	if !ok || j.ProjectID != projectID {
		panic(fmt.Sprintf("gitlabtest: SetJobStatus: no job %d in project %d", jobID, projectID))
	}
	j.Status = status
	j.RunnerID = runnerID
	s.setJobTimes(j)
	if status == "pending" {
		s.tickQueues(j)
	}
}

// Job returns one job and whether it exists.
func (s *Server) Job(jobID int64) (Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobID]
	if !ok {
		return Job{}, false
	}
	return j.snapshot(), true
}

func (s *Server) setJobTimes(j *job) {
	now := s.now().UTC()
	switch j.Status {
	case "running":
		if j.StartedAt == nil {
			j.StartedAt = &now
		}
		j.FinishedAt = nil
	case "success", "failed", "canceled", "skipped":
		if j.StartedAt == nil && j.Status != "skipped" && j.Status != "canceled" {
			j.StartedAt = &now
		}
		j.FinishedAt = &now
	}
}

// Hook is a snapshot of a project hook, its secret token included.
type Hook struct {
	ID                    int64
	ProjectID             int64
	URL                   string
	Name                  string
	Description           string
	Token                 string
	PushEvents            bool
	TagPushEvents         bool
	MergeRequestsEvents   bool
	JobEvents             bool
	PipelineEvents        bool
	EnableSSLVerification bool
	CreatedAt             time.Time

	// Delivery health, as GitLab's WebHooks::AutoDisabling keeps it:
	// consecutive failures, how often the hook was disabled for a while,
	// until when it is, and whether it is disabled for good.
	RecentFailures      int
	BackoffCount        int
	DisabledUntil       *time.Time
	PermanentlyDisabled bool
}

type hook struct {
	Hook
}

// Hooks returns a project's hooks, ordered by ID.
func (s *Server) Hooks(projectID int64) []Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Hook
	for _, h := range s.sortedHooks(projectID) {
		out = append(out, h.Hook)
	}
	return out
}

func (s *Server) sortedHooks(projectID int64) []*hook {
	var out []*hook
	for _, h := range s.hooks {
		if h.ProjectID == projectID {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b *hook) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
