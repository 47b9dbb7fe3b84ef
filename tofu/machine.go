package tofu

import (
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
)

// Power states of a VM runner's machine.
const (
	PowerRunning = agent.PowerRunning
	PowerStopped = agent.PowerStopped
)

// Machine is everything a module needs to make one runner's machine. Its
// Variables method turns it into the typed variables of the module for its
// cloud and kind; no HCL is ever assembled from strings.
type Machine struct {
	RunnerID string
	Egg      string
	// Deployment labels the machine with the deployment that made it
	// (agent.DefaultDeployment when empty).
	Deployment string
	Cloud      string
	Kind       string
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
	// Agent is the agent's configuration (no secrets in it).
	Agent agent.Config

	// AgentBinary and StateDir place local machines (the local provider).
	AgentBinary string
	StateDir    string
	// AgentURL and AgentVersion (VM first boot downloads) and AgentImage
	// (serverless containers) deliver the agent on clouds; RunnerVersion
	// and RunnerURL pin gitlab-runner on cloud VMs (MG/config.fly's agent
	// block).
	AgentURL      string
	AgentVersion  string
	AgentImage    string
	RunnerVersion string
	RunnerURL     string
	// Provider holds the cloud's placement and credentials settings.
	Provider fly.Provider
}

// Module is the built-in module of the machine's cloud and kind.
func (m Machine) Module() Module { return Module{Cloud: m.Cloud, Kind: m.Kind} }

// WorkDir is a local machine's work directory.
func (m Machine) WorkDir() string { return filepath.Join(m.StateDir, "machines", m.RunnerID) }

// Contract renders what the machine's module runs (agent.MachineContract).
// It fails, before anything is applied, when MG/config.fly lacks what the
// module needs: agent.url for cloud VMs, agent.image for serverless
// containers.
func (m Machine) Contract() (agent.Contract, error) {
	in := agent.ContractInput{
		Cloud: m.Cloud, Kind: m.Kind, Config: m.Agent, State: m.State,
		MaxRun:   time.Duration(m.MaxRunMinutes) * time.Minute,
		AgentURL: m.AgentURL, AgentVersion: m.AgentVersion, AgentImage: m.AgentImage,
		RunnerVersion: m.RunnerVersion, RunnerURL: m.RunnerURL,
	}
	if m.Cloud == fly.CloudLocal {
		if m.AgentBinary == "" || m.StateDir == "" {
			return agent.Contract{}, fmt.Errorf("local machines need the agent binary and a state directory")
		}
		in.Binary, in.WorkDir = m.AgentBinary, m.WorkDir()
	}
	return agent.MachineContract(in)
}

// Variables returns the module variables for the machine's cloud and kind.
func (m Machine) Variables() (map[string]any, error) {
	if m.RunnerID == "" || m.Egg == "" {
		return nil, fmt.Errorf("machine needs a runner ID and an egg")
	}
	tags := m.Tags
	if tags == nil {
		tags = []string{}
	}
	deployment := m.Deployment
	if deployment == "" {
		deployment = agent.DefaultDeployment
	}
	v := map[string]any{
		"runner_id":  m.RunnerID,
		"egg":        m.Egg,
		"deployment": deployment,
		"cpu":        m.CPU,
		"memory_mib": m.MemoryMiB,
		"image":      m.Image,
		"tags":       tags,
	}
	switch m.Kind {
	case fly.RunnerVM:
		if m.State != PowerRunning && m.State != PowerStopped {
			return nil, fmt.Errorf("machine state %q: want %s or %s", m.State, PowerRunning, PowerStopped)
		}
		v["state"] = m.State
		v["disk_gib"] = m.DiskGiB
		v["concurrent"] = max(1, m.Concurrent)
	case fly.RunnerServerless:
		if m.MaxRunMinutes <= 0 || m.MaxRunMinutes > 60 {
			return nil, fmt.Errorf("serverless deadline %d minutes: want 1 to 60", m.MaxRunMinutes)
		}
		v["max_run_minutes"] = m.MaxRunMinutes
	default:
		return nil, fmt.Errorf("runner kind %q: want vm or serverless", m.Kind)
	}
	switch m.Cloud {
	case fly.CloudLocal, fly.CloudAWS, fly.CloudYandex:
	default:
		return nil, fmt.Errorf("cloud %q: want local, aws or yandex", m.Cloud)
	}
	c, err := m.Contract()
	if err != nil {
		return nil, err
	}
	p := m.Provider
	switch m.Cloud {
	case fly.CloudLocal:
		v["work_dir"] = m.WorkDir()
		v["launch_command"] = c.Launch
		v["stop_command"] = c.Stop
		if m.Kind == fly.RunnerVM {
			v["power_command"] = c.Power
		}
	case fly.CloudAWS:
		v["region"] = p.Region
		v["role_arn"] = p.RoleARN
		v["subnets"] = nonNil(p.Subnets)
		if m.Kind == fly.RunnerVM {
			v["user_data"] = c.UserData
		} else {
			v["token_ref"] = m.TokenRef
			v["cluster"] = p.Cluster
			v["container_image"] = c.Image
			v["container_command"] = c.Args
			v["container_environment"] = c.Env
		}
	case fly.CloudYandex:
		v["folder_id"] = p.FolderID
		v["zone"] = p.Zone
		if m.Kind == fly.RunnerVM {
			v["user_data"] = c.UserData
			v["subnet_id"] = p.SubnetID
		} else {
			v["token_ref"] = m.TokenRef
			v["container_image"] = c.Image
			v["container_args"] = c.Args
			v["container_environment"] = c.Env
		}
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
