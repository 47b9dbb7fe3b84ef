package gitlabtest

import "slices"

// AddRunner registers a runner directly, as if made through POST
// /user/runners, without a request: for tests and benchmarks that need
// thousands. Zero fields take GitLab's defaults (project_type,
// not_protected, run untagged). It returns the runner with its ID and token.
func (s *Server) AddRunner(r Runner) Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn := &runner{Runner: r, createdAt: s.now().UTC()}
	rn.Tags = slices.Clone(r.Tags)
	if rn.Type == "" {
		rn.Type = "project_type"
	}
	if rn.AccessLevel == "" {
		rn.AccessLevel = "not_protected"
	}
	rn.ProjectIDs = ownedProjects(rn.Runner)
	if len(rn.Tags) == 0 {
		rn.RunUntagged = true
	}
	rn.ID = s.newID("runner")
	if rn.Token == "" {
		rn.Token = newRunnerToken()
	}
	s.runners[rn.ID] = rn
	return rn.snapshot()
}
