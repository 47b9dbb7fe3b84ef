package gitlabtest

import "fmt"

// AddGroupWithID is AddGroup with a chosen ID, so a local run can mirror a
// Nest that names groups by ID. It panics when the ID is taken.
func (s *Server) AddGroupWithID(id int64, path string, parentID int64) Group {
	g := s.AddGroup(path, parentID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == g.ID {
		return g
	}
	if _, taken := s.groups[id]; taken {
		panic(fmt.Sprintf("gitlabtest: AddGroupWithID: group %d exists", id))
	}
	rec := s.groups[g.ID]
	delete(s.groups, g.ID)
	rec.ID = id
	s.groups[id] = rec
	s.nextID["group"] = max(s.nextID["group"], id)
	return rec.Group
}

// AddProjectWithID is AddProject with a chosen ID, so a local run can mirror
// a Nest that names projects by ID. It panics when the ID is taken.
func (s *Server) AddProjectWithID(id int64, pathWithNamespace string, groupID int64) Project {
	p := s.AddProject(pathWithNamespace, groupID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == p.ID {
		return p
	}
	if _, taken := s.projects[id]; taken {
		panic(fmt.Sprintf("gitlabtest: AddProjectWithID: project %d exists", id))
	}
	rec := s.projects[p.ID]
	delete(s.projects, p.ID)
	rec.ID = id
	s.projects[id] = rec
	s.nextID["project"] = max(s.nextID["project"], id)
	return rec.Project
}

// ProjectByPath returns the project with the given path, if any.
func (s *Server) ProjectByPath(pathWithNamespace string) (Project, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.projectByPath(pathWithNamespace); p != nil {
		return p.Project, true
	}
	return Project{}, false
}
