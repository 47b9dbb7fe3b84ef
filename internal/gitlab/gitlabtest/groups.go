package gitlabtest

import (
	"net/http"
	"strings"
)

// groupJSON is the part of GitLab's Entities::GroupDetail a client can use.
type groupJSON struct {
	ID                   int64   `json:"id"`
	WebURL               string  `json:"web_url"`
	Name                 string  `json:"name"`
	Path                 string  `json:"path"`
	Description          string  `json:"description"`
	Visibility           string  `json:"visibility"`
	FullName             string  `json:"full_name"`
	FullPath             string  `json:"full_path"`
	CreatedAt            string  `json:"created_at"`
	ParentID             *int64  `json:"parent_id"`
	AvatarURL            *string `json:"avatar_url"`
	SharedRunnersSetting string  `json:"shared_runners_setting"`
}

// getGroup is GET /groups/:id, by numeric ID or URL-encoded full path. The
// answer leaves out the deprecated projects and shared_projects lists, as
// GitLab does with with_projects=false (what clients should ask for).
func (s *Server) getGroup(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.lookupGroup(w, r)
	if !ok {
		return
	}
	var names []string
	for p := g; p != nil; p = s.groups[p.ParentID] {
		names = append([]string{p.Name}, names...)
	}
	out := groupJSON{
		ID: g.ID, WebURL: baseURL(r) + "/groups/" + g.FullPath, Name: g.Name, Path: g.Path,
		Visibility: "private", FullName: strings.Join(names, " / "), FullPath: g.FullPath,
		CreatedAt: timestamp(g.createdAt), SharedRunnersSetting: "enabled",
	}
	if g.ParentID != 0 {
		parent := g.ParentID
		out.ParentID = &parent
	}
	writeJSON(w, http.StatusOK, out)
}
