package gitlabtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// repository is a project's Git history as the test server keeps it: a
// list of commits, each a whole tree of files, and branch heads. Each
// commit is also written to the project's real Git repository (git.go),
// whose SHA it carries.
type repository struct {
	commits  map[string]*commit
	branches map[string]string // branch -> commit SHA
}

type commit struct {
	sha     string
	parent  string
	message string
	at      time.Time
	files   map[string][]byte
}

// Commit records a commit on a project's branch whose tree is files (path
// -> content; a nil content deletes the path from the parent's tree), and
// returns its Git SHA. The branch is created when missing. It panics when
// git fails (git.go).
func (s *Server) Commit(projectID int64, branch, message string, files map[string][]byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.projects[projectID]; !ok {
		panic(fmt.Sprintf("gitlabtest: no project %d", projectID))
	}
	return s.commitLocked(projectID, branch, message, files)
}

// commitLocked is Commit with s.mu held.
func (s *Server) commitLocked(projectID int64, branch, message string, files map[string][]byte) string {
	if s.repos == nil {
		s.repos = map[int64]*repository{}
	}
	repo := s.repos[projectID]
	if repo == nil {
		repo = &repository{commits: map[string]*commit{}, branches: map[string]string{}}
		s.repos[projectID] = repo
	}
	tree := map[string][]byte{}
	parent := repo.branches[branch]
	if p := repo.commits[parent]; p != nil {
		for k, v := range p.files {
			tree[k] = v
		}
	}
	for k, v := range files {
		if v == nil {
			delete(tree, k)
			continue
		}
		tree[k] = slices.Clone(v)
	}
	at := s.now()
	sha, err := s.writeCommit(projectID, branch, parent, message, at, tree)
	if err != nil {
		panic(fmt.Sprintf("gitlabtest: commit to project %d: %v", projectID, err))
	}
	repo.commits[sha] = &commit{sha: sha, parent: parent, message: message, at: at, files: tree}
	repo.branches[branch] = sha
	return sha
}

// fileAt is a file of a project's tree at ref (default main). The caller
// holds s.mu.
func (s *Server) fileAt(projectID int64, ref, path string) ([]byte, bool) {
	c := s.resolveRef(projectID, ref)
	if c == nil {
		return nil, false
	}
	b, ok := c.files[path]
	return b, ok
}

// headTrees are the trees at the head of each project's main branch, for
// snapshots. The caller holds s.mu.
func (s *Server) headTrees() map[int64]map[string][]byte {
	out := map[int64]map[string][]byte{}
	for id := range s.repos {
		if c := s.resolveRef(id, "main"); c != nil {
			out[id] = c.files
		}
	}
	return out
}

// BranchHead is the commit a project's branch points at, "" when none.
func (s *Server) BranchHead(projectID int64, branch string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if repo := s.repos[projectID]; repo != nil {
		return repo.branches[branch]
	}
	return ""
}

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// resolveRef finds the commit a branch name or SHA names. The caller holds
// s.mu.
func (s *Server) resolveRef(projectID int64, ref string) *commit {
	repo := s.repos[projectID]
	if repo == nil {
		return nil
	}
	if ref == "" {
		ref = "main"
	}
	if sha, ok := repo.branches[ref]; ok {
		return repo.commits[sha]
	}
	if fullSHA.MatchString(ref) {
		return repo.commits[ref]
	}
	return nil
}

// getBranch serves GET /projects/:id/repository/branches/:branch.
func (s *Server) getBranch(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.lookupProject(w, r)
	if !ok {
		return
	}
	name := r.PathValue("branch")
	repo := s.repos[p.ID]
	if repo == nil || repo.branches[name] == "" {
		writeMessage(w, http.StatusNotFound, "404 Branch Not Found")
		return
	}
	c := repo.commits[repo.branches[name]]
	writeJSON(w, http.StatusOK, map[string]any{
		"name": name, "merged": false, "protected": name == "main", "default": name == "main",
		"web_url": fmt.Sprintf("%s/%s/-/tree/%s", s.baseURL, p.PathWithNamespace, name),
		"commit": map[string]any{
			"id": c.sha, "short_id": c.sha[:8], "title": c.message, "message": c.message,
			"parent_ids": []string{c.parent}, "created_at": c.at.UTC().Format(time.RFC3339Nano),
			"committed_date": c.at.UTC().Format(time.RFC3339Nano),
		},
	})
}

// getArchive serves GET /projects/:id/repository/archive[.tar.gz]?sha=REF
// as GitLab does: a gzipped tarball whose entries sit under one top-level
// directory named <project>-<ref>-<sha>.
func (s *Server) getArchive(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	p, ok := s.lookupProject(w, r)
	if !ok {
		s.mu.Unlock()
		return
	}
	ref := r.URL.Query().Get("sha")
	c := s.resolveRef(p.ID, ref)
	if c == nil {
		s.mu.Unlock()
		writeMessage(w, http.StatusNotFound, "404 Commit Not Found")
		return
	}
	slug := p.PathWithNamespace[strings.LastIndex(p.PathWithNamespace, "/")+1:]
	files := c.files
	prefix := fmt.Sprintf("%s-%s-%s/", slug, c.sha, c.sha)
	s.mu.Unlock()

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	paths := make([]string, 0, len(files))
	for k := range files {
		paths = append(paths, k)
	}
	slices.Sort(paths)
	for _, path := range paths {
		body := files[path]
		if err := tw.WriteHeader(&tar.Header{Name: prefix + path, Mode: 0o644, Size: int64(len(body)), ModTime: c.at, Typeflag: tar.TypeReg}); err != nil {
			writeMessage(w, http.StatusInternalServerError, err.Error())
			return
		}
		if _, err := tw.Write(body); err != nil {
			writeMessage(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	if err := tw.Close(); err != nil {
		writeMessage(w, http.StatusInternalServerError, err.Error())
		return
	}
	if err := gz.Close(); err != nil {
		writeMessage(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.tar.gz"`, strings.TrimSuffix(prefix, "/")))
	_, _ = w.Write(buf.Bytes())
}
