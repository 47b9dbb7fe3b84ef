package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Token rotation reaches a live agent through SIGHUP. Whoever rotated the
// token has already written its new version to the secret backend; the
// agent, on SIGHUP, re-reads its configuration, empties its resolver's
// cache, reads the current version of its token, verifies it with GitLab
// (POST /api/v4/runners/verify), records the outcome in token.json of its
// work directory (TokenStatus), where the rotation reads it back, rewrites
// gitlab-runner's config.toml with the new token and sends gitlab-runner
// SIGHUP, which reloads it. Both processes keep running throughout,
// whatever the outcome: a job in progress authenticates with its own job
// token, not the runner token, and is never dropped; the next job is taken
// with the new token.
//
// On the local provider the agent is signalled directly. On a cloud VM the
// agent runs as the systemd unit gosling-agent: the same SIGHUP (`systemctl
// reload gosling-agent`, delivered by the cloud's run-command service, AWS
// SSM SendCommand or Yandex Cloud's OS Login) takes the same path. A
// stopped (dormant) machine is not signalled: it reads the current version
// when it is resumed, as it does at every start.

// Triggers of a token check, as TokenStatus records them.
const (
	TriggerStart  = "start"
	TriggerResume = "resume"
	TriggerReload = "reload"
)

// reloadTimeout bounds one reload's verification; the agent goes on
// heartbeating afterwards, verified or not.
const reloadTimeout = 30 * time.Second

// TokenStatus is what the agent last learnt of its runner token: the
// version of the secret it read and whether GitLab accepted it. It never
// holds the token.
type TokenStatus struct {
	// PID is the agent that wrote the status.
	PID int `json:"pid"`
	// Trigger is start, resume or reload.
	Trigger string `json:"trigger"`
	// Version is the secret version read; empty when the backend cannot say.
	Version  string    `json:"version,omitempty"`
	Verified bool      `json:"verified"`
	At       time.Time `json:"at"`
	// Error says why the token could not be read or was refused.
	Error string `json:"error,omitempty"`
}

// Errors of Reload.
var (
	// ErrNotRunning: there is no agent process for the work directory.
	ErrNotRunning = errors.New("agent is not running")
	// ErrStopped: the agent is stopped (a dormant machine); it reads its
	// token when resumed.
	ErrStopped = errors.New("agent is stopped")
	// ErrNoReload: the running agent has not reported a token check, so it
	// may not handle SIGHUP yet (still starting, or an older agent), and a
	// SIGHUP could end it.
	ErrNoReload = errors.New("agent does not handle reload requests yet")
)

// Reload asks the agent of workDir to re-read and verify its token, and
// returns once the request is sent; ReadTokenStatus tells when it is done.
func Reload(workDir string) error {
	pid, ok := alivePID(workDir)
	if !ok {
		return ErrNotRunning
	}
	if processState(pid) == "T" {
		return ErrStopped
	}
	st, err := ReadTokenStatus(workDir)
	if err != nil || st.PID != pid {
		return ErrNoReload
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal agent %d: %w", pid, err)
	}
	return nil
}

// ReadTokenStatus returns the agent's last token check in workDir.
func ReadTokenStatus(workDir string) (TokenStatus, error) {
	var st TokenStatus
	b, err := os.ReadFile(filepath.Join(workDir, tokenFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("agent token status: %w", err)
	}
	return st, nil
}

// recordToken writes the outcome of a token check, atomically.
func recordToken(workDir, trigger, version string, checkErr error, log *slog.Logger) {
	st := TokenStatus{PID: os.Getpid(), Trigger: trigger, Version: version, Verified: checkErr == nil, At: time.Now().UTC()}
	if checkErr != nil {
		st.Error = checkErr.Error()
	}
	b, err := json.Marshal(st)
	if err == nil {
		tmp := filepath.Join(workDir, tokenFile+".tmp")
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, filepath.Join(workDir, tokenFile))
		}
	}
	if err != nil {
		log.Warn("cannot record token status", "error", err)
	}
}
