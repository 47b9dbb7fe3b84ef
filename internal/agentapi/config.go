package agentapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/gosling-ci/gosling/fly"
)

// Config is the agent's configuration, as JSON: in config.json of the
// machine's work directory (local provider), in /etc/gosling/agent.json
// (cloud VMs), or in $GOSLING_AGENT_CONFIG (serverless containers). It
// names secret URIs, never secret values, so it is not sensitive.
type Config struct {
	RunnerID string `json:"runner_id"`
	Egg      string `json:"egg"`
	// Deployment names the Gosling deployment that made the machine
	// (MG/config.fly's api_gateway.name; DefaultDeployment when empty):
	// one of the machine's labels.
	Deployment string `json:"deployment,omitempty"`
	GitLabURL  string `json:"gitlab_url"`
	// TokenRef is the secret URI of the runner's glrt- token. The token is
	// read at run time ($GOSLING_RUNNER_TOKEN wins when the platform
	// mounts it) and never written down except into gitlab-runner's
	// config.toml (mode 0600).
	TokenRef string `json:"token_ref"`
	// AgentRef is the secret URI of the machine's own agent credential,
	// what the agent authenticates MotherGoose's API with (never the
	// runner token, which many machines may share). Needed with APIURL.
	AgentRef string `json:"agent_ref,omitempty"`
	// SecretsDir serves local:// URIs (the local provider).
	SecretsDir string `json:"secrets_dir,omitempty"`
	// DevSecrets serves every scheme from SecretsDir, as `gosling dev`
	// seeds it (secretstore.DevBackends): a Nest written for a cloud runs
	// unchanged on one machine. Never on cloud machines.
	DevSecrets bool `json:"dev_secrets,omitempty"`
	// Secrets configures the backends of yc-lockbox://, aws-sm:// and
	// vault:// URIs (MG/config.fly's secrets block); each authenticates as
	// the machine: the instance's service account, the instance profile,
	// Vault's AWS, Kubernetes or AppRole auth. nil: local:// only.
	Secrets *fly.Secrets `json:"secrets,omitempty"`
	// APIURL is MotherGoose's API as the machine reaches it; the agent
	// reports ready, heartbeats and jobs there. Empty: it reports nothing
	// (a machine run by hand).
	APIURL string `json:"api_url,omitempty"`
	// HeartbeatSeconds is the heartbeat period (default 10).
	HeartbeatSeconds int `json:"heartbeat_seconds,omitempty"`
	// Runner configures gitlab-runner.
	Runner RunnerConfig `json:"runner"`
	// Interrupt is set on a machine bought as spot or preemptible: how
	// it learns that its cloud takes it away. nil: an on-demand machine,
	// whose shutdown is Gosling's doing.
	Interrupt *InterruptConfig `json:"interrupt,omitempty"`
}

// Runner modes.
const (
	// ModeRun is a VM's: `gitlab-runner run`, taking jobs until stopped.
	ModeRun = "run"
	// ModeSingle is a serverless runner's, and a VM's made for one job:
	// `gitlab-runner run-single --max-builds 1 --wait-timeout N`, one job
	// and no other.
	ModeSingle = "single"
)

// Executors the agent configures.
const (
	ExecutorShell  = "shell"
	ExecutorDocker = "docker"
)

// RunnerConfig says how the agent runs gitlab-runner.
type RunnerConfig struct {
	// Binary is gitlab-runner's path, or a name looked up in PATH
	// (default gitlab-runner).
	Binary string `json:"binary,omitempty"`
	// Mode is run (default) or single.
	Mode string `json:"mode,omitempty"`
	// Executor is shell (local machines) or docker (cloud VMs; docker or
	// shell in serverless containers).
	Executor string `json:"executor"`
	// Image is the docker executor's default image (the egg's image).
	Image string `json:"image,omitempty"`
	// Concurrent is config.toml's concurrent: the egg's jobs_per_runner.
	Concurrent int `json:"concurrent,omitempty"`
	// Env becomes [[runners]] environment; secret URIs are resolved by the
	// agent and their values masked in every log it writes.
	Env map[string]fly.EnvValue `json:"env,omitempty"`
	// ListenAddress is gitlab-runner's listen_address (its /metrics and
	// /debug/jobs/list); empty picks a free port on 127.0.0.1 at each start.
	ListenAddress string `json:"listen_address,omitempty"`
	// WaitTimeoutSeconds is run-single's --wait-timeout (default 600).
	WaitTimeoutSeconds int `json:"wait_timeout_seconds,omitempty"`
	// BuildsDir is where jobs run (default builds/ in the work directory).
	BuildsDir string `json:"builds_dir,omitempty"`
	// Rift, when set, points [runners.cache] at the egg's Rift.
	Rift *RiftConfig `json:"rift,omitempty"`
}

// RiftConfig is where the egg's Rift serves its control API.
type RiftConfig struct {
	URL string `json:"url"`
	// CA is the PEM of the CA that signs the control API's certificate
	// (Rift's own CA); empty trusts the system's roots.
	CA string `json:"ca,omitempty"`
}

// Validate checks what the agent needs before it starts anything.
func (c Config) Validate() error {
	var errs []error
	if c.RunnerID == "" {
		errs = append(errs, errors.New("runner_id is missing"))
	}
	if c.GitLabURL == "" {
		errs = append(errs, errors.New("gitlab_url is missing"))
	}
	if c.TokenRef == "" {
		errs = append(errs, errors.New("token_ref is missing: name the runner token's secret URI"))
	} else if _, err := fly.SecretRef(c.TokenRef).Parse(); err != nil {
		errs = append(errs, fmt.Errorf("token_ref: %w", err))
	}
	if c.AgentRef != "" {
		if _, err := fly.SecretRef(c.AgentRef).Parse(); err != nil {
			errs = append(errs, fmt.Errorf("agent_ref: %w", err))
		}
	} else if c.APIURL != "" {
		errs = append(errs, errors.New("agent_ref is missing: an agent reports to api_url with its machine's own credential; name its secret URI"))
	}
	switch c.Runner.Mode {
	case "", ModeRun, ModeSingle:
	default:
		errs = append(errs, fmt.Errorf("runner.mode %q: want %s or %s", c.Runner.Mode, ModeRun, ModeSingle))
	}
	switch c.Runner.Executor {
	case "", ExecutorShell, ExecutorDocker:
	default:
		errs = append(errs, fmt.Errorf("runner.executor %q: want %s or %s", c.Runner.Executor, ExecutorShell, ExecutorDocker))
	}
	if c.Runner.Executor == ExecutorDocker && c.Runner.Image == "" {
		errs = append(errs, errors.New("runner.image is missing: the docker executor needs a default image"))
	}
	for k, v := range c.Runner.Env {
		if !v.Secret.IsZero() {
			if _, err := v.Secret.Parse(); err != nil {
				errs = append(errs, fmt.Errorf("runner.env.%s: %w", k, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("agent config: %w", errors.Join(errs...))
	}
	return nil
}

// Mode is the runner mode, ModeRun when unset.
func (c Config) Mode() string {
	if c.Runner.Mode == "" {
		return ModeRun
	}
	return c.Runner.Mode
}

// Executor is the executor, ExecutorShell when unset.
func (c Config) Executor() string {
	if c.Runner.Executor == "" {
		return ExecutorShell
	}
	return c.Runner.Executor
}

// ParseConfig decodes an agent configuration and validates it.
func ParseConfig(b []byte) (Config, error) {
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("agent config is not JSON: %w", err)
	}
	return cfg, cfg.Validate()
}

// ReadConfigFile reads an agent configuration file.
func ReadConfigFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read agent config: %w", err)
	}
	return ParseConfig(b)
}

// DefaultDeployment labels the machines of a deployment that has no name
// (MG/config.fly's api_gateway.name).
const DefaultDeployment = "gosling"

// Where a cloud VM keeps the agent: the paths the systemd unit and the
// user-data (see MachineContract) name.
const (
	VMBinary     = "/usr/local/bin/gosling"
	VMConfigFile = "/etc/gosling/agent.json"
	VMWorkDir    = "/var/lib/gosling-agent"
	VMRunner     = "/usr/local/bin/gitlab-runner"
	VMUnit       = "gosling-agent.service"
	VMSystemdDir = "/etc/systemd/system"
)

// Invoke authentication of a served agent.
const (
	// InvokeAuthToken: the invoker sends the runner token as a bearer
	// token (the local provider's invocations).
	InvokeAuthToken = "runner-token"
	// InvokeAuthPlatform: the platform authenticated the request before it
	// reached the container (Yandex Serverless Containers check the
	// invoker's IAM token and its serverless.containers.invoker role).
	InvokeAuthPlatform = "platform"
)

// InterruptConfig says how a machine bought as spot or preemptible learns
// that its cloud takes it away. With MetadataURL (an EC2 Spot instance)
// the agent polls IMDSv2's spot/instance-action, which answers 200 with
// {"action", "time"} from the moment of the two-minute notice and 404
// before; without (a Compute Cloud preemptible VM, whose ACPI shutdown
// reaches the agent as systemd's SIGTERM with 30 seconds to go; a Fargate
// Spot task, which ECS sends SIGTERM two minutes ahead; a local machine
// that `gosling dev interrupt` plays it on) a shutdown the agent was not
// told of (SIGTERM while serving) is the notice.
type InterruptConfig struct {
	// Capacity is the machine's capacity type (spot or preemptible).
	Capacity string `json:"capacity"`
	// MetadataURL is the instance metadata service's base URL
	// (DefaultMetadataURL on EC2); empty: no notice to poll.
	MetadataURL string `json:"metadata_url,omitempty"`
	// PollSeconds is how often the notice is polled (default 5).
	PollSeconds int `json:"poll_seconds,omitempty"`
}
