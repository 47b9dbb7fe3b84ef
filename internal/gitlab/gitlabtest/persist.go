package gitlabtest

import (
	"encoding/json"
	"fmt"
	"time"
)

// snapshot is the persisted state of a Server: what a local development run
// keeps across restarts, so runners registered before a restart still
// exist, with their pipelines, jobs (job tokens included: a runner still
// running a job goes on reporting it) and logs.
type snapshot struct {
	Token    string            `json:"token"`
	NextID   map[string]int64  `json:"next_id"`
	Users    []snapshotUser    `json:"users"`
	Groups   []snapshotGroup   `json:"groups"`
	Projects []snapshotProject `json:"projects"`
	Runners  []snapshotRunner  `json:"runners"`
	Jobs     []Job             `json:"jobs"`
	Hooks    []Hook            `json:"hooks"`
	// Pipelines, repository files and job logs, by project and path, and
	// by job ID.
	Pipelines []Pipeline                  `json:"pipelines"`
	Files     map[int64]map[string][]byte `json:"files"`
	Traces    map[int64][]byte            `json:"traces"`
	// Redirects are the old paths of moved projects.
	Redirects map[string]int64 `json:"redirects,omitempty"`
	// Creations are when runners were created, by project or group, for
	// the creation cap.
	Creations map[string][]time.Time `json:"creations,omitempty"`
}

type snapshotUser struct {
	Token    string `json:"token"`
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Admin    bool   `json:"admin"`
}

type snapshotGroup struct {
	Group
	CreatedAt time.Time `json:"created_at"`
}

type snapshotProject struct {
	Project
	CreatedAt time.Time `json:"created_at"`
}

type snapshotRunner struct {
	Runner
	MaintenanceNote string          `json:"maintenance_note"`
	CreatedAt       time.Time       `json:"created_at"`
	Managers        []RunnerManager `json:"managers,omitempty"`
}

// Snapshot returns the server's state as JSON. It holds runner tokens and
// hook secrets: write it only where the test server's users may read.
func (s *Server) Snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := snapshot{Token: s.token, NextID: s.nextID}
	for tok, u := range s.users {
		snap.Users = append(snap.Users, snapshotUser{Token: tok, ID: u.id, Username: u.username, Admin: u.admin})
	}
	for _, g := range s.groups {
		snap.Groups = append(snap.Groups, snapshotGroup{Group: g.Group, CreatedAt: g.createdAt})
	}
	for _, p := range s.projects {
		snap.Projects = append(snap.Projects, snapshotProject{Project: p.Project, CreatedAt: p.createdAt})
	}
	for _, r := range s.runners {
		sr := snapshotRunner{Runner: r.snapshot(), MaintenanceNote: r.maintenanceNote, CreatedAt: r.createdAt}
		for _, m := range r.sortedManagers() {
			sr.Managers = append(sr.Managers, m.RunnerManager)
		}
		snap.Runners = append(snap.Runners, sr)
	}
	for _, j := range s.jobs {
		snap.Jobs = append(snap.Jobs, j.snapshot())
	}
	for _, h := range s.hooks {
		snap.Hooks = append(snap.Hooks, h.Hook)
	}
	for _, p := range s.pipelines {
		snap.Pipelines = append(snap.Pipelines, p.snapshot())
	}
	snap.Files, snap.Traces, snap.Redirects, snap.Creations = s.headTrees(), s.traces, s.redirects, s.creations
	return json.Marshal(snap)
}

// Restore replaces the server's state with a Snapshot.
func (s *Server) Restore(b []byte) error {
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("restore GitLab test server: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = snap.Token
	s.nextID = map[string]int64{}
	for k, v := range snap.NextID {
		s.nextID[k] = v
	}
	s.users = map[string]*user{}
	for _, u := range snap.Users {
		s.users[u.Token] = &user{id: u.ID, username: u.Username, admin: u.Admin}
	}
	s.groups = map[int64]*group{}
	for _, g := range snap.Groups {
		s.groups[g.ID] = &group{Group: g.Group, createdAt: g.CreatedAt}
	}
	s.projects = map[int64]*project{}
	for _, p := range snap.Projects {
		s.projects[p.ID] = &project{Project: p.Project, createdAt: p.CreatedAt}
	}
	s.creations = map[string][]time.Time{}
	for scope, times := range snap.Creations {
		s.creations[scope] = times
	}
	s.redirects = map[string]int64{}
	for path, id := range snap.Redirects {
		s.redirects[path] = id
	}
	s.runners = map[int64]*runner{}
	for _, r := range snap.Runners {
		rn := &runner{Runner: r.Runner, maintenanceNote: r.MaintenanceNote, createdAt: r.CreatedAt, managers: map[string]*runnerManager{}}
		rn.ProjectIDs = ownedProjects(rn.Runner)
		for _, m := range r.Managers {
			rn.managers[m.SystemID] = &runnerManager{m}
		}
		s.runners[r.ID] = rn
	}
	s.jobs = map[int64]*job{}
	for _, j := range snap.Jobs {
		s.jobs[j.ID] = &job{Job: j}
	}
	s.hooks = map[int64]*hook{}
	for _, h := range snap.Hooks {
		s.hooks[h.ID] = &hook{Hook: h}
	}
	s.pipelines = map[int64]*pipeline{}
	for _, p := range snap.Pipelines {
		s.pipelines[p.ID] = &pipeline{Pipeline: p}
	}
	s.repos = nil
	for id, fs := range snap.Files {
		s.commitLocked(id, "main", "restored", fs)
	}
	// The repositories are written anew: pipelines and jobs run for the
	// restored heads, so runners can still fetch what they name.
	s.loneSHAs = map[int64]string{}
	for _, p := range s.pipelines {
		if _, ok := s.projects[p.ProjectID]; ok {
			p.SHA, p.BeforeSHA = s.pipelineCommit(p.ProjectID, p.ID, p.Ref)
		}
	}
	for _, j := range s.jobs {
		_, inPipeline := s.pipelines[j.PipelineID]
		_, seen := s.loneSHAs[j.PipelineID]
		if _, ok := s.projects[j.ProjectID]; ok && !inPipeline && !seen {
			s.loneSHAs[j.PipelineID], _ = s.pipelineCommit(j.ProjectID, j.PipelineID, j.Ref)
		}
	}
	s.traces = map[int64][]byte{}
	for id, t := range snap.Traces {
		s.traces[id] = t
	}
	// Runners waiting on the old state's queues start over.
	s.wakePolls()
	return nil
}
