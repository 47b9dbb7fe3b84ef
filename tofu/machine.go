package tofu

import (
	"fmt"
	"math"

	"github.com/gosling-ci/gosling/fly"
)

// Power states of a VM runner's machine.
const (
	PowerRunning = "running"
	PowerStopped = "stopped"
)

// Machine is everything a module needs to make one runner's machine. Its
// Variables method turns it into the typed variables of the module for its
// cloud and kind; no HCL is ever assembled from strings.
type Machine struct {
	RunnerID string
	Egg      string
	Cloud    string
	Kind     string
	// State is running (Apex) or stopped (Nadir); VMs only.
	State      string
	CPU        float64
	MemoryMiB  int64
	DiskGiB    int64
	Image      string
	Concurrent int
	Tags       []string
	// MaxRunMinutes is a serverless runner's deadline.
	MaxRunMinutes int
	GitLabURL     string
	// TokenRef is the secret URI of the runner token; the token itself never
	// reaches OpenTofu, its variables or its state.
	TokenRef string
	// AgentConfig is the agent's JSON configuration (no secrets in it).
	AgentConfig string

	// AgentBinary and StateDir place local machines (the local provider).
	AgentBinary string
	StateDir    string
	// AgentURL (VM cloud-init download) and AgentImage (serverless
	// containers) deliver the agent on clouds.
	AgentURL   string
	AgentImage string
	// Provider holds the cloud's placement and credentials settings.
	Provider fly.Provider
}

// Module is the built-in module of the machine's cloud and kind.
func (m Machine) Module() Module { return Module{Cloud: m.Cloud, Kind: m.Kind} }

// Variables returns the module variables for the machine's cloud and kind.
func (m Machine) Variables() (map[string]any, error) {
	if m.RunnerID == "" || m.Egg == "" {
		return nil, fmt.Errorf("machine needs a runner ID and an egg")
	}
	tags := m.Tags
	if tags == nil {
		tags = []string{}
	}
	v := map[string]any{
		"runner_id":  m.RunnerID,
		"egg":        m.Egg,
		"cpu":        m.CPU,
		"memory_mib": m.MemoryMiB,
		"image":      m.Image,
		"tags":       tags,
	}
	vm := func() error {
		if m.State != PowerRunning && m.State != PowerStopped {
			return fmt.Errorf("machine state %q: want %s or %s", m.State, PowerRunning, PowerStopped)
		}
		v["state"] = m.State
		v["disk_gib"] = m.DiskGiB
		v["concurrent"] = max(1, m.Concurrent)
		return nil
	}
	serverless := func() error {
		if m.MaxRunMinutes <= 0 || m.MaxRunMinutes > 60 {
			return fmt.Errorf("serverless deadline %d minutes: want 1 to 60", m.MaxRunMinutes)
		}
		v["max_run_minutes"] = m.MaxRunMinutes
		return nil
	}
	var err error
	switch m.Kind {
	case fly.RunnerVM:
		err = vm()
	case fly.RunnerServerless:
		err = serverless()
	default:
		err = fmt.Errorf("runner kind %q: want vm or serverless", m.Kind)
	}
	if err != nil {
		return nil, err
	}
	v["agent_config"] = m.AgentConfig
	p := m.Provider
	switch m.Cloud {
	case fly.CloudLocal:
		if m.AgentBinary == "" || m.StateDir == "" {
			return nil, fmt.Errorf("local machines need the agent binary and a state directory")
		}
		v["agent_binary"] = m.AgentBinary
		v["state_dir"] = m.StateDir
	case fly.CloudAWS:
		v["gitlab_url"] = m.GitLabURL
		v["token_ref"] = m.TokenRef
		v["region"] = p.Region
		v["role_arn"] = p.RoleARN
		v["subnets"] = nonNil(p.Subnets)
		if m.Kind == fly.RunnerVM {
			v["agent_url"] = m.AgentURL
		} else {
			v["agent_image"] = m.AgentImage
			v["cluster"] = p.Cluster
		}
	case fly.CloudYandex:
		v["gitlab_url"] = m.GitLabURL
		v["token_ref"] = m.TokenRef
		v["folder_id"] = p.FolderID
		v["zone"] = p.Zone
		if m.Kind == fly.RunnerVM {
			v["agent_url"] = m.AgentURL
			v["subnet_id"] = p.SubnetID
		} else {
			v["agent_image"] = m.AgentImage
		}
	default:
		return nil, fmt.Errorf("cloud %q: want local, aws or yandex", m.Cloud)
	}
	return v, nil
}

func nonNil(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}

// MiB and GiB round a fly size up for modules that take whole units.
func MiB(s fly.Size) int64 { return s.MiB() }

// GiB rounds a size up to whole gibibytes.
func GiB(s fly.Size) int64 { return int64(math.Ceil(float64(s) / float64(fly.GiB))) }
