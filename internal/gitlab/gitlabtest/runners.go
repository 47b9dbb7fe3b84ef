package gitlabtest

import (
	"net/http"
	"slices"
	"time"
)

var runnerTypes = []string{"instance_type", "group_type", "project_type"}

// GitLab calls a runner online when it made contact within two hours and
// stale after a week of silence (or a week since creation if it never did).
const (
	onlineContactTimeout = 2 * time.Hour
	staleTimeout         = 7 * 24 * time.Hour
)

// runnerListJSON is GitLab's Entities::Ci::Runner, used by the list
// endpoints (no tags: clients fetch details for those).
type runnerListJSON struct {
	ID          int64   `json:"id"`
	Description string  `json:"description"`
	IPAddress   *string `json:"ip_address"`
	Active      bool    `json:"active"`
	Paused      bool    `json:"paused"`
	IsShared    bool    `json:"is_shared"`
	RunnerType  string  `json:"runner_type"`
	Name        *string `json:"name"`
	Online      bool    `json:"online"`
	Status      string  `json:"status"`
	CreatedAt   string  `json:"created_at"`
}

type runnerProjectJSON struct {
	ID                int64  `json:"id"`
	Name              string `json:"name"`
	NameWithNamespace string `json:"name_with_namespace"`
	Path              string `json:"path"`
	PathWithNamespace string `json:"path_with_namespace"`
}

type runnerGroupJSON struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	WebURL string `json:"web_url"`
}

// runnerDetailsJSON is GitLab's Entities::Ci::RunnerDetails.
type runnerDetailsJSON struct {
	runnerListJSON
	TagList         []string            `json:"tag_list"`
	RunUntagged     bool                `json:"run_untagged"`
	Locked          bool                `json:"locked"`
	MaximumTimeout  *int64              `json:"maximum_timeout"`
	AccessLevel     string              `json:"access_level"`
	MaintenanceNote *string             `json:"maintenance_note"`
	ContactedAt     *string             `json:"contacted_at"`
	Architecture    *string             `json:"architecture"`
	Platform        *string             `json:"platform"`
	Revision        *string             `json:"revision"`
	Version         *string             `json:"version"`
	Projects        []runnerProjectJSON `json:"projects"`
	Groups          []runnerGroupJSON   `json:"groups,omitempty"`
}

// runnerTokenJSON is Entities::Ci::RunnerRegistrationDetails and, without
// the ID, ResetTokenResult.
type runnerTokenJSON struct {
	ID             int64   `json:"id,omitempty"`
	Token          string  `json:"token"`
	TokenExpiresAt *string `json:"token_expires_at"`
}

// optional is JSON null for an empty string.
func optional(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

func (s *Server) runnerStatus(r *runner) (status string, online bool) {
	now := s.now()
	switch {
	case r.ContactedAt == nil && now.Sub(r.createdAt) > staleTimeout:
		return "stale", false
	case r.ContactedAt == nil:
		return "never_contacted", false
	case now.Sub(*r.ContactedAt) <= onlineContactTimeout:
		return "online", true
	case now.Sub(*r.ContactedAt) > staleTimeout:
		return "stale", false
	default:
		return "offline", false
	}
}

func (s *Server) runnerList(r *runner) runnerListJSON {
	status, online := s.runnerStatus(r)
	return runnerListJSON{
		ID:          r.ID,
		Description: r.Description,
		Active:      !r.Paused,
		Paused:      r.Paused,
		IsShared:    r.Type == "instance_type",
		RunnerType:  r.Type,
		Online:      online,
		Status:      status,
		CreatedAt:   timestamp(r.createdAt),
	}
}

func (s *Server) runnerDetails(req *http.Request, r *runner) runnerDetailsJSON {
	d := runnerDetailsJSON{
		runnerListJSON: s.runnerList(r),
		TagList:        slices.Clone(r.Tags),
		RunUntagged:    r.RunUntagged,
		Locked:         r.Locked,
		AccessLevel:    r.AccessLevel,
		ContactedAt:    timestampPtr(r.ContactedAt),
		Projects:       []runnerProjectJSON{},
		Version:        optional(r.Version),
		Revision:       optional(r.Revision),
		Platform:       optional(r.Platform),
		Architecture:   optional(r.Architecture),
	}
	d.IPAddress = optional(r.IPAddress)
	if d.TagList == nil {
		d.TagList = []string{}
	}
	if r.MaximumTimeout > 0 {
		mt := r.MaximumTimeout
		d.MaximumTimeout = &mt
	}
	if r.maintenanceNote != "" {
		note := r.maintenanceNote
		d.MaintenanceNote = &note
	}
	for _, id := range r.ProjectIDs {
		p, ok := s.projects[id]
		if !ok || r.Type != "project_type" {
			continue
		}
		d.Projects = append(d.Projects, runnerProjectJSON{ID: p.ID, Name: p.Name, NameWithNamespace: s.nameWithNamespace(p), Path: p.Path, PathWithNamespace: p.PathWithNamespace})
	}
	if g, ok := s.groups[r.GroupID]; ok && r.Type == "group_type" {
		d.Groups = []runnerGroupJSON{{ID: g.ID, Name: g.Name, WebURL: baseURL(req) + "/groups/" + g.FullPath}}
	}
	return d
}

func (s *Server) createUserRunner(w http.ResponseWriter, r *http.Request, u *user) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	typ := p.str("runner_type")
	switch {
	case !p.has("runner_type"):
		writeParamError(w, "runner_type is missing")
		return
	case !slices.Contains(runnerTypes, typ):
		writeParamError(w, "runner_type does not have a valid value")
		return
	}
	rn := &runner{Runner: Runner{Type: typ, RunUntagged: true, AccessLevel: "not_protected", CreatorID: u.id}}
	for key, dst := range map[string]*bool{"paused": &rn.Paused, "locked": &rn.Locked, "run_untagged": &rn.RunUntagged} {
		if !p.has(key) {
			continue
		}
		v, ok := p.boolean(key)
		if !ok {
			writeParamError(w, key+" is invalid")
			return
		}
		*dst = v
	}
	if p.has("maximum_timeout") {
		mt, ok := p.integer("maximum_timeout")
		if !ok {
			writeParamError(w, "maximum_timeout is invalid")
			return
		}
		rn.MaximumTimeout = mt
	}
	if p.has("access_level") {
		rn.AccessLevel = p.str("access_level")
		if rn.AccessLevel != "not_protected" && rn.AccessLevel != "ref_protected" {
			writeParamError(w, "access_level does not have a valid value")
			return
		}
	}
	rn.Description = p.str("description")
	rn.maintenanceNote = p.str("maintenance_note")
	rn.Tags = p.list("tag_list")

	s.mu.Lock()
	defer s.mu.Unlock()
	// CreateRunnerService answers forbidden when the scope is missing or the
	// user may not create runners there.
	switch typ {
	case "instance_type":
		if !u.admin {
			writeMessage(w, http.StatusForbidden, "403 Forbidden - Insufficient permissions")
			return
		}
	case "group_type":
		id, _ := p.integer("group_id")
		if _, ok := s.groups[id]; !ok {
			writeMessage(w, http.StatusForbidden, "403 Forbidden - Insufficient permissions")
			return
		}
		rn.GroupID = id
	case "project_type":
		id, _ := p.integer("project_id")
		if _, ok := s.projects[id]; !ok {
			writeMessage(w, http.StatusForbidden, "403 Forbidden - Insufficient permissions")
			return
		}
		rn.ProjectID, rn.ProjectIDs = id, []int64{id}
	}
	// Ci::Runner's model validations, reported through bad_request!.
	if len(rn.Tags) == 0 && !rn.RunUntagged {
		writeMessage(w, http.StatusBadRequest, "400 Bad request - Tags list can not be empty when runner is not allowed to pick untagged jobs")
		return
	}
	if rn.MaximumTimeout != 0 && rn.MaximumTimeout < 600 {
		writeMessage(w, http.StatusBadRequest, "400 Bad request - Maximum timeout needs to be at least 10 minutes")
		return
	}
	// GitLab.com's cap on runners created per project or group.
	if typ != "instance_type" && !s.admitCreation(w, max(rn.GroupID, rn.ProjectID), typ == "group_type") {
		return
	}
	rn.ID = s.newID("runner")
	s.issueRunnerToken(rn)
	rn.createdAt = s.now().UTC()
	s.runners[rn.ID] = rn
	writeJSON(w, http.StatusCreated, runnerTokenJSON{ID: rn.ID, Token: rn.Token, TokenExpiresAt: timestampPtr(rn.TokenExpiresAt)})
}

// filterRunners applies the filters GET /runners and /runners/all share.
// ok is false after answering 400.
func (s *Server) filterRunners(w http.ResponseWriter, r *http.Request, candidates []*runner) ([]*runner, bool) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return nil, false
	}
	typ := p.str("type")
	if p.has("type") && !slices.Contains(runnerTypes, typ) {
		writeParamError(w, "type does not have a valid value")
		return nil, false
	}
	status := p.str("status")
	if p.has("status") && !slices.Contains([]string{"online", "offline", "stale", "never_contacted", "active", "paused"}, status) {
		writeParamError(w, "status does not have a valid value")
		return nil, false
	}
	paused, hasPaused := p.boolean("paused")
	if p.has("paused") && !hasPaused {
		writeParamError(w, "paused is invalid")
		return nil, false
	}
	tags := p.list("tag_list")

	var out []*runner
	for _, rn := range candidates {
		st, _ := s.runnerStatus(rn)
		switch {
		case typ != "" && rn.Type != typ:
		case status == "active" && rn.Paused, status == "paused" && !rn.Paused:
		case status != "" && status != "active" && status != "paused" && st != status:
		case hasPaused && rn.Paused != paused:
		case !containsAll(rn.Tags, tags):
		default:
			out = append(out, rn)
		}
	}
	return out, true
}

func containsAll(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// listOwnedRunners is GET /runners: current_user.ci_owned_runners, which
// never includes instance runners. Memberships are not modelled, so every
// user owns every project and group runner.
func (s *Server) listOwnedRunners(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var owned []*runner
	for _, rn := range s.sortedRunners() {
		if rn.Type != "instance_type" {
			owned = append(owned, rn)
		}
	}
	s.writeRunnerList(w, r, owned)
}

// listAllRunners is GET /runners/all, for administrators only.
func (s *Server) listAllRunners(w http.ResponseWriter, r *http.Request, u *user) {
	if !u.admin {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeRunnerList(w, r, s.sortedRunners())
}

func (s *Server) writeRunnerList(w http.ResponseWriter, r *http.Request, candidates []*runner) {
	matched, ok := s.filterRunners(w, r, candidates)
	if !ok {
		return
	}
	page, ok := paginate(w, r, matched)
	if !ok {
		return
	}
	out := make([]runnerListJSON, 0, len(page))
	for _, rn := range page {
		out = append(out, s.runnerList(rn))
	}
	writeJSON(w, http.StatusOK, out)
}

// lookupRunner answers 404 like GitLab's Ci::Runner.find when the runner
// does not exist. The caller holds s.mu.
func (s *Server) lookupRunner(w http.ResponseWriter, r *http.Request) (*runner, bool) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return nil, false
	}
	rn, ok := s.runners[id]
	if !ok {
		writeMessage(w, http.StatusNotFound, "404 Not found")
		return nil, false
	}
	return rn, true
}

func (s *Server) getRunner(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.lookupRunner(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.runnerDetails(r, rn))
}

func (s *Server) updateRunner(w http.ResponseWriter, r *http.Request, _ *user) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.lookupRunner(w, r)
	if !ok {
		return
	}
	keys := []string{"description", "active", "paused", "tag_list", "run_untagged", "locked", "access_level", "maximum_timeout", "maintenance_note"}
	if !slices.ContainsFunc(keys, p.has) {
		writeParamError(w, "description, active, paused, tag_list, run_untagged, locked, access_level, maximum_timeout, maintenance_note are missing, at least one parameter must be provided")
		return
	}
	if p.has("active") && p.has("paused") {
		writeParamError(w, "active, paused are mutually exclusive")
		return
	}
	next := *rn
	next.Tags = slices.Clone(rn.Tags)
	for key, apply := range map[string]func(bool){
		"paused":       func(v bool) { next.Paused = v },
		"active":       func(v bool) { next.Paused = !v },
		"run_untagged": func(v bool) { next.RunUntagged = v },
		"locked":       func(v bool) { next.Locked = v },
	} {
		if !p.has(key) {
			continue
		}
		v, ok := p.boolean(key)
		if !ok {
			writeParamError(w, key+" is invalid")
			return
		}
		apply(v)
	}
	if p.has("maximum_timeout") {
		mt, ok := p.integer("maximum_timeout")
		if !ok {
			writeParamError(w, "maximum_timeout is invalid")
			return
		}
		next.MaximumTimeout = mt
	}
	if p.has("description") {
		next.Description = p.str("description")
	}
	if p.has("maintenance_note") {
		next.maintenanceNote = p.str("maintenance_note")
	}
	if p.has("access_level") {
		next.AccessLevel = p.str("access_level")
	}
	if p.has("tag_list") {
		next.Tags = p.list("tag_list")
	}
	// render_validation_error! answers 400 with the model's errors by field.
	if len(next.Tags) == 0 && !next.RunUntagged {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string][]string{"tags_list": {"can not be empty when runner is not allowed to pick untagged jobs"}}})
		return
	}
	if next.MaximumTimeout != 0 && next.MaximumTimeout < 600 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string][]string{"maximum_timeout": {"needs to be at least 10 minutes"}}})
		return
	}
	*rn = next
	s.tickRunner(rn)
	writeJSON(w, http.StatusOK, s.runnerDetails(r, rn))
}

func (s *Server) deleteRunner(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.lookupRunner(w, r)
	if !ok {
		return
	}
	delete(s.runners, rn.ID)
	// A long poll of the deleted runner answers 403 now, not at its end.
	s.wakePolls()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) resetRunnerToken(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.lookupRunner(w, r)
	if !ok {
		return
	}
	s.issueRunnerToken(rn)
	s.wakePolls()
	writeJSON(w, http.StatusCreated, runnerTokenJSON{Token: rn.Token, TokenExpiresAt: timestampPtr(rn.TokenExpiresAt)})
}

// listRunnerJobs is GET /runners/:id/jobs: only jobs already assigned to the
// runner, newest first.
func (s *Server) listRunnerJobs(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.lookupRunner(w, r)
	if !ok {
		return
	}
	status := r.URL.Query().Get("status")
	if status != "" && !slices.Contains(jobStatuses, status) {
		writeParamError(w, "status does not have a valid value")
		return
	}
	var matched []*job
	for _, j := range s.sortedJobs() {
		if j.RunnerID == rn.ID && (status == "" || j.Status == status) {
			matched = append(matched, j)
		}
	}
	page, ok := paginate(w, r, matched)
	if !ok {
		return
	}
	out := make([]jobJSON, 0, len(page))
	for _, j := range page {
		out = append(out, s.jobJSON(r, j, true))
	}
	writeJSON(w, http.StatusOK, out)
}

// verifyRunner is POST /runners/verify, what a runner does at start. It
// authenticates by the runner token in the body and counts as contact.
func (s *Server) verifyRunner(w http.ResponseWriter, r *http.Request) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	token := p.str("token")
	if !p.has("token") {
		writeParamError(w, "token is missing")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rn := s.runnerByToken(token)
	if rn == nil {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	s.heartbeat(rn, r, p)
	writeJSON(w, http.StatusOK, runnerTokenJSON{ID: rn.ID, Token: rn.Token, TokenExpiresAt: timestampPtr(rn.TokenExpiresAt)})
}
