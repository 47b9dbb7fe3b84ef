package runnerstandin

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// getSources fetches the commit a job names into dir as gitlab-runner's
// shell executor does with its default GIT_STRATEGY fetch: git init (the
// directory is reused from job to job), the remote set to the job's
// repo_url (which carries the job token), git fetch of the payload's
// refspecs at its depth, a forced checkout of the SHA and git clean -ffdx.
// GIT_STRATEGY clone starts from an empty directory, none skips Git
// altogether. A fetch GitLab refuses fails the job, as it does on the real
// runner. It returns the exit code of the failing git command (0 when all
// went well).
func getSources(ctx context.Context, dir string, job *jobResponse, env []string, trace *jobTrace) (int, error) {
	strategy := jobVariableValue(job, "GIT_STRATEGY")
	if strategy == "none" {
		trace.Printf("Skipping Git repository setup\n")
		return 0, os.MkdirAll(dir, 0o755)
	}
	depth := job.GitInfo.Depth
	if d, err := strconv.Atoi(jobVariableValue(job, "GIT_DEPTH")); err == nil && d >= 0 {
		depth = d
	}
	if strategy == "clone" {
		if err := os.RemoveAll(dir); err != nil {
			return 0, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	if depth > 0 {
		trace.Printf("Fetching changes with git depth set to %d...\n", depth)
	} else {
		trace.Printf("Fetching changes...\n")
	}
	_, statErr := os.Stat(filepath.Join(dir, ".git"))
	fresh := errors.Is(statErr, os.ErrNotExist)
	gitEnv := append(env[:len(env):len(env)], "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
	steps := [][]string{{"-c", "init.defaultBranch=main", "init", dir}}
	remote := []string{"remote", "add", "origin", job.GitInfo.RepoURL}
	if !fresh {
		remote = []string{"remote", "set-url", "origin", job.GitInfo.RepoURL}
	}
	fetch := []string{"-c", "http.followRedirects=false", "fetch", "origin", "--prune"}
	if depth > 0 {
		fetch = append(fetch, "--depth", strconv.Itoa(depth))
	}
	refspecs := job.GitInfo.Refspecs
	if len(refspecs) == 0 {
		refspecs = []string{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"}
	}
	fetch = append(fetch, refspecs...)
	steps = append(steps, remote, fetch)
	for i, args := range steps {
		if code, err := runGit(ctx, dir, gitEnv, args, trace); err != nil || code != 0 {
			return code, err
		}
		if i == 0 && fresh {
			trace.Printf("Created fresh repository.\n")
		}
	}
	sha := job.GitInfo.Sha
	trace.Printf("Checking out %.8s as %s...\n", sha, job.GitInfo.Ref)
	for _, args := range [][]string{{"checkout", "-f", "-q", sha}, {"clean", "-ffdx"}} {
		if code, err := runGit(ctx, dir, gitEnv, args, trace); err != nil || code != 0 {
			return code, err
		}
	}
	trace.Printf("Skipping Git submodules setup\n")
	return 0, nil
}

// runGit runs one git command in dir, its output into the job log, and
// returns its exit code.
func runGit(ctx context.Context, dir string, env, args []string, trace *jobTrace) (int, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = trace, trace
	return runInGroup(ctx, cmd)
}

// jobVariableValue is the value of a job variable ("" when unset), the
// last of its key winning.
func jobVariableValue(job *jobResponse, key string) string {
	v := ""
	for _, jv := range job.Variables {
		if jv.Key == key {
			v = jv.Value
		}
	}
	return strings.TrimSpace(v)
}
