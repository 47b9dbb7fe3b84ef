package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
)

func TestStandinFlagsToOptions(t *testing.T) {
	tio := withEnv(newTestIO("", false), map[string]string{"CONFIG_FILE": "/etc/from-env.toml", "CI_SERVER_TOKEN": "glrt-from-env"})
	var runOpts *StandinRunOptions
	cmd := NewCmdStandinRun(tio.f, func(o *StandinRunOptions) error { runOpts = o; return nil })
	cmd.SetArgs([]string{"-d", "/srv/runner", "--listen-address", "127.0.0.1:9252"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if runOpts.ConfigFile != "/etc/from-env.toml" || runOpts.WorkingDirectory != "/srv/runner" || runOpts.ListenAddress != "127.0.0.1:9252" {
		t.Errorf("run options = %+v", runOpts)
	}

	var single *StandinRunSingleOptions
	cmd = NewCmdStandinRunSingle(tio.f, func(o *StandinRunSingleOptions) error { single = o; return nil })
	cmd.SetArgs([]string{"--url", "http://127.0.0.1:8929", "--executor", "shell", "--max-builds", "1", "--wait-timeout", "600",
		"--builds-dir", "/tmp/builds", "--env", "A=1", "--env", "B=2", "--name", "gosling-web-1"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	rc := single.Runner
	if rc.URL != "http://127.0.0.1:8929" || rc.Token != "glrt-from-env" || rc.Executor != "shell" || rc.BuildsDir != "/tmp/builds" ||
		strings.Join(rc.Environment, ",") != "A=1,B=2" || rc.Name != "gosling-web-1" || single.MaxBuilds != 1 || single.WaitTimeout != 600 {
		t.Errorf("run-single options = %+v", single)
	}

	var verify *StandinVerifyOptions
	cmd = NewCmdStandinVerify(tio.f, func(o *StandinVerifyOptions) error { verify = o; return nil })
	cmd.SetArgs([]string{"-c", "/x/config.toml", "-n", "web"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if verify.ConfigFile != "/x/config.toml" || verify.Name != "web" {
		t.Errorf("verify options = %+v", verify)
	}

	if code := run(t, newTestIO("", false), "dev", "gitlab-runner", "run-single", "--token", "glrt-x"); code != ExitError {
		t.Errorf("run-single without --url: exit %d", code)
	}
	tio = newTestIO("", false)
	if code := run(t, tio, "dev", "gitlab-runner", "--version"); code != ExitOK || !strings.Contains(tio.out.String(), runnerstandin.Banner) || !strings.Contains(tio.out.String(), "Version:      "+runnerstandin.Version) {
		t.Errorf("--version: exit %d %q", code, tio.out)
	}
}

func TestStandinVerifyAndRunSingle(t *testing.T) {
	gl, p, r := standinGitLab(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	write := func(body string) {
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runner := func(name, token string) string {
		return fmt.Sprintf("[[runners]]\nname = %q\nurl = %q\ntoken = %q\nexecutor = \"shell\"\n", name, gl.URL(), token)
	}
	write(runner("good", r.Token) + runner("gone", "glrt-deleted-runner"))

	tio := newTestIO("", false)
	if code := run(t, tio, "dev", "gitlab-runner", "verify", "--config", cfg); code != ExitAuth {
		t.Errorf("verify with a removed runner: exit %d", code)
	}
	short := runnerstandin.ShortToken(r.Token)
	if !strings.Contains(tio.err.String(), "Verifying runner... is valid    runner="+short) || !strings.Contains(tio.err.String(), "is removed    runner=deleted-r") ||
		strings.Contains(tio.err.String(), r.Token) {
		t.Errorf("verify output:\n%s", tio.err)
	}
	if code := run(t, newTestIO("", false), "dev", "gitlab-runner", "verify", "--config", cfg, "--name", "good"); code != ExitOK {
		t.Errorf("verify --name good: exit %d", code)
	}
	write(strings.Replace(runner("docker", r.Token), `"shell"`, `"docker"`, 1))
	tio = newTestIO("", false)
	if code := run(t, tio, "dev", "gitlab-runner", "run", "--config", cfg); code != ExitInvalidConfig || !strings.Contains(tio.err.String(), "not supported by the gitlab-runner STAND-IN") {
		t.Errorf("docker executor: exit %d %s", code, tio.err)
	}

	job := gl.AddJob(p.ID, gitlabtest.JobSpec{Name: "single", Script: []string{"echo from run-single"}})
	tio = newTestIO("", false)
	code := run(t, tio, "dev", "gitlab-runner", "run-single", "--url", gl.URL(), "--token", r.Token, "--executor", "shell",
		"--max-builds", "1", "--wait-timeout", "60", "--builds-dir", filepath.Join(dir, "builds"))
	if code != ExitOK {
		t.Fatalf("run-single: exit %d\n%s", code, tio.err)
	}
	if j, _ := gl.Job(job.ID); j.Status != "success" || !strings.Contains(string(gl.Trace(job.ID)), "from run-single") {
		t.Errorf("job %s:\n%s", j.Status, gl.Trace(job.ID))
	}
}

// run-single --config --runner NAME takes that runner from config.toml
// and sends the system_id kept beside it (.runner_system_id), as
// gitlab-runner's configfile.Load does, so the machine whose agent checked
// the token with that system_id is one runner manager; --config without
// --runner is not read.
func TestStandinRunSingleConfigSystemID(t *testing.T) {
	gl, p, r := standinGitLab(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf("[[runners]]\nname = \"other\"\nurl = %q\ntoken = \"glrt-not-this-one\"\nexecutor = \"shell\"\n"+
		"[[runners]]\nname = \"machine\"\nurl = %q\ntoken = %q\nexecutor = \"shell\"\nbuilds_dir = %q\n",
		gl.URL(), gl.URL(), r.Token, filepath.Join(dir, "builds"))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".runner_system_id"), []byte("s_0123456789ab\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := run(t, newTestIO("", false), "dev", "gitlab-runner", "run-single", "--config", cfg); code != ExitError {
		t.Errorf("run-single --config without --runner: exit %d, want %d (the file is not read)", code, ExitError)
	}
	job := gl.AddJob(p.ID, gitlabtest.JobSpec{Name: "single", Script: []string{"echo one manager"}})
	tio := newTestIO("", false)
	if code := run(t, tio, "dev", "gitlab-runner", "run-single", "--config", cfg, "--runner", "machine", "--max-builds", "1", "--wait-timeout", "60"); code != ExitOK {
		t.Fatalf("run-single: exit %d\n%s", code, tio.err)
	}
	if j, _ := gl.Job(job.ID); j.Status != "success" {
		t.Errorf("job %s:\n%s", j.Status, gl.Trace(job.ID))
	}
	var ids []string
	for _, m := range gl.Managers(r.ID) {
		ids = append(ids, m.SystemID)
	}
	if len(ids) != 1 || ids[0] != "s_0123456789ab" {
		t.Errorf("runner managers %v, want the one of .runner_system_id", ids)
	}
}

// standinGitLab is a GitLab test server with a project and a runner of it.
func standinGitLab(t *testing.T) (*gitlabtest.Server, gitlabtest.Project, gitlabtest.Runner) {
	t.Helper()
	gl := gitlabtest.New(gitlabtest.WithLongPolling(0))
	t.Cleanup(gl.Close)
	p := gl.AddProject("acme/web", gl.AddGroup("acme", 0).ID)
	return gl, p, gl.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
}
