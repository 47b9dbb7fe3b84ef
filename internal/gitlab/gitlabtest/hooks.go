package gitlabtest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Webhook event names, as GitLab sends them in X-Gitlab-Event.
const (
	EventJob          = "Job Hook"
	EventPipeline     = "Pipeline Hook"
	EventPush         = "Push Hook"
	EventMergeRequest = "Merge Request Hook"
	EventTagPush      = "Tag Push Hook"
	EventSystem       = "System Hook"
	// EventBuild is what old instances send for job events.
	EventBuild = "Build Hook"
)

// UserAgent is the User-Agent of Deliver's requests: GitLab/<version>.
const UserAgent = "GitLab/18.6.0"

// DefaultHookBaseURL is the instance URL payloads use when a spec names none.
const DefaultHookBaseURL = "https://gitlab.example.com"

// Timestamp layouts of webhook payloads. GitLab writes build_*_at and most
// pipeline times as "2024-06-11 03:02:25 UTC" and the *_iso variants as
// RFC 3339; older instances and some fields use "2021-02-23T02:41:37.886Z".
const (
	HookTimeLayout    = "2006-01-02 15:04:05 MST"
	HookISOTimeLayout = "2006-01-02T15:04:05Z07:00"
	APITimeLayout     = "2006-01-02T15:04:05.000Z"
)

// HookProject is the project a payload is about.
type HookProject struct {
	ID int64
	// PathWithNamespace is the project's full path, such as acme/web.
	PathWithNamespace string
	// BaseURL is the instance's base URL for web_url and the like
	// (DefaultHookBaseURL when empty).
	BaseURL string
}

// HookProject describes one of the server's projects for a payload, with
// the server's URL as the instance URL.
func (s *Server) HookProject(p Project) HookProject {
	return HookProject{ID: p.ID, PathWithNamespace: p.PathWithNamespace, BaseURL: s.URL()}
}

func (p HookProject) base() string {
	if p.BaseURL == "" {
		return DefaultHookBaseURL
	}
	return strings.TrimSuffix(p.BaseURL, "/")
}

// slug is the project's last path segment.
func (p HookProject) slug() string {
	return p.PathWithNamespace[strings.LastIndex(p.PathWithNamespace, "/")+1:]
}

// fullName is the project's name with its namespace, as GitLab writes it
// in project_name: "acme / platform / web".
func (p HookProject) fullName() string {
	return strings.Join(strings.Split(p.PathWithNamespace, "/"), " / ")
}

// namespace is the display name of the project's namespace.
func (p HookProject) namespace() string {
	i := strings.LastIndex(p.PathWithNamespace, "/")
	if i < 0 {
		return ""
	}
	ns := p.PathWithNamespace[:i]
	return ns[strings.LastIndex(ns, "/")+1:]
}

func (p HookProject) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(p.base(), "https://"), "http://")
}

// hookProjectJSON is the project object of job, pipeline and push hooks.
type hookProjectJSON struct {
	ID                int64   `json:"id"`
	Name              string  `json:"name"`
	Description       *string `json:"description"`
	WebURL            string  `json:"web_url"`
	AvatarURL         *string `json:"avatar_url"`
	GitSSHURL         string  `json:"git_ssh_url"`
	GitHTTPURL        string  `json:"git_http_url"`
	Namespace         string  `json:"namespace"`
	VisibilityLevel   int     `json:"visibility_level"`
	PathWithNamespace string  `json:"path_with_namespace"`
	DefaultBranch     string  `json:"default_branch"`
	CIConfigPath      *string `json:"ci_config_path"`
	Homepage          string  `json:"homepage"`
	URL               string  `json:"url"`
	SSHURL            string  `json:"ssh_url"`
	HTTPURL           string  `json:"http_url"`
}

func (p HookProject) json() hookProjectJSON {
	web := p.base() + "/" + p.PathWithNamespace
	ssh := fmt.Sprintf("git@%s:%s.git", p.host(), p.PathWithNamespace)
	return hookProjectJSON{
		ID: p.ID, Name: p.slug(), WebURL: web, GitSSHURL: ssh, GitHTTPURL: web + ".git",
		Namespace: p.namespace(), PathWithNamespace: p.PathWithNamespace, DefaultBranch: "main",
		Homepage: web, URL: ssh, SSHURL: ssh, HTTPURL: web + ".git",
	}
}

type hookRepositoryJSON struct {
	Name            string  `json:"name"`
	URL             string  `json:"url"`
	Description     *string `json:"description"`
	Homepage        string  `json:"homepage"`
	GitHTTPURL      string  `json:"git_http_url"`
	GitSSHURL       string  `json:"git_ssh_url"`
	VisibilityLevel int     `json:"visibility_level"`
}

func (p HookProject) repository() hookRepositoryJSON {
	pj := p.json()
	return hookRepositoryJSON{Name: pj.Name, URL: pj.GitSSHURL, Homepage: pj.WebURL, GitHTTPURL: pj.GitHTTPURL, GitSSHURL: pj.GitSSHURL}
}

// HookUser is the user a payload names. Email is "[REDACTED]" unless set,
// as GitLab sends it to most hooks.
type HookUser struct {
	ID       int64
	Name     string
	Username string
	Email    string
}

type hookUserJSON struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Username  string `json:"username"`
	AvatarURL string `json:"avatar_url"`
	Email     string `json:"email"`
}

func (u HookUser) json(base string) hookUserJSON {
	if u.ID == 0 {
		u = HookUser{ID: 1, Name: "Administrator", Username: "root"}
	}
	if u.Email == "" {
		u.Email = "[REDACTED]"
	}
	return hookUserJSON{ID: u.ID, Name: u.Name, Username: u.Username, AvatarURL: base + "/uploads/-/system/user/avatar/" + fmt.Sprint(u.ID) + "/avatar.png", Email: u.Email}
}

// HookRunner is the runner that picked a job; nil in a spec is JSON null,
// as GitLab sends until a runner picks the job. Tags are the runner's, not
// the job's: no webhook carries a job's tags.
type HookRunner struct {
	ID          int64
	Description string
	RunnerType  string // project_type when empty
	Tags        []string
	Paused      bool
}

type hookRunnerJSON struct {
	ID          int64    `json:"id"`
	Description string   `json:"description"`
	RunnerType  string   `json:"runner_type"`
	Active      bool     `json:"active"`
	IsShared    bool     `json:"is_shared"`
	Tags        []string `json:"tags"`
}

func (r *HookRunner) json() *hookRunnerJSON {
	if r == nil {
		return nil
	}
	typ := r.RunnerType
	if typ == "" {
		typ = "project_type"
	}
	tags := r.Tags
	if tags == nil {
		tags = []string{}
	}
	return &hookRunnerJSON{ID: r.ID, Description: r.Description, RunnerType: typ, Active: !r.Paused, IsShared: typ == "instance_type", Tags: tags}
}

// JobHookSpec describes a Job Hook. Zero fields take plausible defaults.
type JobHookSpec struct {
	Project    HookProject
	JobID      int64
	Name       string // test when empty
	Stage      string // test when empty
	Status     string // pending when empty
	PipelineID int64
	Ref        string // main when empty
	Tag        bool
	SHA        string // derived from the pipeline when empty
	BeforeSHA  string
	CreatedAt  time.Time // now when zero
	StartedAt  *time.Time
	FinishedAt *time.Time
	// Duration and QueuedDuration are sent as seconds; zero is null.
	Duration       time.Duration
	QueuedDuration time.Duration
	AllowFailure   bool
	// FailureReason is sent as given; GitLab sends unknown_failure even for
	// successful jobs, which is the default here.
	FailureReason string
	RetriesCount  int
	User          HookUser
	Runner        *HookRunner
	// OldTimestamps writes build_*_at as 2021-02-23T02:41:37.886Z, as some
	// instances do, instead of 2024-06-11 03:02:25 UTC.
	OldTimestamps bool
	// NoISO leaves out the *_iso fields, as instances before 17.x do.
	NoISO bool
}

type jobHookCommitJSON struct {
	ID          int64   `json:"id"`
	Name        *string `json:"name"`
	SHA         string  `json:"sha"`
	Message     string  `json:"message"`
	AuthorName  string  `json:"author_name"`
	AuthorEmail string  `json:"author_email"`
	AuthorURL   string  `json:"author_url"`
	Status      string  `json:"status"`
	Duration    *int64  `json:"duration"`
	StartedAt   *string `json:"started_at"`
	FinishedAt  *string `json:"finished_at"`
}

type jobHookJSON struct {
	ObjectKind          string             `json:"object_kind"`
	Ref                 string             `json:"ref"`
	Tag                 bool               `json:"tag"`
	BeforeSHA           string             `json:"before_sha"`
	SHA                 string             `json:"sha"`
	RetriesCount        int                `json:"retries_count"`
	BuildID             int64              `json:"build_id"`
	BuildName           string             `json:"build_name"`
	BuildStage          string             `json:"build_stage"`
	BuildStatus         string             `json:"build_status"`
	BuildCreatedAt      string             `json:"build_created_at"`
	BuildStartedAt      *string            `json:"build_started_at"`
	BuildFinishedAt     *string            `json:"build_finished_at"`
	BuildCreatedAtISO   json.RawMessage    `json:"build_created_at_iso,omitempty"`
	BuildStartedAtISO   json.RawMessage    `json:"build_started_at_iso,omitempty"`
	BuildFinishedAtISO  json.RawMessage    `json:"build_finished_at_iso,omitempty"`
	BuildDuration       *float64           `json:"build_duration"`
	BuildQueuedDuration *float64           `json:"build_queued_duration"`
	BuildAllowFailure   bool               `json:"build_allow_failure"`
	BuildFailureReason  string             `json:"build_failure_reason"`
	PipelineID          int64              `json:"pipeline_id"`
	Runner              *hookRunnerJSON    `json:"runner"`
	ProjectID           int64              `json:"project_id"`
	ProjectName         string             `json:"project_name"`
	User                hookUserJSON       `json:"user"`
	Commit              jobHookCommitJSON  `json:"commit"`
	Repository          hookRepositoryJSON `json:"repository"`
	Project             hookProjectJSON    `json:"project"`
	Environment         any                `json:"environment"`
}

func hookTime(t time.Time) string { return t.UTC().Format(HookTimeLayout) }

func hookTimePtr(t *time.Time, layout string) *string {
	if t == nil {
		return nil
	}
	s := t.UTC().Format(layout)
	return &s
}

func seconds(d time.Duration) *float64 {
	if d == 0 {
		return nil
	}
	s := d.Seconds()
	return &s
}

// JobHookPayload renders a Job Hook body (object_kind "build") the way
// GitLab's data builder does.
func JobHookPayload(spec JobHookSpec) []byte {
	if spec.Name == "" {
		spec.Name = "test"
	}
	if spec.Stage == "" {
		spec.Stage = "test"
	}
	if spec.Status == "" {
		spec.Status = "pending"
	}
	if spec.Ref == "" {
		spec.Ref = "main"
	}
	if spec.SHA == "" {
		spec.SHA = commitSHA(spec.PipelineID)
	}
	if spec.BeforeSHA == "" {
		spec.BeforeSHA = spec.SHA
	}
	if spec.CreatedAt.IsZero() {
		spec.CreatedAt = time.Now()
	}
	if spec.FailureReason == "" {
		spec.FailureReason = "unknown_failure"
	}
	base := spec.Project.base()
	layout := HookTimeLayout
	if spec.OldTimestamps {
		layout = APITimeLayout
	}
	user := spec.User.json(base)
	out := jobHookJSON{
		ObjectKind: "build", Ref: spec.Ref, Tag: spec.Tag, BeforeSHA: spec.BeforeSHA, SHA: spec.SHA,
		RetriesCount: spec.RetriesCount,
		BuildID:      spec.JobID, BuildName: spec.Name, BuildStage: spec.Stage, BuildStatus: spec.Status,
		BuildCreatedAt:      spec.CreatedAt.UTC().Format(layout),
		BuildStartedAt:      hookTimePtr(spec.StartedAt, layout),
		BuildFinishedAt:     hookTimePtr(spec.FinishedAt, layout),
		BuildDuration:       seconds(spec.Duration),
		BuildQueuedDuration: seconds(spec.QueuedDuration),
		BuildAllowFailure:   spec.AllowFailure, BuildFailureReason: spec.FailureReason,
		PipelineID: spec.PipelineID, Runner: spec.Runner.json(),
		ProjectID: spec.Project.ID, ProjectName: spec.Project.fullName(),
		User: user,
		// In a Job Hook, commit.id is the pipeline's ID, not a SHA.
		Commit: jobHookCommitJSON{
			ID: spec.PipelineID, SHA: spec.SHA, Message: "Update .gitlab-ci.yml\n",
			AuthorName: user.Name, AuthorEmail: user.Email, AuthorURL: base + "/" + user.Username,
			Status: spec.Status, StartedAt: hookTimePtr(spec.StartedAt, HookTimeLayout), FinishedAt: hookTimePtr(spec.FinishedAt, HookTimeLayout),
		},
		Repository: spec.Project.repository(),
		Project:    spec.Project.json(),
	}
	if !spec.NoISO {
		created := spec.CreatedAt
		out.BuildCreatedAtISO = isoField(&created)
		out.BuildStartedAtISO = isoField(spec.StartedAt)
		out.BuildFinishedAtISO = isoField(spec.FinishedAt)
	}
	return mustJSON(out)
}

// isoField is a *_iso value: the time in RFC 3339, or null.
func isoField(t *time.Time) json.RawMessage {
	if t == nil {
		return json.RawMessage("null")
	}
	return json.RawMessage(`"` + t.UTC().Format(HookISOTimeLayout) + `"`)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("gitlabtest: encode payload: %v", err))
	}
	return b
}

// JobHook describes one of the server's jobs as a Job Hook would, in its
// current status and with the runner that picked it, if any.
func (s *Server) JobHook(jobID int64) (JobHookSpec, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobID]
	if !ok {
		return JobHookSpec{}, false
	}
	return s.jobHookSpec(j), true
}

// jobHookSpec describes a job for its Job Hook. The caller holds s.mu.
func (s *Server) jobHookSpec(j *job) JobHookSpec {
	p := s.projects[j.ProjectID]
	spec := JobHookSpec{
		Project: HookProject{ID: p.ID, PathWithNamespace: p.PathWithNamespace, BaseURL: s.URL()},
		JobID:   j.ID, Name: j.Name, Stage: j.Stage, Status: j.Status, PipelineID: j.PipelineID, Ref: j.Ref,
		SHA:       s.pipelineSHA(j.PipelineID),
		CreatedAt: j.CreatedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
		AllowFailure: j.AllowFailure, RetriesCount: j.RetriesCount,
	}
	if pl, ok := s.pipelines[j.PipelineID]; ok {
		spec.BeforeSHA = pl.BeforeSHA
	}
	if j.Status == "failed" {
		spec.FailureReason = j.FailureReason
	}
	spec.QueuedDuration, spec.Duration = s.jobDurations(j)
	if r, ok := s.runners[j.RunnerID]; ok {
		spec.Runner = s.hookRunner(r)
	}
	return spec
}

// jobDurations are a job's time in the queue and its run time so far.
func (s *Server) jobDurations(j *job) (queued, run time.Duration) {
	if j.StartedAt == nil {
		return 0, 0
	}
	end := s.now()
	if j.FinishedAt != nil {
		end = *j.FinishedAt
	}
	return j.StartedAt.Sub(j.CreatedAt), end.Sub(*j.StartedAt)
}

func (s *Server) hookRunner(r *runner) *HookRunner {
	return &HookRunner{ID: r.ID, Description: r.Description, RunnerType: r.Type, Tags: slices.Clone(r.Tags), Paused: r.Paused}
}

// pipelineHookSpec describes a pipeline for its Pipeline Hook. The caller
// holds s.mu.
func (s *Server) pipelineHookSpec(p *pipeline) PipelineHookSpec {
	pr := s.projects[p.ProjectID]
	spec := PipelineHookSpec{
		Project:    HookProject{ID: pr.ID, PathWithNamespace: pr.PathWithNamespace, BaseURL: s.URL()},
		PipelineID: p.ID, IID: p.IID, Status: p.Status, Source: p.Source, Ref: p.Ref, SHA: p.SHA, BeforeSHA: p.BeforeSHA,
		Stages: slices.Clone(p.Stages), CreatedAt: p.CreatedAt, FinishedAt: p.FinishedAt, Variables: slices.Clone(p.Variables),
	}
	if p.StartedAt != nil {
		spec.QueuedDuration = p.StartedAt.Sub(p.CreatedAt)
		if p.FinishedAt != nil {
			spec.Duration = p.FinishedAt.Sub(*p.StartedAt)
		}
	}
	for _, j := range s.pipelineJobs(p.ID) {
		b := PipelineBuild{
			ID: j.ID, Stage: j.Stage, Name: j.Name, Status: j.Status, CreatedAt: j.CreatedAt,
			StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, AllowFailure: j.AllowFailure, When: j.When,
		}
		b.QueuedDuration, b.Duration = s.jobDurations(j)
		if j.Status == "failed" {
			b.FailureReason = j.FailureReason
		}
		if r, ok := s.runners[j.RunnerID]; ok {
			b.Runner = s.hookRunner(r)
		}
		spec.Builds = append(spec.Builds, b)
	}
	return spec
}

// PipelineBuild is one job of a Pipeline Hook's builds[].
type PipelineBuild struct {
	ID             int64
	Stage          string
	Name           string
	Status         string
	CreatedAt      time.Time
	StartedAt      *time.Time
	FinishedAt     *time.Time
	Duration       time.Duration
	QueuedDuration time.Duration
	FailureReason  string
	AllowFailure   bool
	// When is on_success when empty, or always; Manual makes it manual.
	When   string
	Manual bool
	Runner *HookRunner
}

// PipelineHookSpec describes a Pipeline Hook.
type PipelineHookSpec struct {
	Project        HookProject
	PipelineID     int64
	IID            int64
	Status         string // running when empty
	Source         string // push when empty
	Ref            string // main when empty
	Tag            bool
	SHA            string
	BeforeSHA      string
	Stages         []string
	CreatedAt      time.Time
	FinishedAt     *time.Time
	Duration       time.Duration
	QueuedDuration time.Duration
	User           HookUser
	Builds         []PipelineBuild
	// Variables are the pipeline's own variables, sent as [{key, value}].
	Variables []Variable
	// MergeRequest is the merge request a merge request pipeline runs
	// for; nil sends null.
	MergeRequest *HookMergeRequest
}

type pipelineAttributesJSON struct {
	ID             int64    `json:"id"`
	IID            int64    `json:"iid"`
	Name           *string  `json:"name"`
	Ref            string   `json:"ref"`
	Tag            bool     `json:"tag"`
	SHA            string   `json:"sha"`
	BeforeSHA      string   `json:"before_sha"`
	Source         string   `json:"source"`
	Status         string   `json:"status"`
	DetailedStatus string   `json:"detailed_status"`
	Stages         []string `json:"stages"`
	CreatedAt      string   `json:"created_at"`
	FinishedAt     *string  `json:"finished_at"`
	Duration       *int64   `json:"duration"`
	QueuedDuration *int64   `json:"queued_duration"`
	Variables      []any    `json:"variables"`
	URL            string   `json:"url"`
}

type pipelineCommitJSON struct {
	ID        string            `json:"id"`
	Message   string            `json:"message"`
	Title     string            `json:"title"`
	Timestamp string            `json:"timestamp"`
	URL       string            `json:"url"`
	Author    map[string]string `json:"author"`
}

type pipelineBuildJSON struct {
	ID             int64           `json:"id"`
	Stage          string          `json:"stage"`
	Name           string          `json:"name"`
	Status         string          `json:"status"`
	CreatedAt      string          `json:"created_at"`
	StartedAt      *string         `json:"started_at"`
	FinishedAt     *string         `json:"finished_at"`
	Duration       *float64        `json:"duration"`
	QueuedDuration *float64        `json:"queued_duration"`
	FailureReason  *string         `json:"failure_reason"`
	When           string          `json:"when"`
	Manual         bool            `json:"manual"`
	AllowFailure   bool            `json:"allow_failure"`
	User           hookUserJSON    `json:"user"`
	Runner         *hookRunnerJSON `json:"runner"`
	ArtifactsFile  map[string]any  `json:"artifacts_file"`
	Environment    any             `json:"environment"`
}

type pipelineHookJSON struct {
	ObjectKind       string                 `json:"object_kind"`
	ObjectAttributes pipelineAttributesJSON `json:"object_attributes"`
	MergeRequest     any                    `json:"merge_request"`
	User             hookUserJSON           `json:"user"`
	Project          hookProjectJSON        `json:"project"`
	Commit           pipelineCommitJSON     `json:"commit"`
	Builds           []pipelineBuildJSON    `json:"builds"`
}

func wholeSeconds(d time.Duration) *int64 {
	if d == 0 {
		return nil
	}
	s := int64(d / time.Second)
	return &s
}

// PipelineHookPayload renders a Pipeline Hook body (object_kind "pipeline").
func PipelineHookPayload(spec PipelineHookSpec) []byte {
	if spec.Status == "" {
		spec.Status = "running"
	}
	if spec.Source == "" {
		spec.Source = "push"
	}
	if spec.Ref == "" {
		spec.Ref = "main"
	}
	if spec.SHA == "" {
		spec.SHA = commitSHA(spec.PipelineID)
	}
	if spec.BeforeSHA == "" {
		spec.BeforeSHA = spec.SHA
	}
	if spec.IID == 0 {
		spec.IID = spec.PipelineID
	}
	if spec.CreatedAt.IsZero() {
		spec.CreatedAt = time.Now()
	}
	base := spec.Project.base()
	user := spec.User.json(base)
	stages := spec.Stages
	if stages == nil {
		seen := map[string]bool{}
		stages = []string{}
		for _, b := range spec.Builds {
			if !seen[b.Stage] {
				seen[b.Stage] = true
				stages = append(stages, b.Stage)
			}
		}
	}
	web := base + "/" + spec.Project.PathWithNamespace
	out := pipelineHookJSON{
		ObjectKind: "pipeline",
		ObjectAttributes: pipelineAttributesJSON{
			ID: spec.PipelineID, IID: spec.IID, Ref: spec.Ref, Tag: spec.Tag, SHA: spec.SHA, BeforeSHA: spec.BeforeSHA,
			Source: spec.Source, Status: spec.Status, DetailedStatus: spec.Status, Stages: stages,
			CreatedAt: hookTime(spec.CreatedAt), FinishedAt: hookTimePtr(spec.FinishedAt, HookTimeLayout),
			Duration: wholeSeconds(spec.Duration), QueuedDuration: wholeSeconds(spec.QueuedDuration),
			Variables: []any{}, URL: fmt.Sprintf("%s/-/pipelines/%d", web, spec.PipelineID),
		},
		User:    user,
		Project: spec.Project.json(),
		// Here commit.id is the SHA, unlike in a Job Hook.
		Commit: pipelineCommitJSON{
			ID: spec.SHA, Message: "Update .gitlab-ci.yml\n", Title: "Update .gitlab-ci.yml",
			Timestamp: spec.CreatedAt.UTC().Format(HookISOTimeLayout), URL: web + "/-/commit/" + spec.SHA,
			Author: map[string]string{"name": user.Name, "email": user.Email},
		},
		Builds: []pipelineBuildJSON{},
	}
	if mr := spec.MergeRequest; mr != nil {
		out.MergeRequest = mr.pipelineJSON(spec.Project)
	}
	for _, v := range spec.Variables {
		out.ObjectAttributes.Variables = append(out.ObjectAttributes.Variables, map[string]string{"key": v.Key, "value": v.Value})
	}
	for _, b := range spec.Builds {
		created := b.CreatedAt
		if created.IsZero() {
			created = spec.CreatedAt
		}
		when := cmp.Or(b.When, "on_success")
		if b.Manual {
			when = "manual"
		}
		bj := pipelineBuildJSON{
			ID: b.ID, Stage: b.Stage, Name: b.Name, Status: b.Status, CreatedAt: hookTime(created),
			StartedAt: hookTimePtr(b.StartedAt, HookTimeLayout), FinishedAt: hookTimePtr(b.FinishedAt, HookTimeLayout),
			Duration: seconds(b.Duration), QueuedDuration: seconds(b.QueuedDuration),
			When: when, Manual: b.Manual, AllowFailure: b.AllowFailure, User: user, Runner: b.Runner.json(),
			ArtifactsFile: map[string]any{"filename": nil, "size": nil},
		}
		if b.FailureReason != "" {
			reason := b.FailureReason
			bj.FailureReason = &reason
		}
		out.Builds = append(out.Builds, bj)
	}
	return mustJSON(out)
}

// PushHookSpec describes a Push Hook.
type PushHookSpec struct {
	Project HookProject
	// Ref is the full ref, such as refs/heads/main (the default).
	Ref    string
	Before string
	After  string
	User   HookUser
	// Commits are the pushed commits' messages, oldest first.
	Commits []string
}

type pushCommitJSON struct {
	ID        string            `json:"id"`
	Message   string            `json:"message"`
	Title     string            `json:"title"`
	Timestamp string            `json:"timestamp"`
	URL       string            `json:"url"`
	Author    map[string]string `json:"author"`
	Added     []string          `json:"added"`
	Modified  []string          `json:"modified"`
	Removed   []string          `json:"removed"`
}

type pushHookJSON struct {
	ObjectKind        string             `json:"object_kind"`
	EventName         string             `json:"event_name"`
	Before            string             `json:"before"`
	After             string             `json:"after"`
	Ref               string             `json:"ref"`
	RefProtected      bool               `json:"ref_protected"`
	CheckoutSHA       string             `json:"checkout_sha"`
	Message           *string            `json:"message"`
	UserID            int64              `json:"user_id"`
	UserName          string             `json:"user_name"`
	UserUsername      string             `json:"user_username"`
	UserEmail         string             `json:"user_email"`
	UserAvatar        string             `json:"user_avatar"`
	ProjectID         int64              `json:"project_id"`
	Project           hookProjectJSON    `json:"project"`
	Commits           []pushCommitJSON   `json:"commits"`
	TotalCommitsCount int                `json:"total_commits_count"`
	Repository        hookRepositoryJSON `json:"repository"`
}

// PushHookPayload renders a Push Hook body (object_kind "push").
func PushHookPayload(spec PushHookSpec) []byte {
	if spec.Ref == "" {
		spec.Ref = "refs/heads/main"
	}
	if spec.After == "" {
		spec.After = commitSHA(time.Now().UnixNano())
	}
	if spec.Before == "" {
		spec.Before = strings.Repeat("0", 40)
	}
	if len(spec.Commits) == 0 {
		spec.Commits = []string{"Update the Nest"}
	}
	base := spec.Project.base()
	user := spec.User.json(base)
	web := base + "/" + spec.Project.PathWithNamespace
	out := pushHookJSON{
		ObjectKind: "push", EventName: "push", Before: spec.Before, After: spec.After, Ref: spec.Ref,
		RefProtected: true, CheckoutSHA: spec.After,
		UserID: user.ID, UserName: user.Name, UserUsername: user.Username, UserEmail: user.Email, UserAvatar: user.AvatarURL,
		ProjectID: spec.Project.ID, Project: spec.Project.json(),
		TotalCommitsCount: len(spec.Commits), Repository: spec.Project.repository(),
	}
	now := time.Now().UTC().Format(HookISOTimeLayout)
	for i, msg := range spec.Commits {
		id := commitSHA(int64(i))
		if i == len(spec.Commits)-1 {
			id = spec.After
		}
		out.Commits = append(out.Commits, pushCommitJSON{
			ID: id, Message: msg + "\n", Title: msg, Timestamp: now, URL: web + "/-/commit/" + id,
			Author: map[string]string{"name": user.Name, "email": user.Email},
			Added:  []string{}, Modified: []string{"Eggs/web/config.fly"}, Removed: []string{},
		})
	}
	return mustJSON(out)
}

// NewUUID returns a random (version 4) UUID, as GitLab's webhook headers
// carry.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("gitlabtest: random UUID: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// HookRequest builds a webhook delivery to url the way GitLab sends it:
// X-Gitlab-Event, X-Gitlab-Token (only when token is set), X-Gitlab-Instance
// (this server's URL), a new X-Gitlab-Webhook-UUID and X-Gitlab-Event-UUID,
// Idempotency-Key (a new one when empty; GitLab keeps it across retries and
// manual resends), User-Agent and Content-Type.
func (s *Server) HookRequest(ctx context.Context, url, event, token string, body []byte, idempotencyKey string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("webhook request: %w", err)
	}
	if idempotencyKey == "" {
		idempotencyKey = NewUUID()
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", UserAgent)
	h.Set("X-Gitlab-Event", event)
	if token != "" {
		h.Set("X-Gitlab-Token", token)
	}
	if base := s.URL(); base != "" {
		h.Set("X-Gitlab-Instance", base)
	}
	h.Set("X-Gitlab-Webhook-UUID", NewUUID())
	h.Set("X-Gitlab-Event-UUID", NewUUID())
	h.Set("Idempotency-Key", idempotencyKey)
	return req, nil
}

// hookClient waits as long as GitLab does for an answer.
var hookClient = &http.Client{Timeout: 10 * time.Second}

// Deliver sends a webhook to url as GitLab does (see HookRequest) and returns
// the answer; the caller closes its body.
func (s *Server) Deliver(ctx context.Context, url, event, token string, body []byte, idempotencyKey string) (*http.Response, error) {
	req, err := s.HookRequest(ctx, url, event, token, body, idempotencyKey)
	if err != nil {
		return nil, err
	}
	resp, err := hookClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("deliver %s to %s: %w", event, url, err)
	}
	return resp, nil
}
