package gitlabtest_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// gitIn runs git in dir as a runner's clone does, without any credential
// helper or prompt, and returns its combined output.
func gitIn(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestGitFetchWithJobToken fetches a job's commit the way gitlab-runner
// does (git init, fetch with the job's refspecs and depth from
// CI_REPOSITORY_URL, checkout of the SHA), served by git http-backend; the
// same fetch without credentials, with another token, or once the job has
// ended, is refused, and a push is refused.
func TestGitFetchWithJobToken(t *testing.T) {
	s, _ := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	first := s.Commit(p.ID, "main", "add the readme", map[string][]byte{"README.md": []byte("# web\n")})
	sha := s.Commit(p.ID, "main", "add the script", map[string][]byte{"ci/run.sh": []byte("echo hi\n"), "with space.txt": []byte("x")})
	if out, err := gitIn(t.TempDir(), "--version"); err != nil {
		t.Fatalf("git: %v %s", err, out)
	}
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	pl, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "unit", Script: []string{"true"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if pl.SHA != sha || pl.BeforeSHA != first {
		t.Errorf("pipeline SHA %s before %s, want the head %s after %s", pl.SHA, pl.BeforeSHA, sha, first)
	}
	c := runnerCall{t, s}
	job := decodeJob(t, c.request(r.Token, ""))
	if job.GitInfo.Sha != sha {
		t.Fatalf("git_info.sha %s, want %s", job.GitInfo.Sha, sha)
	}

	fetch := func(url string) (string, error) {
		dir := filepath.Join(t.TempDir(), "web")
		if out, err := gitIn(filepath.Dir(dir), "init", "-q", dir); err != nil {
			t.Fatalf("git init: %v %s", err, out)
		}
		if out, err := gitIn(dir, "remote", "add", "origin", url); err != nil {
			t.Fatalf("git remote add: %v %s", err, out)
		}
		args := append([]string{"fetch", "origin", "--prune", "--depth", "20"}, job.GitInfo.Refspecs...)
		if out, err := gitIn(dir, args...); err != nil {
			return dir, fmt.Errorf("%w: %s", err, out)
		}
		return dir, nil
	}
	dir, err := fetch(job.GitInfo.RepoURL)
	if err != nil {
		t.Fatalf("fetch with the job token: %v", err)
	}
	if out, err := gitIn(dir, "checkout", "-f", "-q", job.GitInfo.Sha); err != nil {
		t.Fatalf("checkout %s: %v %s", job.GitInfo.Sha, err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ci", "run.sh")); err != nil || string(b) != "echo hi\n" {
		t.Errorf("ci/run.sh = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "with space.txt")); err != nil {
		t.Errorf("with space.txt: %v", err)
	}

	anon := strings.Replace(job.GitInfo.RepoURL, "gitlab-ci-token:"+job.Token+"@", "", 1)
	if _, err := fetch(anon); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "Authentication failed") && !strings.Contains(err.Error(), "could not read Username") {
		t.Errorf("fetch without credentials: %v, want it refused", err)
	}
	if _, err := fetch(strings.Replace(job.GitInfo.RepoURL, job.Token, "glcbt-other", 1)); err == nil {
		t.Error("fetch with another job token succeeded")
	}
	if out, err := gitIn(dir, "push", job.GitInfo.RepoURL, "HEAD:refs/heads/pushed"); err == nil {
		t.Errorf("push with the job token succeeded: %s", out)
	}
	if a := c.json(http.MethodPut, "/jobs/"+itoa(job.ID), map[string]any{"token": job.Token, "state": "success"}); a.status != http.StatusOK {
		t.Fatalf("final update: %d", a.status)
	}
	if _, err := fetch(job.GitInfo.RepoURL); err == nil {
		t.Error("fetch with the token of a finished job succeeded")
	}
	if _, err := fetch(strings.Replace(anon, "://", "://root:"+s.Token()+"@", 1)); err != nil {
		t.Errorf("fetch with a personal access token: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A server's repositories directory names its process, and goes with
// Close; RemoveStaleRepositories deletes those of processes that no longer
// run and keeps this process's and unrelated directories.
func TestRemoveStaleRepositories(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	s := gitlabtest.NewServer()
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	s.Commit(p.ID, "main", "add the readme", map[string][]byte{"README.md": []byte("# web\n")})
	own, _ := filepath.Glob(filepath.Join(tmp, fmt.Sprintf("gitlabtest-repos-%d-*", os.Getpid())))
	if len(own) != 1 {
		t.Fatalf("repositories directories of this process in %s: %v", tmp, own)
	}

	// A process that has ended: its pid names no process any more.
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(tmp, fmt.Sprintf("gitlabtest-repos-%d-123", done.Process.Pid))
	other := filepath.Join(tmp, "gitlabtest-repos-123456")
	for _, d := range []string{stale, other} {
		if err := os.MkdirAll(filepath.Join(d, "1.git"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := gitlabtest.RemoveStaleRepositories()
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != stale {
		t.Errorf("removed %v, want only %s", removed, stale)
	}
	for d, want := range map[string]bool{stale: false, other: true, own[0]: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", d, err == nil, want)
		}
	}
	s.Close()
	if _, err := os.Stat(own[0]); !os.IsNotExist(err) {
		t.Errorf("Close left %s: %v", own[0], err)
	}
}
