package gitlabtest

import (
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Runner managers and GitLab.com's creation cap, as GitLab models them.
//
// One runner (one glrt- token) may be run by many machines at once; GitLab
// tells them apart by the system_id each sends with verify and
// jobs/request, and keeps one runner manager (Ci::RunnerManager) per
// system_id, listed by GET /runners/:id/managers. A runner that sends no
// system_id (gitlab-runner before 15.11, such as 12.8) is one manager,
// LegacySystemID, however many machines run it. Managers not seen for a
// week are deleted by GitLab's Ci::Runners::StaleManagersCleanupCronWorker;
// here the clean-up runs whenever managers are read or contact is made
// (and on CleanUpStaleManagers), after WithStaleManagerCleanup's age.
//
// GitLab.com refuses to create a runner in a project or group that had
// 1,000 runners (plan limits ci_registered_project_runners and
// ci_registered_group_runners) created or active in the past seven days
// (gitlab-org/gitlab#342757). This server counts every runner created in
// the scope within the window, deleted ones included, which is never more
// lenient than GitLab; WithRunnerCreationCap sets the number and window.

const (
	// LegacySystemID is the system_id GitLab gives the manager of a
	// runner that sends none (Ci::Runner::LEGACY_SYSTEM_XID).
	LegacySystemID = "<legacy>"
	// DefaultStaleManagerAfter is how long GitLab keeps a manager that
	// made no contact.
	DefaultStaleManagerAfter = 7 * 24 * time.Hour
	// DefaultRunnerCreationCap and DefaultRunnerCreationWindow are
	// GitLab.com's limit on runners created per project or group.
	DefaultRunnerCreationCap    = 1000
	DefaultRunnerCreationWindow = 7 * 24 * time.Hour
)

// WithStaleManagerCleanup sets how long a runner manager may go without
// contact before it is deleted (default DefaultStaleManagerAfter).
func WithStaleManagerCleanup(after time.Duration) Option {
	return func(s *Server) { s.staleManagerAfter = after }
}

// WithRunnerCreationCap sets how many runners may be created in one
// project or group within window before POST /user/runners answers 400
// (default DefaultRunnerCreationCap per DefaultRunnerCreationWindow, as on
// GitLab.com; 0 lifts the cap, as on a self-managed instance).
func WithRunnerCreationCap(n int, window time.Duration) Option {
	return func(s *Server) { s.creationCap, s.creationWindow = n, window }
}

// WithRunnerTokenExpiration sets GitLab's runner_token_expiration_interval:
// a runner authentication token created or reset from then on expires that
// long after (token_expires_at in the answers), and the runner API refuses
// an expired token with 403 as GitLab does. 0 (the default, as on a
// self-managed instance) makes tokens that never expire (a null
// token_expires_at). GitLab sets at most 15 days where an instance sets it.
func WithRunnerTokenExpiration(d time.Duration) Option {
	return func(s *Server) { s.tokenExpiration = d }
}

// SetRunnerTokenExpiration changes runner_token_expiration_interval on a
// running server (see WithRunnerTokenExpiration); tokens already issued
// keep their expiry, as in GitLab.
func (s *Server) SetRunnerTokenExpiration(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenExpiration = d
}

// issueRunnerToken gives rn a new authentication token and its expiry.
// The caller holds s.mu.
func (s *Server) issueRunnerToken(rn *runner) {
	rn.Token = newRunnerToken()
	rn.TokenExpiresAt = nil
	if s.tokenExpiration > 0 {
		at := s.now().UTC().Add(s.tokenExpiration).Truncate(time.Second)
		rn.TokenExpiresAt = &at
	}
}

// tokenExpired tells whether rn's token has expired (GitLab's
// Ci::Runner#token_expired?). The caller holds s.mu.
func (s *Server) tokenExpired(rn *runner) bool {
	return rn.TokenExpiresAt != nil && !s.now().Before(*rn.TokenExpiresAt)
}

// RunnerManager is one machine running a runner, as GitLab knows it.
type RunnerManager struct {
	ID           int64
	SystemID     string
	CreatedAt    time.Time
	ContactedAt  time.Time
	Version      string
	Revision     string
	Platform     string
	Architecture string
	IPAddress    string
}

type runnerManager struct {
	RunnerManager
}

// runnerManagerJSON is GitLab's Entities::Ci::RunnerManager.
type runnerManagerJSON struct {
	ID                 int64   `json:"id"`
	SystemID           string  `json:"system_id"`
	Version            *string `json:"version"`
	Revision           *string `json:"revision"`
	Platform           *string `json:"platform"`
	Architecture       *string `json:"architecture"`
	CreatedAt          string  `json:"created_at"`
	ContactedAt        *string `json:"contacted_at"`
	IPAddress          *string `json:"ip_address"`
	Status             string  `json:"status"`
	JobExecutionStatus string  `json:"job_execution_status"`
}

// contactManager records contact from the manager with that system_id (or
// LegacySystemID), making it on first contact. The caller holds s.mu.
func (s *Server) contactManager(rn *runner, systemID string, info map[string]string, ip string) {
	if systemID == "" {
		systemID = LegacySystemID
	}
	now := s.now().UTC()
	if rn.managers == nil {
		rn.managers = map[string]*runnerManager{}
	}
	m, ok := rn.managers[systemID]
	if !ok {
		m = &runnerManager{RunnerManager{ID: s.newID("runner_manager"), SystemID: systemID, CreatedAt: now}}
		rn.managers[systemID] = m
	}
	m.ContactedAt, m.IPAddress = now, ip
	for key, dst := range map[string]*string{"version": &m.Version, "revision": &m.Revision, "platform": &m.Platform, "architecture": &m.Architecture} {
		if v, ok := info[key]; ok {
			*dst = v
		}
	}
	s.cleanUpStaleManagers()
}

// cleanUpStaleManagers deletes every manager silent past the stale age,
// and says how many. The caller holds s.mu.
func (s *Server) cleanUpStaleManagers() int {
	if s.staleManagerAfter <= 0 {
		return 0
	}
	deadline := s.now().Add(-s.staleManagerAfter)
	n := 0
	for _, rn := range s.runners {
		for id, m := range rn.managers {
			if m.ContactedAt.Before(deadline) {
				delete(rn.managers, id)
				n++
			}
		}
	}
	return n
}

// CleanUpStaleManagers runs GitLab's stale-manager clean-up now and says
// how many managers it deleted.
func (s *Server) CleanUpStaleManagers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cleanUpStaleManagers()
}

// Managers returns a runner's managers, ordered by ID.
func (s *Server) Managers(runnerID int64) []RunnerManager {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanUpStaleManagers()
	rn, ok := s.runners[runnerID]
	if !ok {
		return nil
	}
	var out []RunnerManager
	for _, m := range rn.sortedManagers() {
		out = append(out, m.RunnerManager)
	}
	return out
}

// RunnersCreated counts the runners created in a project (or, with
// group set, a group) within the creation window, deleted ones included.
func (s *Server) RunnersCreated(id int64, group bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recentCreations(creationScope(id, group))
}

func (rn *runner) sortedManagers() []*runnerManager {
	out := make([]*runnerManager, 0, len(rn.managers))
	for _, m := range rn.managers {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *runnerManager) int { return int(a.ID - b.ID) })
	return out
}

// listRunnerManagers is GET /runners/:id/managers.
func (s *Server) listRunnerManagers(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanUpStaleManagers()
	rn, ok := s.lookupRunner(w, r)
	if !ok {
		return
	}
	out := []runnerManagerJSON{}
	for _, m := range rn.sortedManagers() {
		status := "offline"
		if s.now().Sub(m.ContactedAt) <= onlineContactTimeout {
			status = "online"
		}
		exec := "idle"
		for _, j := range s.jobs {
			if j.RunnerID == rn.ID && j.managerSystemID == m.SystemID && j.Status == "running" {
				exec = "active"
				break
			}
		}
		contacted := m.ContactedAt
		out = append(out, runnerManagerJSON{
			ID: m.ID, SystemID: m.SystemID, Version: optional(m.Version), Revision: optional(m.Revision),
			Platform: optional(m.Platform), Architecture: optional(m.Architecture), CreatedAt: timestamp(m.CreatedAt),
			ContactedAt: timestampPtr(&contacted), IPAddress: optional(m.IPAddress), Status: status, JobExecutionStatus: exec,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func creationScope(id int64, group bool) string {
	if group {
		return fmt.Sprintf("group/%d", id)
	}
	return fmt.Sprintf("project/%d", id)
}

// recentCreations counts a scope's creations within the window and
// forgets older ones. The caller holds s.mu.
func (s *Server) recentCreations(scope string) int {
	since := s.now().Add(-s.creationWindow)
	kept := slices.DeleteFunc(s.creations[scope], func(t time.Time) bool { return t.Before(since) })
	s.creations[scope] = kept
	return len(kept)
}

// admitCreation checks the creation cap for a new runner in a project or
// group and counts it; it answers 400 as GitLab's Limitable validation
// does and returns false when the cap is reached. The caller holds s.mu.
func (s *Server) admitCreation(w http.ResponseWriter, id int64, group bool) bool {
	scope := creationScope(id, group)
	if s.creationCap > 0 && s.recentCreations(scope) >= s.creationCap {
		kind := "project"
		if group {
			kind = "group"
		}
		writeMessage(w, http.StatusBadRequest, fmt.Sprintf("400 Bad request - Maximum number of ci registered %s runners (%d) exceeded", kind, s.creationCap))
		return false
	}
	s.creations[scope] = append(s.creations[scope], s.now())
	return true
}

// infoStrings is the string fields of a runner's info parameter.
func infoStrings(p params) map[string]string {
	out := map[string]string{}
	info, _ := p.raw("info")
	m, ok := info.(map[string]any)
	if !ok {
		return out
	}
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}
