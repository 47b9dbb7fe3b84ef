package agentapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// The machine contract: how each built-in module runs the agent. One
// function per (cloud, kind) renders the command lines, environment and
// user-data its module runs, from the same inputs, so every module runs
// commands that exist. tofu passes them to the modules as variables; a
// test runs every gosling command line of every module against the real
// command tree, and checks rendered scripts with bash -n and shellcheck.

// Clouds and kinds of the built-in modules (fly's names).
const (
	cloudLocal   = "local"
	cloudAWS     = "aws"
	cloudYandex  = "yandex"
	kindVM       = "vm"
	kindServerls = "serverless"
)

// Power states of a local machine.
const (
	PowerRunning = "running"
	PowerStopped = "stopped"
)

// ContainerWorkDir is a serverless container's work directory.
const ContainerWorkDir = "/tmp/gosling-agent"

// EnvAgentConfig carries a serverless container's agent configuration.
const EnvAgentConfig = "GOSLING_AGENT_CONFIG"

// Errors of MachineContract that say what MG/config.fly lacks.
var (
	ErrNoAgentURL   = errors.New("no agent URL: cloud VMs download the gosling agent (cmd/gosling-agent's release) from MG/config.fly's agent.url; set it (a release URL, {version}, {os} and {arch} are filled in, with its checksum at the same URL followed by .sha256)")
	ErrNoAgentImage = errors.New("no agent image: serverless runners run MG/config.fly's agent.image (the runner image: gitlab-runner and gosling); set it")
)

// ContractInput is what a machine's command lines are made from.
type ContractInput struct {
	Cloud string
	Kind  string
	// Config is the agent's configuration.
	Config Config
	// State is running or stopped (VMs).
	State string
	// MaxRun is a serverless runner's deadline.
	MaxRun time.Duration

	// Binary and WorkDir place a local machine.
	Binary  string
	WorkDir string

	// AgentURL (with AgentVersion filling {version}) is where a cloud VM
	// downloads the gosling agent (cmd/gosling-agent); AgentImage is a
	// serverless container's image.
	AgentURL     string
	AgentVersion string
	AgentImage   string
	// RunnerVersion and RunnerURL pin gitlab-runner on cloud VMs; without
	// them the VM installs GitLab's packaged gitlab-runner.
	RunnerVersion string
	RunnerURL     string
	// Lambda makes an AWS serverless runner a Lambda function (agent
	// serve --lambda) rather than a Fargate task.
	Lambda bool
}

// Contract is what a module runs.
type Contract struct {
	// Launch, Stop and Power are a local machine's command lines (OpenTofu
	// local-exec: the last element is the command, the rest its
	// interpreter).
	Launch []string `json:"launch,omitempty"`
	Stop   []string `json:"stop,omitempty"`
	Power  []string `json:"power,omitempty"`
	// UserData is a cloud VM's first-boot script (bash, run by cloud-init).
	UserData string `json:"user_data,omitempty"`
	// Image, Args and Env are a serverless container's image, the
	// arguments after its entrypoint (gosling) and its environment.
	Image string            `json:"image,omitempty"`
	Args  []string          `json:"args,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	// Commands are every gosling command line above, program first
	// ("gosling" for images and scripts), for tests.
	Commands [][]string `json:"-"`
}

// MachineContract renders the contract of a (cloud, kind).
func MachineContract(in ContractInput) (Contract, error) {
	if err := in.Config.Validate(); err != nil {
		return Contract{}, err
	}
	cfgJSON, err := json.Marshal(in.Config)
	if err != nil {
		return Contract{}, err
	}
	switch in.Cloud + "/" + in.Kind {
	case cloudLocal + "/" + kindVM:
		return localVM(in, string(cfgJSON))
	case cloudLocal + "/" + kindServerls:
		return localServerless(in, string(cfgJSON))
	case cloudAWS + "/" + kindVM, cloudYandex + "/" + kindVM:
		return cloudVM(in, cfgJSON)
	case cloudAWS + "/" + kindServerls:
		if in.Lambda {
			return awsLambda(in, string(cfgJSON))
		}
		return awsServerless(in, string(cfgJSON))
	case cloudYandex + "/" + kindServerls:
		return yandexServerless(in, string(cfgJSON))
	}
	return Contract{}, fmt.Errorf("no machine contract for cloud %q and kind %q", in.Cloud, in.Kind)
}

func localVM(in ContractInput, cfg string) (Contract, error) {
	if in.Binary == "" || in.WorkDir == "" {
		return Contract{}, errors.New("local machines need the gosling binary and a work directory")
	}
	if in.State != PowerRunning && in.State != PowerStopped {
		return Contract{}, fmt.Errorf("machine state %q: want %s or %s", in.State, PowerRunning, PowerStopped)
	}
	c := Contract{
		Launch: []string{in.Binary, "agent", "launch", "--work-dir", in.WorkDir, "--config", cfg},
		Stop:   []string{in.Binary, "agent", "stop", "--work-dir", in.WorkDir},
		Power:  []string{in.Binary, "agent", "power", "--work-dir", in.WorkDir, "--config", cfg, "--state", in.State},
	}
	c.Commands = [][]string{c.Launch, c.Stop, c.Power}
	return c, nil
}

func localServerless(in ContractInput, cfg string) (Contract, error) {
	if in.Binary == "" || in.WorkDir == "" {
		return Contract{}, errors.New("local machines need the gosling binary and a work directory")
	}
	if in.MaxRun <= 0 {
		return Contract{}, errors.New("a serverless runner needs a deadline")
	}
	c := Contract{
		Launch: []string{in.Binary, "agent", "launch", "--serve", "--work-dir", in.WorkDir, "--max-run", in.MaxRun.String(), "--config", cfg},
		Stop:   []string{in.Binary, "agent", "stop", "--work-dir", in.WorkDir},
	}
	c.Commands = [][]string{c.Launch, c.Stop}
	return c, nil
}

// cloudVM renders the first-boot script of an AWS or Yandex VM: write the
// configuration, install docker for the docker executor, download the
// gosling agent (cmd/gosling-agent, installed as VMBinary)
// and check its SHA-256, install gitlab-runner and the systemd unit (gosling
// agent install), start the agent.
func cloudVM(in ContractInput, cfg []byte) (Contract, error) {
	if in.AgentURL == "" {
		return Contract{}, ErrNoAgentURL
	}
	url := in.AgentURL
	if strings.Contains(url, "{version}") {
		if in.AgentVersion == "" {
			return Contract{}, fmt.Errorf("agent.url %q names {version}, but MG/config.fly's agent.version pins none: set it", in.AgentURL)
		}
		url = strings.ReplaceAll(url, "{version}", in.AgentVersion)
	}
	url = strings.NewReplacer("{os}", "linux", "{arch}", "amd64").Replace(url)
	install := []string{VMBinary, "agent", "install", "--config", VMConfigFile, "--work-dir", VMWorkDir}
	if in.RunnerVersion != "" && in.RunnerURL != "" {
		install = append(install, "--gitlab-runner-version", in.RunnerVersion, "--gitlab-runner-url", in.RunnerURL)
	}
	lines := []string{
		"#!/bin/bash",
		"# Gosling runner " + in.Config.RunnerID + ": the gosling agent, which supervises gitlab-runner.",
		"# Rendered by internal/agent.MachineContract; cloud-init runs it at first boot.",
		"set -euo pipefail",
		"export DEBIAN_FRONTEND=noninteractive",
		"install -d -m 0700 /etc/gosling",
		"(umask 077 && echo " + shellQuote(base64.StdEncoding.EncodeToString(cfg)) + " | base64 -d > " + VMConfigFile + ")",
		"apt-get update -q",
		"apt-get install -y -q curl ca-certificates",
	}
	if in.Config.Executor() == ExecutorDocker {
		lines = append(lines, "apt-get install -y -q docker.io", "systemctl enable --now docker")
	}
	lines = append(lines,
		"curl -fsSL --retry 5 -o "+VMBinary+".download "+shellQuote(url),
		"sum=\"$(curl -fsSL --retry 5 "+shellQuote(url+".sha256")+" | awk 'NR==1 {print $1}')\"",
		"echo \"${sum}  "+VMBinary+".download\" | sha256sum -c -",
		"install -m 0755 "+VMBinary+".download "+VMBinary,
		"rm -f "+VMBinary+".download",
	)
	if in.RunnerVersion == "" || in.RunnerURL == "" {
		// No pin: GitLab's packaged gitlab-runner, whose own service the
		// agent replaces.
		lines = append(lines,
			"curl -fsSL --retry 5 https://packages.gitlab.com/install/repositories/runner/gitlab-runner/script.deb.sh | bash",
			"apt-get install -y -q gitlab-runner",
			"systemctl disable --now gitlab-runner || true",
		)
	}
	lines = append(lines,
		ShellJoin(install),
		"systemctl daemon-reload",
		"systemctl enable --now gosling-agent",
		"",
	)
	installCmd := append([]string{"gosling"}, install[1:]...)
	return Contract{UserData: strings.Join(lines, "\n"), Commands: [][]string{installCmd, {"gosling", "agent", "run", "--work-dir", VMWorkDir, "--config", VMConfigFile}}}, nil
}

func containerEnv(cfg string) map[string]string {
	return map[string]string{EnvAgentConfig: cfg}
}

// awsServerless is an ECS Fargate task started by RunTask: the agent runs
// gitlab-runner run-single for one job and exits with it.
func awsServerless(in ContractInput, cfg string) (Contract, error) {
	if in.AgentImage == "" {
		return Contract{}, ErrNoAgentImage
	}
	if in.MaxRun <= 0 {
		return Contract{}, errors.New("a serverless runner needs a deadline")
	}
	args := []string{"agent", "run", "--one-job", "--work-dir", ContainerWorkDir, "--config-env", EnvAgentConfig, "--max-run", in.MaxRun.String()}
	return Contract{Image: in.AgentImage, Args: args, Env: containerEnv(cfg), Commands: [][]string{append([]string{"gosling"}, args...)}}, nil
}

// awsLambda is a Lambda function from the runner image: the agent takes
// each invocation from the Lambda Runtime API and runs one job in it; the
// function's timeout is the deadline.
func awsLambda(in ContractInput, cfg string) (Contract, error) {
	if in.AgentImage == "" {
		return Contract{}, ErrNoAgentImage
	}
	if in.MaxRun <= 0 || in.MaxRun > 15*time.Minute {
		return Contract{}, fmt.Errorf("a Lambda runner's deadline is %s: Lambda stops at 15 minutes", in.MaxRun)
	}
	args := []string{"agent", "serve", "--lambda", "--work-dir", ContainerWorkDir, "--config-env", EnvAgentConfig, "--auth", InvokeAuthPlatform}
	return Contract{Image: in.AgentImage, Args: args, Env: containerEnv(cfg), Commands: [][]string{append([]string{"gosling"}, args...)}}, nil
}

// yandexServerless is a Serverless Container: the agent serves HTTP on
// $PORT and runs one job per invocation.
func yandexServerless(in ContractInput, cfg string) (Contract, error) {
	if in.AgentImage == "" {
		return Contract{}, ErrNoAgentImage
	}
	if in.MaxRun <= 0 {
		return Contract{}, errors.New("a serverless runner needs a deadline")
	}
	args := []string{"agent", "serve", "--work-dir", ContainerWorkDir, "--config-env", EnvAgentConfig, "--auth", InvokeAuthPlatform}
	return Contract{Image: in.AgentImage, Args: args, Env: containerEnv(cfg), Commands: [][]string{append([]string{"gosling"}, args...)}}, nil
}

// shellQuote is POSIX single quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellJoin quotes each word of a command line for a POSIX shell (the
// user-data, and the systemd unit the agent installs).
func ShellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shellQuote(w)
	}
	return strings.Join(q, " ")
}

// SortedEnv lists an environment as KEY=value, sorted.
func SortedEnv(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
