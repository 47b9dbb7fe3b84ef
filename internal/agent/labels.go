package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gosling-ci/gosling/internal/agentapi"
)

// Labels of a local machine. Every process of a machine of the local
// provider (the agent, gitlab-runner, the jobs' shells) carries them in
// its environment, as a cloud machine carries its labels or tags
// (gosling-deployment, gosling-egg, gosling-runner), so reconciliation finds
// the machine by them even when its OpenTofu state is gone
// (FindLocalMachines), and a machine's teardown ends every process of it,
// whatever became of its process group (KillLocalMachine). LabelHome, the
// directory that holds the machine's work directory (a worker's
// <state>/machines), tells apart the machines of two Gosling instances on
// one host that share a deployment name and pool runner IDs (two
// `gosling dev` of one Nest): each finds and ends its own only.
const (
	LabelDeployment = "GOSLING_MACHINE_DEPLOYMENT"
	LabelEgg        = "GOSLING_MACHINE_EGG"
	LabelRunner     = "GOSLING_MACHINE_RUNNER"
	LabelHome       = "GOSLING_MACHINE_HOME"
)

// baseEnv are the variables a machine's processes keep from the process
// that made them: where programs are, who runs them, locale and time zone.
// Nothing else of the worker (OpenTofu settings, make's variables, a Vault
// token, a database DSN) reaches a machine.
var baseEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "XDG_RUNTIME_DIR"}

// agentCredentialPrefixes are the variables the agent's secret backends
// read its credentials from on the local provider (secrets.Open: Vault,
// AWS, Yandex Cloud). The agent keeps them; gitlab-runner and the jobs
// never see them (RunnerEnv).
var agentCredentialPrefixes = []string{"VAULT_", "AWS_", "YC_"}

// keepBase tells whether a variable of the base allow-list (locale
// categories included) is kept.
func keepBase(name string) bool {
	return slices.Contains(baseEnv, name) || strings.HasPrefix(name, "LC_")
}

// MachineEnv is the environment a local machine's agent starts with: the
// allow-listed variables of env (KEY=value entries), the credential
// variables of its secret backends, and the machine's labels; home is the
// directory holding its work directory (LabelHome).
func MachineEnv(env []string, cfg agentapi.Config, home string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if keepBase(name) || hasAnyPrefix(name, agentCredentialPrefixes) {
			out = append(out, kv)
		}
	}
	dep := cfg.Deployment
	if dep == "" {
		dep = agentapi.DefaultDeployment
	}
	return append(out, LabelDeployment+"="+dep, LabelEgg+"="+cfg.Egg, LabelRunner+"="+cfg.RunnerID, LabelHome+"="+filepath.Clean(home))
}

// RunnerEnv is the environment gitlab-runner starts with, and so the base
// of every job's: the allow-listed variables of env and the machine's
// labels, nothing else. The agent's own credentials and the runner token
// (GOSLING_RUNNER_TOKEN, which a serverless platform mounts for the agent)
// stay with the agent; what jobs need is in config.toml's runner.env.
func RunnerEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if keepBase(name) || name == LabelDeployment || name == LabelEgg || name == LabelRunner || name == LabelHome {
			out = append(out, kv)
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// LocalMachine is a machine of the local provider found by its labels: the
// processes that carry them.
type LocalMachine struct {
	Deployment string
	Egg        string
	RunnerID   string
	// PIDs are its processes, lowest first.
	PIDs []int
}

// FindLocalMachines lists the machines of a deployment whose processes this
// user can see, by the labels in their environment (/proc/PID/environ),
// kept under home (LabelHome; "" is any home). Processes that end during
// the scan are skipped. It returns errors.ErrUnsupported where there is no
// /proc.
func FindLocalMachines(deployment, home string) ([]LocalMachine, error) {
	if deployment == "" {
		deployment = agentapi.DefaultDeployment
	}
	procs, err := labelledProcesses()
	if err != nil {
		return nil, err
	}
	byRunner := map[string]*LocalMachine{}
	var ids []string
	for _, p := range procs {
		if p.labels[LabelDeployment] != deployment || !inHome(p.labels, home) {
			continue
		}
		id := p.labels[LabelRunner]
		m := byRunner[id]
		if m == nil {
			m = &LocalMachine{Deployment: deployment, Egg: p.labels[LabelEgg], RunnerID: id}
			byRunner[id] = m
			ids = append(ids, id)
		}
		m.PIDs = append(m.PIDs, p.pid)
	}
	slices.Sort(ids)
	out := make([]LocalMachine, 0, len(ids))
	for _, id := range ids {
		m := byRunner[id]
		slices.Sort(m.PIDs)
		out = append(out, *m)
	}
	return out, nil
}

// KillLocalMachine ends every process labelled as runnerID's machine kept
// under home (LabelHome; "" is any home) with SIGKILL, stopped ones included, and waits up to
// wait for them to be gone. It returns how many processes it signalled.
// A process it may not signal, or one still alive after wait, is an error.
func KillLocalMachine(home, runnerID string, wait time.Duration) (int, error) {
	if runnerID == "" {
		return 0, errors.New("kill a local machine: no runner ID")
	}
	deadline := time.Now().Add(wait)
	killed := map[int]bool{}
	for {
		procs, err := labelledProcesses()
		if err != nil {
			return len(killed), err
		}
		var left []int
		for _, p := range procs {
			if p.labels[LabelRunner] != runnerID || !inHome(p.labels, home) || p.pid == os.Getpid() {
				continue
			}
			left = append(left, p.pid)
			if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return len(killed), fmt.Errorf("kill process %d of machine %s: %w", p.pid, runnerID, err)
			}
			killed[p.pid] = true
		}
		if len(left) == 0 {
			return len(killed), nil
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("machine %s: processes %v still alive after %s", runnerID, left, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type labelledProcess struct {
	pid    int
	labels map[string]string
}

// labelledProcesses lists the live processes whose environment carries a
// runner label.
func labelledProcesses() ([]labelledProcess, error) {
	entries, err := os.ReadDir("/proc")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("list local machines: no /proc: %w", errors.ErrUnsupported)
	}
	if err != nil {
		return nil, err
	}
	marker := []byte(LabelRunner + "=")
	var out []labelledProcess
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(b, marker) {
			continue // gone, another user's, or unlabelled
		}
		if st := processState(pid); st == "" || st == "Z" || st == "X" {
			continue
		}
		labels := map[string]string{}
		for _, kv := range bytes.Split(b, []byte{0}) {
			k, v, ok := bytes.Cut(kv, []byte("="))
			if !ok {
				continue
			}
			switch string(k) {
			case LabelDeployment, LabelEgg, LabelRunner, LabelHome:
				labels[string(k)] = string(v)
			}
		}
		if labels[LabelRunner] != "" {
			out = append(out, labelledProcess{pid: pid, labels: labels})
		}
	}
	return out, nil
}

// inHome tells whether a process's labels put its machine under home ("":
// anywhere). A machine launched before machines were labelled with their
// home has no such label and is anyone's, as it was then.
func inHome(labels map[string]string, home string) bool {
	h, labelled := labels[LabelHome]
	return home == "" || !labelled || h == filepath.Clean(home)
}
