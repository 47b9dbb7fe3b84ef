package agent

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/gosling-ci/gosling/internal/agentapi"
)

// Self-update ("the VM runner SHALL update itself"). Each heartbeat's
// answer names the versions the Nest pins (agentapi.Pins). When the agent's
// own version differs, it downloads the pinned binary, checks its SHA-256
// against the published checksum (the URL followed by ".sha256"), checks
// that it starts (`<new> --version` prints the pinned version), renames it
// over its own executable (an atomic swap on one file system) and
// re-executes itself with syscall.Exec: the process, its PID and its child
// gitlab-runner stay, so a running job is not dropped, and the new agent
// adopts gitlab-runner through its pid file. A bad checksum, a download
// that fails or a binary that does not start leaves the old binary in
// place and is reported in the next heartbeat (Beat.UpdateError); that
// version is not tried again from the same URL by this process.
//
// gitlab-runner is upgraded the same way, but only between jobs: the agent
// waits until gitlab-runner runs none, swaps the binary, stops the old
// process gracefully and starts the new one.

// maxDownload bounds a downloaded binary.
const maxDownload = 512 << 20

// apply acts on the pins of a heartbeat or ready answer.
func (a *agent) apply(ctx context.Context, p agentapi.Pins) {
	if key := "agent " + p.Agent + " " + p.AgentURL; p.Agent != "" && p.Agent != a.opts.Version && p.AgentURL != "" && !a.updateTried[key] && a.cfg.Mode() == agentapi.ModeRun {
		a.updateTried[key] = true
		err := a.selfUpdate(ctx, p.Agent, p.AgentURL) // returns only when it failed
		a.updateErr = fmt.Sprintf("agent %s: %v", p.Agent, err)
		a.log.Warn("self-update refused; running on the old binary", "version", p.Agent, "error", err)
	}
	if key := "gitlab-runner " + p.GitLabRunner + " " + p.GitLabRunnerURL; p.GitLabRunner != "" && a.version != "" && p.GitLabRunner != a.version && p.GitLabRunnerURL != "" &&
		!a.updateTried[key] && a.cfg.Mode() == agentapi.ModeRun && len(a.watch.jobs()) == 0 && a.sup.running() {
		a.updateTried[key] = true
		if err := a.upgradeRunner(ctx, p.GitLabRunner, p.GitLabRunnerURL); err != nil {
			a.updateErr = fmt.Sprintf("gitlab-runner %s: %v", p.GitLabRunner, err)
			a.log.Warn("gitlab-runner upgrade refused; running on the old one", "version", p.GitLabRunner, "error", err)
		}
	}
}

// expandURL fills a release URL's {version}, {os} and {arch}.
func expandURL(u, version string) string {
	return strings.NewReplacer("{version}", version, "{os}", runtime.GOOS, "{arch}", runtime.GOARCH).Replace(u)
}

// download fetches url next to dst (dst.new), checks it against url's
// .sha256 and makes it executable. It returns the new file's path.
func download(ctx context.Context, url, dst string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	want, err := fetchChecksum(ctx, url+".sha256", filepath.Base(url))
	if err != nil {
		return "", err
	}
	tmp := dst + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	body, err := get(ctx, url)
	if err != nil {
		return "", err
	}
	defer body.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, maxDownload+1))
	if err != nil {
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	if n > maxDownload {
		return "", fmt.Errorf("download %s: larger than %d bytes", url, maxDownload)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return "", fmt.Errorf("checksum mismatch for %s: got sha256 %s, the release says %s", url, got, want)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	ok = true
	return tmp, nil
}

func get(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}

// fetchChecksum reads a sha256sum-format file: "<hex>  <name>" lines, or
// one bare digest. The line naming file wins.
func fetchChecksum(ctx context.Context, url, file string) (string, error) {
	body, err := get(ctx, url)
	if err != nil {
		return "", fmt.Errorf("the release's checksum: %w", err)
	}
	defer body.Close()
	var only string
	lines := 0
	sc := bufio.NewScanner(io.LimitReader(body, 1<<20))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		lines++
		sum := strings.ToLower(f[0])
		if _, err := hex.DecodeString(sum); err != nil || len(sum) != 64 {
			continue
		}
		if len(f) > 1 && strings.TrimPrefix(f[len(f)-1], "*") == file {
			return sum, nil
		}
		if len(f) > 1 && filepath.Base(strings.TrimPrefix(f[len(f)-1], "*")) == file {
			return sum, nil
		}
		only = sum
	}
	if only != "" && lines == 1 {
		return only, nil
	}
	return "", fmt.Errorf("%s names no SHA-256 for %s", url, file)
}

// checkStarts runs `<bin> --version` and wants want in its output.
func checkStarts(ctx context.Context, bin, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("the new binary does not start: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if !strings.Contains(string(out), want) {
		return fmt.Errorf("the new binary says %q, not version %s", strings.TrimSpace(string(out)), want)
	}
	return nil
}

// selfUpdate replaces the agent's binary and re-executes it. It returns
// only on failure, with the reason.
func (a *agent) selfUpdate(ctx context.Context, version, urlTemplate string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return err
	}
	url := expandURL(urlTemplate, version)
	a.log.Info("updating the agent", "from", a.opts.Version, "to", version, "url", url)
	tmp, err := download(ctx, url, self)
	if err != nil {
		return err
	}
	if err := checkStarts(ctx, tmp, version); err != nil {
		os.Remove(tmp)
		return err
	}
	// The old binary stays beside the new one (.prev): put back if the
	// new one cannot be executed, kept for a manual rollback otherwise.
	prev := self + ".prev"
	_ = os.Remove(prev)
	if err := os.Link(self, prev); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keep the old binary: %w", err)
	}
	if err := os.Rename(tmp, self); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("swap the binary: %w", err)
	}
	a.setPhase(a.phase) // the new agent adopts gitlab-runner from state.json
	a.log.Info("re-executing the updated agent", "version", version)
	// On the launcher thread: gitlab-runner's parent-death signal is that
	// thread's, and execve keeps the calling thread alone.
	launcher().do(func() { err = syscall.Exec(self, os.Args, os.Environ()) })
	if rerr := os.Rename(prev, self); rerr != nil {
		err = fmt.Errorf("%w; and the old binary could not be put back: %v", err, rerr)
	}
	return fmt.Errorf("re-execute %s: %w", self, err)
}

// upgradeRunner replaces gitlab-runner between jobs.
func (a *agent) upgradeRunner(ctx context.Context, version, urlTemplate string) error {
	bin, err := filepath.EvalSymlinks(a.sup.binary)
	if err != nil {
		return err
	}
	url := expandURL(urlTemplate, version)
	a.log.Info("upgrading gitlab-runner between jobs", "from", a.version, "to", version, "url", url)
	tmp, err := download(ctx, url, bin)
	if err != nil {
		return err
	}
	if err := checkStarts(ctx, tmp, version); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("swap gitlab-runner: %w", err)
	}
	// No job runs: the graceful stop is immediate (one taken meanwhile
	// finishes first).
	a.phase = PhaseStopping
	if err := a.sup.stop(ctx, 24*time.Hour, a.idle); err != nil {
		a.log.Warn("stop the old gitlab-runner", "error", err)
	}
	a.sup.done = nil
	a.report(ctx, a.watch.finishAll(""))
	token, _, err := a.tokens.current(ctx, a.cfg)
	if err != nil {
		return err
	}
	if err := a.startRunner(ctx, token, nil); err != nil {
		return err
	}
	a.setPhase(PhaseServing)
	return nil
}
