package gitlabtest

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The projects' repositories are real Git repositories, one bare
// repository per project in a directory of the server's own, written with
// `git fast-import` and served over Git's smart HTTP protocol by Git's own
// `git http-backend` (a CGI program, run through net/http/cgi), as GitLab
// serves them at /<namespace>/<project>.git. A job's git_info names a
// commit of that repository, and refs/pipelines/<id> points at it as
// GitLab's persistent pipeline refs do, so a runner fetches what the job
// names with the refspecs it is given.
//
// Fetching needs credentials, as for a private project: HTTP Basic with
// the user gitlab-ci-token and a running job's token of the project (what
// CI_REPOSITORY_URL carries), or any user name with a user's personal
// access token. Without them the answer is 401 with WWW-Authenticate, so
// Git sends the credentials of its URL; with wrong ones, 401 again (Git
// gives up). Pushing (git-receive-pack) is refused with 403.

// gitCommitter is who the test server's commits are made by.
const gitCommitter = "GitLab Test Server <gitlabtest@gitlab.example.com>"

// gitRootPrefix starts the name of a server's repositories directory in
// os.TempDir(): gitlabtest-repos-<pid>-<random>, the pid being the
// process that made it, so one a killed process left is known as stale
// (RemoveStaleRepositories).
const gitRootPrefix = "gitlabtest-repos-"

// gitRoot is the directory of the server's repositories, made on first
// use. The caller holds s.mu.
func (s *Server) gitRoot() (string, error) {
	if s.gitDir != "" {
		return s.gitDir, nil
	}
	dir, err := os.MkdirTemp("", gitRootPrefix+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return "", fmt.Errorf("gitlabtest: repositories directory: %w", err)
	}
	s.gitDir = dir
	return dir, nil
}

// removeGitRoot deletes the repositories (Close).
func (s *Server) removeGitRoot() {
	s.mu.Lock()
	dir := s.gitDir
	s.gitDir = ""
	s.mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// RemoveStaleRepositories deletes the repositories directories in
// os.TempDir() that servers of processes no longer running left behind
// (a process killed before it could Close its server), and returns their
// paths. Directories of running processes, this one included, are kept;
// so are those of other users, which cannot be told apart from running
// ones (kill(pid, 0) answers EPERM) or removed.
func RemoveStaleRepositories() ([]string, error) {
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), gitRootPrefix+"*"))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, dir := range dirs {
		pidText, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(dir), gitRootPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || processRuns(pid) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// processRuns tells whether a process with this pid exists (EPERM: it
// does, as another user's).
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// repoDir is the bare repository of a project, by ID: projects keep their
// repository when they are renamed or moved.
func repoDir(root string, projectID int64) string {
	return filepath.Join(root, strconv.FormatInt(projectID, 10)+".git")
}

// git runs git in dir with stdin, and returns its standard output.
func git(dir string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// ensureRepo makes a project's bare repository when missing. The caller
// holds s.mu.
func (s *Server) ensureRepo(projectID int64) (string, error) {
	root, err := s.gitRoot()
	if err != nil {
		return "", err
	}
	dir := repoDir(root, projectID)
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err == nil {
		return dir, nil
	}
	if _, err := git(root, nil, "init", "--quiet", "--bare", "--initial-branch=main", dir); err != nil {
		return "", err
	}
	// http-backend serves upload-pack to anyone the server let through.
	if _, err := git(dir, nil, "config", "http.uploadpack", "true"); err != nil {
		return "", err
	}
	return dir, nil
}

// writeCommit writes a commit of the whole tree files on branch, after
// parent ("" for a root commit), with Git's own fast-import, and returns
// its SHA. The caller holds s.mu.
func (s *Server) writeCommit(projectID int64, branch, parent, message string, at time.Time, files map[string][]byte) (string, error) {
	dir, err := s.ensureRepo(projectID)
	if err != nil {
		return "", err
	}
	ref := "refs/heads/" + branch
	var in bytes.Buffer
	fmt.Fprintf(&in, "commit %s\nmark :1\ncommitter %s %d +0000\ndata %d\n%s\n", ref, gitCommitter, at.Unix(), len(message), message)
	if parent != "" {
		fmt.Fprintf(&in, "from %s\n", parent)
	}
	in.WriteString("deleteall\n")
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		fmt.Fprintf(&in, "M 100644 inline %s\ndata %d\n", fastImportPath(p), len(files[p]))
		in.Write(files[p])
		in.WriteByte('\n')
	}
	in.WriteString("done\n")
	if _, err := git(dir, in.Bytes(), "fast-import", "--quiet", "--done", "--force"); err != nil {
		return "", err
	}
	out, err := git(dir, nil, "rev-parse", "--verify", ref+"^{commit}")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// fastImportPath quotes a path for fast-import when it needs it.
func fastImportPath(p string) string {
	if strings.ContainsAny(p, " \"\\\n\t") || strings.HasPrefix(p, "\"") {
		return strconv.Quote(p)
	}
	return p
}

// setPipelineRef points refs/pipelines/<id> at sha, as GitLab's persistent
// pipeline ref does while the pipeline lives. The caller holds s.mu.
func (s *Server) setPipelineRef(projectID, pipelineID int64, sha string) error {
	dir, err := s.ensureRepo(projectID)
	if err != nil {
		return err
	}
	_, err = git(dir, nil, "update-ref", fmt.Sprintf("refs/pipelines/%d", pipelineID), sha)
	return err
}

// pipelineCommit is the commit a new pipeline (or a job added without one)
// on ref runs for: the branch head, made as an empty commit when the
// branch has none yet, with refs/pipelines/<id> pointing at it. It also
// returns the commit before it (all zeros for a first commit). The caller
// holds s.mu.
func (s *Server) pipelineCommit(projectID, pipelineID int64, ref string) (sha, before string) {
	c := s.resolveRef(projectID, ref)
	if c == nil {
		s.commitLocked(projectID, ref, "Initial commit", nil)
		c = s.resolveRef(projectID, ref)
	}
	if err := s.setPipelineRef(projectID, pipelineID, c.sha); err != nil {
		panic(fmt.Sprintf("gitlabtest: pipeline ref: %v", err))
	}
	before = c.parent
	if before == "" {
		before = strings.Repeat("0", 40)
	}
	return c.sha, before
}

// gitHTTPService is the part of a path after <project>.git/ that the smart
// HTTP protocol uses for fetching.
func gitHTTPService(rest string, r *http.Request) (fetch, known bool) {
	switch {
	case rest == "info/refs":
		svc := r.URL.Query().Get("service")
		return svc == "git-upload-pack", svc == "git-upload-pack" || svc == "git-receive-pack"
	case rest == "git-upload-pack" && r.Method == http.MethodPost:
		return true, true
	case rest == "git-receive-pack" && r.Method == http.MethodPost:
		return false, true
	}
	return false, false
}

// serveGit answers Git's smart HTTP protocol for /<project path>.git/...
// and reports whether the request was one.
func (s *Server) serveGit(w http.ResponseWriter, r *http.Request) bool {
	i := strings.Index(r.URL.Path, ".git/")
	if i <= 1 || strings.HasPrefix(r.URL.Path, apiPrefix+"/") {
		return false
	}
	path, rest := strings.Trim(r.URL.Path[:i], "/"), r.URL.Path[i+len(".git/"):]
	fetch, known := gitHTTPService(rest, r)
	if !known {
		return false
	}
	s.mu.Lock()
	p := s.projectByPath(path)
	var allowed bool
	if p != nil {
		allowed = s.gitAllowed(r, p.ID)
	}
	root, err := s.gitRoot()
	var dir string
	if err == nil && p != nil {
		dir, err = s.ensureRepo(p.ID)
	}
	s.mu.Unlock()
	switch {
	case !allowed:
		// GitLab answers an unknown project like a forbidden one, so
		// Git asks for credentials either way.
		w.Header().Set("WWW-Authenticate", `Basic realm="GitLab"`)
		http.Error(w, "HTTP Basic: Access denied", http.StatusUnauthorized)
		return true
	case !fetch:
		http.Error(w, "You are not allowed to push code to this project.", http.StatusForbidden)
		return true
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return true
	}
	backend, err := httpBackend()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return true
	}
	h := &cgi.Handler{
		Path: backend,
		Dir:  root,
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"},
	}
	// The backend finds the repository by PATH_INFO: the project's
	// directory, named by ID.
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + filepath.Base(dir) + "/" + rest
	h.ServeHTTP(w, r2)
	return true
}

// httpBackend is the path of git-http-backend, in git's exec path.
var httpBackend = sync.OnceValues(func() (string, error) {
	out, err := git("", nil, "--exec-path")
	if err != nil {
		return "", err
	}
	return filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"), nil
})

// gitAllowed checks a Git request's HTTP Basic credentials: gitlab-ci-token
// with the token of a running job of the project, or a user's personal
// access token. The caller holds s.mu.
func (s *Server) gitAllowed(r *http.Request, projectID int64) bool {
	user, pass, ok := r.BasicAuth()
	if !ok || pass == "" {
		return false
	}
	if user == "gitlab-ci-token" {
		for _, j := range s.jobs {
			if j.ProjectID == projectID && j.Status == "running" && j.Token != "" &&
				subtle.ConstantTimeCompare([]byte(j.Token), []byte(pass)) == 1 {
				return true
			}
		}
		return false
	}
	_, ok = s.users[pass]
	return ok
}
