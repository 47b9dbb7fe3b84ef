package gitlabtest

import (
	"cmp"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

var jobStatuses = []string{
	"created", "waiting_for_resource", "preparing", "pending", "running", "success", "failed",
	"canceled", "skipped", "manual", "scheduled", "canceling", "waiting_for_callback",
}

type namespaceJSON struct {
	ID        int64   `json:"id"`
	Name      string  `json:"name"`
	Path      string  `json:"path"`
	Kind      string  `json:"kind"`
	FullPath  string  `json:"full_path"`
	ParentID  *int64  `json:"parent_id"`
	AvatarURL *string `json:"avatar_url"`
	WebURL    string  `json:"web_url"`
}

type sharedGroupJSON struct {
	GroupID          int64   `json:"group_id"`
	GroupName        string  `json:"group_name"`
	GroupFullPath    string  `json:"group_full_path"`
	GroupAccessLevel int     `json:"group_access_level"`
	ExpiresAt        *string `json:"expires_at"`
}

// projectJSON is the part of GitLab's Entities::Project a client can use.
type projectJSON struct {
	ID                int64             `json:"id"`
	Description       *string           `json:"description"`
	Name              string            `json:"name"`
	NameWithNamespace string            `json:"name_with_namespace"`
	Path              string            `json:"path"`
	PathWithNamespace string            `json:"path_with_namespace"`
	CreatedAt         string            `json:"created_at"`
	DefaultBranch     string            `json:"default_branch"`
	TagList           []string          `json:"tag_list"`
	Topics            []string          `json:"topics"`
	SSHURLToRepo      string            `json:"ssh_url_to_repo"`
	HTTPURLToRepo     string            `json:"http_url_to_repo"`
	WebURL            string            `json:"web_url"`
	ReadmeURL         *string           `json:"readme_url"`
	ForksCount        int               `json:"forks_count"`
	AvatarURL         *string           `json:"avatar_url"`
	StarCount         int               `json:"star_count"`
	LastActivityAt    string            `json:"last_activity_at"`
	Namespace         namespaceJSON     `json:"namespace"`
	Visibility        string            `json:"visibility"`
	Archived          bool              `json:"archived"`
	EmptyRepo         bool              `json:"empty_repo"`
	SharedWithGroups  []sharedGroupJSON `json:"shared_with_groups"`
}

func (s *Server) nameWithNamespace(p *project) string {
	var names []string
	for g := s.groups[p.GroupID]; g != nil; g = s.groups[g.ParentID] {
		names = append([]string{g.Name}, names...)
	}
	if p.GroupID == 0 {
		names = []string{p.PathWithNamespace[:strings.Index(p.PathWithNamespace, "/")]}
	}
	return strings.Join(append(names, p.Name), " / ")
}

func (s *Server) projectJSON(r *http.Request, p *project) projectJSON {
	base := baseURL(r)
	ns := namespaceJSON{Kind: "user"}
	if g, ok := s.groups[p.GroupID]; ok {
		ns = namespaceJSON{ID: g.ID, Name: g.Name, Path: g.Path, Kind: "group", FullPath: g.FullPath}
		if g.ParentID != 0 {
			parent := g.ParentID
			ns.ParentID = &parent
		}
		ns.WebURL = base + "/groups/" + g.FullPath
	} else {
		ns.Path = p.PathWithNamespace[:strings.Index(p.PathWithNamespace, "/")]
		ns.Name, ns.FullPath, ns.WebURL = ns.Path, ns.Path, base+"/"+ns.Path
	}
	out := projectJSON{
		ID:                p.ID,
		Name:              p.Name,
		NameWithNamespace: s.nameWithNamespace(p),
		Path:              p.Path,
		PathWithNamespace: p.PathWithNamespace,
		CreatedAt:         timestamp(p.createdAt),
		DefaultBranch:     "main",
		TagList:           []string{},
		Topics:            []string{},
		SSHURLToRepo:      fmt.Sprintf("git@%s:%s.git", r.Host, p.PathWithNamespace),
		HTTPURLToRepo:     base + "/" + p.PathWithNamespace + ".git",
		WebURL:            base + "/" + p.PathWithNamespace,
		LastActivityAt:    timestamp(p.createdAt),
		Namespace:         ns,
		Visibility:        "private",
		Archived:          p.Archived,
		SharedWithGroups:  []sharedGroupJSON{},
	}
	for _, gid := range p.SharedWith {
		if g, ok := s.groups[gid]; ok {
			out.SharedWithGroups = append(out.SharedWithGroups, sharedGroupJSON{GroupID: g.ID, GroupName: g.Name, GroupFullPath: g.FullPath, GroupAccessLevel: 30})
		}
	}
	return out
}

// lookupProject finds a project by numeric ID or URL-encoded path, answering
// 404 like GitLab otherwise. The caller holds s.mu.
func (s *Server) lookupProject(w http.ResponseWriter, r *http.Request) (*project, bool) {
	ref := r.PathValue("id")
	var p *project
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		p = s.projects[id]
	} else {
		p = s.projectByPath(ref)
	}
	if p == nil {
		writeMessage(w, http.StatusNotFound, "404 Project Not Found")
		return nil, false
	}
	return p, true
}

func (s *Server) lookupGroup(w http.ResponseWriter, r *http.Request) (*group, bool) {
	ref := r.PathValue("id")
	var g *group
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		g = s.groups[id]
	} else {
		g = s.groupByFullPath(ref)
	}
	if g == nil {
		writeMessage(w, http.StatusNotFound, "404 Group Not Found")
		return nil, false
	}
	return g, true
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.projectJSON(r, p))
}

// listGroupProjects is GET /groups/:id/projects. Like GitLab,
// include_subgroups defaults to false and with_shared to true; newest first.
func (s *Server) listGroupProjects(w http.ResponseWriter, r *http.Request, _ *user) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	flag := func(key string, def bool) (bool, bool) {
		if !p.has(key) {
			return def, true
		}
		v, ok := p.boolean(key)
		if !ok {
			writeParamError(w, key+" is invalid")
		}
		return v, ok
	}
	subgroups, ok := flag("include_subgroups", false)
	if !ok {
		return
	}
	shared, ok := flag("with_shared", true)
	if !ok {
		return
	}
	archivedFilter, filterArchived := p.boolean("archived")

	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.lookupGroup(w, r)
	if !ok {
		return
	}
	groups := map[int64]bool{g.ID: true}
	if subgroups {
		groups = s.descendants(g.ID)
	}
	var matched []*project
	for _, pr := range s.projects {
		in := groups[pr.GroupID]
		if !in && shared {
			in = slices.ContainsFunc(pr.SharedWith, func(id int64) bool { return groups[id] })
		}
		if in && (!filterArchived || pr.Archived == archivedFilter) {
			matched = append(matched, pr)
		}
	}
	slices.SortFunc(matched, func(a, b *project) int { return cmp.Compare(b.ID, a.ID) })
	page, ok := paginate(w, r, matched)
	if !ok {
		return
	}
	out := make([]projectJSON, 0, len(page))
	for _, pr := range page {
		out = append(out, s.projectJSON(r, pr))
	}
	writeJSON(w, http.StatusOK, out)
}

// hookJSON is GitLab's Entities::ProjectHook; the secret token is never
// returned.
type hookJSON struct {
	ID                       int64   `json:"id"`
	URL                      string  `json:"url"`
	Name                     string  `json:"name"`
	Description              string  `json:"description"`
	ProjectID                int64   `json:"project_id"`
	PushEvents               bool    `json:"push_events"`
	PushEventsBranchFilter   string  `json:"push_events_branch_filter"`
	IssuesEvents             bool    `json:"issues_events"`
	ConfidentialIssuesEvents bool    `json:"confidential_issues_events"`
	MergeRequestsEvents      bool    `json:"merge_requests_events"`
	TagPushEvents            bool    `json:"tag_push_events"`
	NoteEvents               bool    `json:"note_events"`
	ConfidentialNoteEvents   bool    `json:"confidential_note_events"`
	JobEvents                bool    `json:"job_events"`
	PipelineEvents           bool    `json:"pipeline_events"`
	WikiPageEvents           bool    `json:"wiki_page_events"`
	DeploymentEvents         bool    `json:"deployment_events"`
	ReleasesEvents           bool    `json:"releases_events"`
	EnableSSLVerification    bool    `json:"enable_ssl_verification"`
	RepositoryUpdateEvents   bool    `json:"repository_update_events"`
	AlertStatus              string  `json:"alert_status"`
	DisabledUntil            *string `json:"disabled_until"`
	URLVariables             []any   `json:"url_variables"`
	CreatedAt                string  `json:"created_at"`
	CustomWebhookTemplate    string  `json:"custom_webhook_template"`
	TokenPresent             bool    `json:"token_present"`
	CustomHeaders            []any   `json:"custom_headers"`
}

func (s *Server) hookToJSON(h *hook) hookJSON {
	out := hookJSON{
		ID:                    h.ID,
		URL:                   h.URL,
		Name:                  h.Name,
		Description:           h.Description,
		TokenPresent:          h.Token != "",
		ProjectID:             h.ProjectID,
		PushEvents:            h.PushEvents,
		MergeRequestsEvents:   h.MergeRequestsEvents,
		TagPushEvents:         h.TagPushEvents,
		JobEvents:             h.JobEvents,
		PipelineEvents:        h.PipelineEvents,
		EnableSSLVerification: h.EnableSSLVerification,
		AlertStatus:           "executable",
		URLVariables:          []any{},
		CreatedAt:             timestamp(h.CreatedAt),
		CustomHeaders:         []any{},
	}
	switch {
	case !s.autoDisable:
	case h.PermanentlyDisabled:
		out.AlertStatus = "disabled"
	case h.DisabledUntil != nil && h.DisabledUntil.After(s.now()):
		out.AlertStatus = "temporarily_disabled"
		out.DisabledUntil = timestampPtr(h.DisabledUntil)
	}
	return out
}

func (s *Server) listProjectHooks(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	page, ok := paginate(w, r, s.sortedHooks(p.ID))
	if !ok {
		return
	}
	out := make([]hookJSON, 0, len(page))
	for _, h := range page {
		out = append(out, s.hookToJSON(h))
	}
	writeJSON(w, http.StatusOK, out)
}

// addProjectHook is POST /projects/:id/hooks. GitLab's defaults:
// push_events and enable_ssl_verification true, every other event false.
func (s *Server) addProjectHook(w http.ResponseWriter, r *http.Request, _ *user) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	if !p.has("url") {
		writeParamError(w, "url is missing")
		return
	}
	h := &hook{Hook{PushEvents: true, EnableSSLVerification: true}}
	if !applyHookParams(w, p, h) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	h.ID = s.newID("hook")
	h.ProjectID = pr.ID
	h.CreatedAt = s.now().UTC()
	s.hooks[h.ID] = h
	writeJSON(w, http.StatusCreated, s.hookToJSON(h))
}

// applyHookParams sets the hook attributes a create or edit sends; it
// answers the request itself and returns false when one is invalid.
func applyHookParams(w http.ResponseWriter, p params, h *hook) bool {
	for key, dst := range map[string]*string{"url": &h.URL, "token": &h.Token, "name": &h.Name, "description": &h.Description} {
		if p.has(key) {
			*dst = p.str(key)
		}
	}
	for key, dst := range map[string]*bool{
		"push_events":             &h.PushEvents,
		"tag_push_events":         &h.TagPushEvents,
		"merge_requests_events":   &h.MergeRequestsEvents,
		"job_events":              &h.JobEvents,
		"pipeline_events":         &h.PipelineEvents,
		"enable_ssl_verification": &h.EnableSSLVerification,
	} {
		if !p.has(key) {
			continue
		}
		v, ok := p.boolean(key)
		if !ok {
			writeParamError(w, key+" is invalid")
			return false
		}
		*dst = v
	}
	// Unlike a default GitLab, which blocks hooks to local addresses, this
	// server accepts them: tests point hooks at 127.0.0.1.
	if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": map[string][]string{"url": {"is blocked: Only allowed schemes are http, https"}}})
		return false
	}
	return true
}

// projectHook finds hook {hook_id} of project {id}, answering 404 itself.
func (s *Server) projectHook(w http.ResponseWriter, r *http.Request) (*hook, bool) {
	pr, ok := s.lookupProject(w, r)
	if !ok {
		return nil, false
	}
	id, err := strconv.ParseInt(r.PathValue("hook_id"), 10, 64)
	h := s.hooks[id]
	if err != nil || h == nil || h.ProjectID != pr.ID {
		writeMessage(w, http.StatusNotFound, "404 Not found")
		return nil, false
	}
	return h, true
}

// editProjectHook is PUT /projects/:id/hooks/:hook_id: the attributes sent
// change, the others stay; a token left out is kept. Saving a hook
// re-enables it, as GitLab does.
func (s *Server) editProjectHook(w http.ResponseWriter, r *http.Request, _ *user) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.projectHook(w, r)
	if !ok {
		return
	}
	edited := *h
	if !applyHookParams(w, p, &edited) {
		return
	}
	edited.RecentFailures, edited.BackoffCount, edited.DisabledUntil, edited.PermanentlyDisabled = 0, 0, nil, false
	*h = edited
	writeJSON(w, http.StatusOK, s.hookToJSON(h))
}

// deleteProjectHook is DELETE /projects/:id/hooks/:hook_id (204).
func (s *Server) deleteProjectHook(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.projectHook(w, r)
	if !ok {
		return
	}
	delete(s.hooks, h.ID)
	w.WriteHeader(http.StatusNoContent)
}

type jobUserJSON struct {
	ID        int64   `json:"id"`
	Username  string  `json:"username"`
	Name      string  `json:"name"`
	State     string  `json:"state"`
	AvatarURL *string `json:"avatar_url"`
	WebURL    string  `json:"web_url"`
}

type commitJSON struct {
	ID          string   `json:"id"`
	ShortID     string   `json:"short_id"`
	CreatedAt   string   `json:"created_at"`
	ParentIDs   []string `json:"parent_ids"`
	Title       string   `json:"title"`
	Message     string   `json:"message"`
	AuthorName  string   `json:"author_name"`
	AuthorEmail string   `json:"author_email"`
	WebURL      string   `json:"web_url"`
}

type pipelineJSON struct {
	ID        int64  `json:"id"`
	IID       int64  `json:"iid"`
	ProjectID int64  `json:"project_id"`
	SHA       string `json:"sha"`
	Ref       string `json:"ref"`
	Status    string `json:"status"`
	Source    string `json:"source"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
	WebURL    string `json:"web_url"`
}

// jobProjectJSON is the project as GET /runners/:id/jobs embeds it.
type jobProjectJSON struct {
	ID                int64  `json:"id"`
	Name              string `json:"name"`
	NameWithNamespace string `json:"name_with_namespace"`
	Path              string `json:"path"`
	PathWithNamespace string `json:"path_with_namespace"`
	CreatedAt         string `json:"created_at"`
}

// jobJSON is GitLab's Entities::Ci::Job. runner is null until a runner
// picks the job.
type jobJSON struct {
	ID                int64           `json:"id"`
	Status            string          `json:"status"`
	Stage             string          `json:"stage"`
	Name              string          `json:"name"`
	Ref               string          `json:"ref"`
	Tag               bool            `json:"tag"`
	Coverage          *float64        `json:"coverage"`
	AllowFailure      bool            `json:"allow_failure"`
	CreatedAt         string          `json:"created_at"`
	StartedAt         *string         `json:"started_at"`
	FinishedAt        *string         `json:"finished_at"`
	ErasedAt          *string         `json:"erased_at"`
	Duration          *float64        `json:"duration"`
	QueuedDuration    *float64        `json:"queued_duration"`
	User              jobUserJSON     `json:"user"`
	Commit            commitJSON      `json:"commit"`
	Pipeline          pipelineJSON    `json:"pipeline"`
	WebURL            string          `json:"web_url"`
	Project           any             `json:"project"`
	Artifacts         []any           `json:"artifacts"`
	Runner            *runnerListJSON `json:"runner"`
	ArtifactsExpireAt *string         `json:"artifacts_expire_at"`
	Archived          bool            `json:"archived"`
	TagList           []string        `json:"tag_list"`
	FailureReason     string          `json:"failure_reason,omitempty"`
}

// commitSHA makes up a stable SHA for a pipeline.
func commitSHA(pipelineID int64) string {
	sum := sha1.Sum([]byte("pipeline-" + strconv.FormatInt(pipelineID, 10)))
	return hex.EncodeToString(sum[:])
}

// jobJSON renders a job; withProject embeds the project like the runner
// jobs endpoint does, otherwise only the job token scope flag GET
// /projects/:id/jobs/:job_id shows.
func (s *Server) jobJSON(r *http.Request, j *job, withProject bool) jobJSON {
	base := baseURL(r)
	p := s.projects[j.ProjectID]
	sha := s.pipelineSHA(j.PipelineID)
	out := jobJSON{
		ID:           j.ID,
		Status:       j.Status,
		Stage:        j.Stage,
		Name:         j.Name,
		Ref:          j.Ref,
		AllowFailure: j.AllowFailure,
		CreatedAt:    timestamp(j.CreatedAt),
		StartedAt:    timestampPtr(j.StartedAt),
		FinishedAt:   timestampPtr(j.FinishedAt),
		User:         jobUserJSON{ID: 1, Username: "root", Name: "Administrator", State: "active", WebURL: base + "/root"},
		Commit: commitJSON{
			ID: sha, ShortID: sha[:8], CreatedAt: timestamp(j.CreatedAt), ParentIDs: []string{},
			Title: "Update .gitlab-ci.yml", Message: "Update .gitlab-ci.yml", AuthorName: "Administrator", AuthorEmail: "admin@example.com",
			WebURL: base + "/" + p.PathWithNamespace + "/-/commit/" + sha,
		},
		Pipeline: pipelineJSON{
			ID: j.PipelineID, IID: j.PipelineID, ProjectID: j.ProjectID, SHA: sha, Ref: j.Ref, Status: s.pipelineStatusOf(j), Source: s.pipelineSource(j.PipelineID),
			CreatedAt: timestamp(j.CreatedAt), UpdatedAt: timestamp(j.CreatedAt),
			WebURL: fmt.Sprintf("%s/%s/-/pipelines/%d", base, p.PathWithNamespace, j.PipelineID),
		},
		WebURL:    fmt.Sprintf("%s/%s/-/jobs/%d", base, p.PathWithNamespace, j.ID),
		Project:   map[string]any{"ci_job_token_scope_enabled": false},
		Artifacts: []any{},
		TagList:   slices.Clone(j.Tags),
	}
	if out.TagList == nil {
		out.TagList = []string{}
	}
	if withProject {
		out.Project = jobProjectJSON{ID: p.ID, Name: p.Name, NameWithNamespace: s.nameWithNamespace(p), Path: p.Path, PathWithNamespace: p.PathWithNamespace, CreatedAt: timestamp(p.createdAt)}
	}
	if j.StartedAt != nil {
		queued := j.StartedAt.Sub(j.CreatedAt).Seconds()
		out.QueuedDuration = &queued
		end := s.now()
		if j.FinishedAt != nil {
			end = *j.FinishedAt
		}
		d := end.Sub(*j.StartedAt).Seconds()
		out.Duration = &d
	}
	if j.Status == "failed" {
		out.FailureReason = cmp.Or(j.FailureReason, "script_failure")
	}
	if rn, ok := s.runners[j.RunnerID]; ok {
		rj := s.runnerList(rn)
		out.Runner = &rj
	}
	return out
}

func (s *Server) sortedJobs() []*job {
	out := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b *job) int { return cmp.Compare(b.ID, a.ID) })
	return out
}

// listProjectJobs is GET /projects/:id/jobs with optional scope[] filters,
// newest first.
func (s *Server) listProjectJobs(w http.ResponseWriter, r *http.Request, _ *user) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	scopes := p.list("scope")
	for _, sc := range scopes {
		if !slices.Contains(jobStatuses, sc) {
			writeParamError(w, "scope does not have a valid value")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	var matched []*job
	for _, j := range s.sortedJobs() {
		if j.ProjectID == pr.ID && (len(scopes) == 0 || slices.Contains(scopes, j.Status)) {
			matched = append(matched, j)
		}
	}
	page, ok := paginate(w, r, matched)
	if !ok {
		return
	}
	out := make([]jobJSON, 0, len(page))
	for _, j := range page {
		out = append(out, s.jobJSON(r, j, false))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.projectJob(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.jobJSON(r, j, false))
}

// projectJob is the job the path's job_id names in the path's project,
// with s.mu held; for a malformed ID, an unknown project or a job not in
// it, it has answered as GitLab's Jobs API does (400, 404) and returns
// false.
func (s *Server) projectJob(w http.ResponseWriter, r *http.Request) (*job, bool) {
	jobID, ok := pathID(w, r, "job_id")
	if !ok {
		return nil, false
	}
	pr, ok := s.lookupProject(w, r)
	if !ok {
		return nil, false
	}
	j, ok := s.jobs[jobID]
	if !ok || j.ProjectID != pr.ID {
		writeMessage(w, http.StatusNotFound, "404 Not found")
		return nil, false
	}
	return j, true
}
