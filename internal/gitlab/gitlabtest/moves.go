package gitlabtest

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// MoveProject renames a project or transfers it to another group (0 for a
// user namespace named by the path's first segment), as test control, the
// way GitLab's rename and transfer do: the project keeps its ID, its old
// path keeps resolving through the API (GitLab's redirect_routes) until
// another project takes it, and hooks name the new path from then on. It
// returns the moved project and panics on inconsistent input.
func (s *Server) MoveProject(projectID int64, newPathWithNamespace string, groupID int64) Project {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectID]
	if !ok {
		panic(fmt.Sprintf("gitlabtest: MoveProject: no project %d", projectID))
	}
	full := newPathWithNamespace
	if groupID != 0 {
		g, ok := s.groups[groupID]
		if !ok {
			panic(fmt.Sprintf("gitlabtest: MoveProject: no group %d", groupID))
		}
		if !strings.Contains(full, "/") {
			full = g.FullPath + "/" + full
		}
		if !strings.HasPrefix(full, g.FullPath+"/") || strings.Contains(strings.TrimPrefix(full, g.FullPath+"/"), "/") {
			panic(fmt.Sprintf("gitlabtest: MoveProject: %q is not directly in group %q", full, g.FullPath))
		}
	} else if strings.Count(full, "/") != 1 {
		panic(fmt.Sprintf("gitlabtest: MoveProject: %q must be user/project without a group", full))
	}
	if other := s.projectByCurrentPath(full); other != nil && other.ID != p.ID {
		panic(fmt.Sprintf("gitlabtest: MoveProject: project %q exists", full))
	}
	s.redirects[strings.ToLower(p.PathWithNamespace)] = p.ID
	delete(s.redirects, strings.ToLower(full))
	p.PathWithNamespace, p.GroupID = full, groupID
	p.Path = full[strings.LastIndex(full, "/")+1:]
	p.Name = p.Path
	return p.Project
}

// ownedProjects is what a runner restored or seeded without ProjectIDs is
// assigned to: its own project.
func ownedProjects(r Runner) []int64 {
	if len(r.ProjectIDs) > 0 || r.Type != "project_type" || r.ProjectID == 0 {
		return slices.Clone(r.ProjectIDs)
	}
	return []int64{r.ProjectID}
}

// enableProjectRunner is POST /projects/:id/runners (runner_id): assign a
// project runner to one more project, which it then takes jobs of. Like
// GitLab's authenticate_enable_runner!, a group runner is refused, and a
// locked runner too unless the user is an administrator; a runner already
// assigned is a validation error (400).
func (s *Server) enableProjectRunner(w http.ResponseWriter, r *http.Request, u *user) {
	p, err := readParams(r)
	if err != nil {
		writeParamError(w, err.Error())
		return
	}
	if !p.has("runner_id") {
		writeParamError(w, "runner_id is missing")
		return
	}
	runnerID, ok := p.integer("runner_id")
	if !ok {
		writeParamError(w, "runner_id is invalid")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	proj, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	rn, ok := s.runners[runnerID]
	if !ok {
		writeMessage(w, http.StatusNotFound, "404 Runner Not Found")
		return
	}
	switch {
	case rn.Type == "group_type":
		writeMessage(w, http.StatusForbidden, "403 Forbidden - Runner is a group runner")
		return
	case rn.Type == "instance_type":
		writeMessage(w, http.StatusForbidden, "403 Forbidden - Runner is a shared runner")
		return
	case rn.Locked && !u.admin:
		writeMessage(w, http.StatusForbidden, "403 Forbidden - Runner is locked")
		return
	case slices.Contains(rn.ProjectIDs, proj.ID):
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string][]string{"runner_projects.runner_id": {"has already been taken"}}})
		return
	}
	rn.ProjectIDs = append(rn.ProjectIDs, proj.ID)
	s.tickRunner(rn)
	writeJSON(w, http.StatusCreated, s.runnerList(rn))
}

// disableProjectRunner is DELETE /projects/:id/runners/:runner_id: the
// runner no longer takes the project's jobs. GitLab refuses to take a
// runner from its last project (403: delete the runner instead).
func (s *Server) disableProjectRunner(w http.ResponseWriter, r *http.Request, _ *user) {
	runnerID, ok := pathID(w, r, "runner_id")
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	proj, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	rn, ok := s.runners[runnerID]
	if !ok || !slices.Contains(rn.ProjectIDs, proj.ID) {
		writeMessage(w, http.StatusNotFound, "404 Runner Not Found")
		return
	}
	if len(rn.ProjectIDs) == 1 {
		writeMessage(w, http.StatusForbidden, "403 Forbidden - Only one project associated with the runner. Please remove the runner instead")
		return
	}
	rn.ProjectIDs = slices.DeleteFunc(rn.ProjectIDs, func(id int64) bool { return id == proj.ID })
	if rn.ProjectID == proj.ID {
		rn.ProjectID = rn.ProjectIDs[0]
	}
	s.tickRunner(rn)
	writeJSON(w, http.StatusOK, s.runnerList(rn))
}
