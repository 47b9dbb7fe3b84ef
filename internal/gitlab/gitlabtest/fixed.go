package gitlabtest

import (
	"cmp"
	"fmt"
	"slices"
)

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

// GroupByFullPath returns the group with the given full path, if any.
func (s *Server) GroupByFullPath(full string) (Group, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groupByFullPath(full); g != nil {
		return g.Group, true
	}
	return Group{}, false
}

// GroupByID returns the group with the given ID, if any.
func (s *Server) GroupByID(id int64) (Group, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.groups[id]; ok {
		return g.Group, true
	}
	return Group{}, false
}

// ProjectsOfGroup returns the projects directly in a group, ordered by ID.
func (s *Server) ProjectsOfGroup(groupID int64) []Project {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Project
	for _, p := range s.projects {
		if p.GroupID == groupID {
			out = append(out, p.Project)
		}
	}
	slices.SortFunc(out, func(a, b Project) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// ProjectByID returns the project with the given ID, if any.
func (s *Server) ProjectByID(id int64) (Project, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.projects[id]; ok {
		return p.Project, true
	}
	return Project{}, false
}
