package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gosling-ci/gosling/internal/agentapi"
)

const vmUnitComment = "# Written by `gosling agent install`."

// InstallOptions are the inputs of Install.
type InstallOptions struct {
	// ConfigFile is the agent's configuration (VMConfigFile).
	ConfigFile string
	// WorkDir is the agent's work directory (VMWorkDir).
	WorkDir string
	// Binary is the gosling binary the unit runs (VMBinary).
	Binary string
	// SystemdDir receives the unit (VMSystemdDir).
	SystemdDir string
	// RunnerVersion and RunnerURL install gitlab-runner when the
	// configuration's binary is not there: the release at RunnerURL
	// ({version}, {os} and {arch} filled), checked against its .sha256,
	// into RunnerPath.
	RunnerVersion string
	RunnerURL     string
	RunnerPath    string
}

// Install prepares a cloud VM for the agent: it checks the configuration,
// makes sure gitlab-runner is there (downloading the pinned release when
// it is not), and writes the systemd unit gosling-agent.service, which
// runs `gosling agent run` (Restart=always; `systemctl reload` sends
// SIGHUP, a token reload; `systemctl stop` sends SIGTERM and waits for the
// running job, as the agent stops gitlab-runner gracefully). Enabling the
// unit is left to the caller (`systemctl enable --now gosling-agent`).
func Install(ctx context.Context, o InstallOptions) error {
	cfg, err := agentapi.ReadConfigFile(o.ConfigFile)
	if err != nil {
		return err
	}
	if o.WorkDir == "" || o.Binary == "" || o.SystemdDir == "" {
		return errors.New("install needs a work directory, the gosling binary and a systemd directory")
	}
	if err := os.MkdirAll(o.WorkDir, 0o700); err != nil {
		return err
	}
	runner := cfg.Runner.Binary
	if runner == "" {
		runner = "gitlab-runner"
	}
	if _, err := exec.LookPath(runner); err != nil {
		if o.RunnerURL == "" || o.RunnerVersion == "" {
			return fmt.Errorf("gitlab-runner (%s) is not installed and no release is pinned: set gitlab_runner_version and gitlab_runner_url in MG/config.fly's agent block, or install it in the image", runner)
		}
		dst := o.RunnerPath
		if dst == "" {
			dst = agentapi.VMRunner
		}
		tmp, err := download(ctx, expandURL(o.RunnerURL, o.RunnerVersion), dst)
		if err != nil {
			return err
		}
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
	}
	unit := strings.Join([]string{
		vmUnitComment,
		"[Unit]",
		"Description=Gosling runner agent (supervises gitlab-runner)",
		"Wants=network-online.target",
		"After=network-online.target docker.service",
		"",
		"[Service]",
		"ExecStart=" + agentapi.ShellJoin([]string{o.Binary, "agent", "run", "--work-dir", o.WorkDir, "--config", o.ConfigFile}),
		"ExecReload=/bin/kill -HUP $MAINPID",
		"KillMode=mixed",
		"KillSignal=SIGTERM",
		// The agent stops gitlab-runner gracefully: a running job finishes.
		"TimeoutStopSec=infinity",
		"Restart=always",
		"RestartSec=5",
		"",
		"[Install]",
		"WantedBy=multi-user.target",
		"",
	}, "\n")
	if err := os.MkdirAll(o.SystemdDir, 0o755); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(o.SystemdDir, agentapi.VMUnit), []byte(unit), 0o644)
}
