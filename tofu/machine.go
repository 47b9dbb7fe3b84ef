package tofu

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
)

// Power states of a VM runner's machine.
const (
	PowerRunning = agentapi.PowerRunning
	PowerStopped = agentapi.PowerStopped
)

// Machine is everything a module needs to make one runner's machine. Its
// Variables method turns it into the typed variables of the module for its
// cloud and kind; no HCL is ever assembled from strings.
type Machine struct {
	RunnerID string
	Egg      string
	// Deployment labels the machine with the deployment that made it
	// (agentapi.DefaultDeployment when empty).
	Deployment string
	Cloud      string
	Kind       string
	// State is running (Apex) or stopped (Nadir); VMs only.
	State     string
	CPU       float64
	MemoryMiB int64
	DiskGiB   int64
	// MaxRunMinutes is a serverless runner's deadline.
	MaxRunMinutes int
	GitLabURL     string
	// TokenRef is the secret URI of the runner token; the token itself never
	// reaches OpenTofu, its variables or its state.
	TokenRef string
	// Agent is the agent's configuration (no secrets in it).
	Agent agentapi.Config

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
	// Identity is the egg's runner identity on the machine's cloud, which
	// the machine runs as (every cloud module needs one).
	Identity Identity
	// Lambda puts an AWS serverless runner on Lambda rather than Fargate
	// (fly.Runner.OnLambda).
	Lambda bool
	// Capacity is the capacity type the machine is bought as
	// (fly.CapacityOnDemand when empty): spot on AWS (EC2 Spot, Fargate
	// Spot), preemptible on Yandex Cloud; a local machine plays either;
	// Serverless Containers and Lambda functions are sold on demand only
	// (fly.MachineCapacity). Zone, when set, is the cloud's zone for the
	// machine: it replaces the Yandex provider's zone and picks the
	// subnet of that Availability Zone for an EC2 instance.
	Capacity string
	Zone     string
}

// Identity is an egg's runner identity on one cloud, which its machines run
// as: `gosling deploy` makes it, allowed to read the egg's runner-token
// secret (and its other secrets) and nothing else.
type Identity struct {
	// ServiceAccountID is the Yandex Cloud service account VMs and
	// Serverless Containers run as.
	ServiceAccountID string `json:"service_account_id,omitempty"`
	// InstanceProfile is an AWS VM's instance profile (of RoleARN's role).
	InstanceProfile string `json:"instance_profile,omitempty"`
	// RoleARN is the runner role: an ECS task's task role, a Lambda
	// function's role.
	RoleARN string `json:"role_arn,omitempty"`
	// ExecutionRoleARN is the ECS task execution role, which reads the
	// runner token into the task's secrets.
	ExecutionRoleARN string `json:"execution_role_arn,omitempty"`
}

// ErrNoIdentity: a cloud module needs the egg's runner identity and the
// machine has none (Machine.Variables wraps it, naming what is missing).
var ErrNoIdentity = errors.New("no runner identity")

// need lists what of the identity a module needs, by variable name.
func (id Identity) need(m Module, lambda bool) map[string]string {
	switch {
	case m.Cloud == fly.CloudYandex:
		return map[string]string{"service_account_id": id.ServiceAccountID}
	case m.Cloud == fly.CloudAWS && m.Kind == fly.RunnerVM:
		return map[string]string{"instance_profile": id.InstanceProfile}
	case m.Cloud == fly.CloudAWS && lambda:
		return map[string]string{"task_role_arn": id.RoleARN}
	case m.Cloud == fly.CloudAWS:
		return map[string]string{"task_role_arn": id.RoleARN, "execution_role_arn": id.ExecutionRoleARN}
	}
	return nil
}

// LogGroup is the CloudWatch Logs group of a deployment's runners, which
// gosling deploy makes.
func LogGroup(deployment string) string { return "/gosling/" + deployment + "/runners" }

// Module is the built-in module of the machine's cloud and kind.
func (m Machine) Module() Module { return Module{Cloud: m.Cloud, Kind: m.Kind} }

// WorkDir is a local machine's work directory.
func (m Machine) WorkDir() string { return filepath.Join(m.StateDir, "machines", m.RunnerID) }

// Contract renders what the machine's module runs (agentapi.MachineContract).
// It fails, before anything is applied, when MG/config.fly lacks what the
// module needs: agent.url for cloud VMs, agent.image for serverless
// containers.
func (m Machine) Contract() (agentapi.Contract, error) {
	in := agentapi.ContractInput{
		Cloud: m.Cloud, Kind: m.Kind, Config: m.Agent, State: m.State,
		MaxRun:   time.Duration(m.MaxRunMinutes) * time.Minute,
		AgentURL: m.AgentURL, AgentVersion: m.AgentVersion, AgentImage: m.AgentImage,
		RunnerVersion: m.RunnerVersion, RunnerURL: m.RunnerURL,
		Lambda: m.Cloud == fly.CloudAWS && m.Kind == fly.RunnerServerless && m.Lambda,
	}
	if m.Cloud == fly.CloudLocal {
		if m.AgentBinary == "" || m.StateDir == "" {
			return agentapi.Contract{}, fmt.Errorf("local machines need the agent binary and a state directory")
		}
		in.Binary, in.WorkDir = m.AgentBinary, m.WorkDir()
	}
	return agentapi.MachineContract(in)
}

// Variables returns the module variables for the machine's cloud and kind.
// It fails, before anything is applied, for a shape its cloud does not
// make (fly.VMShapeFor, fly.Runner.ServerlessShapeOn) and for a cloud
// module without the egg's runner identity (ErrNoIdentity).
func (m Machine) Variables() (map[string]any, error) {
	if m.RunnerID == "" || m.Egg == "" {
		return nil, fmt.Errorf("machine needs a runner ID and an egg")
	}
	deployment := m.Deployment
	if deployment == "" {
		deployment = agentapi.DefaultDeployment
	}
	v := map[string]any{
		"runner_id":  m.RunnerID,
		"egg":        m.Egg,
		"deployment": deployment,
	}
	switch m.Kind {
	case fly.RunnerVM:
		if m.State != PowerRunning && m.State != PowerStopped {
			return nil, fmt.Errorf("machine state %q: want %s or %s", m.State, PowerRunning, PowerStopped)
		}
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
	lambda := m.Cloud == fly.CloudAWS && m.Kind == fly.RunnerServerless && m.Lambda
	if lambda && m.MaxRunMinutes > int(fly.LambdaMaxRun/time.Minute) {
		return nil, fmt.Errorf("a Lambda runner's deadline is %d minutes: Lambda stops at 15", m.MaxRunMinutes)
	}
	var missing []string
	for name, value := range m.Identity.need(m.Module(), lambda) {
		if value == "" {
			missing = append(missing, name)
		}
		v[name] = value
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("%w: egg %q on %s has no %s; gosling deploy makes the egg's runner identity", ErrNoIdentity, m.Egg, m.Cloud, strings.Join(missing, " or "))
	}
	c, err := m.Contract()
	if err != nil {
		return nil, err
	}
	capacity := fly.MachineCapacity(m.Cloud, m.Kind, lambda, m.Capacity)
	if !fly.CapacitySold(m.Cloud, capacity) {
		return nil, fmt.Errorf("capacity %q: %s sells no such machines", capacity, m.Cloud)
	}
	if m.Zone != "" && (m.Cloud == fly.CloudLocal || m.Cloud == fly.CloudAWS && m.Kind == fly.RunnerServerless) {
		return nil, fmt.Errorf("zone %q: %s %s runners take no zone", m.Zone, m.Cloud, m.Kind)
	}
	if m.Cloud != fly.CloudYandex || m.Kind == fly.RunnerVM {
		v["capacity"] = capacity
	}
	memory := fly.Size(m.MemoryMiB) * fly.MiB
	p := m.Provider
	switch m.Cloud {
	case fly.CloudLocal:
		v["work_dir"] = m.WorkDir()
		v["launch_command"] = c.Launch
		v["stop_command"] = c.Stop
		if m.Kind == fly.RunnerVM {
			v["state"] = m.State
			v["power_command"] = c.Power
		}
	case fly.CloudAWS:
		v["region"] = p.Region
		v["role_arn"] = p.RoleARN
		v["subnets"] = nonNil(p.Subnets)
		v["disk_gib"] = m.DiskGiB
		if m.Kind == fly.RunnerVM {
			shape, err := fly.VMShapeFor(m.Cloud, m.CPU, memory)
			if err != nil {
				return nil, err
			}
			if len(p.Subnets) == 0 {
				return nil, errors.New("provider \"aws\" names no subnet for the instance: set subnets in MG/config.fly")
			}
			v["state"] = m.State
			v["availability_zone"] = m.Zone
			v["instance_type"] = shape.InstanceType
			v["user_data"] = c.UserData
		} else {
			platform := "fargate"
			if lambda {
				platform = "lambda"
			}
			v["platform"] = platform
			// A Lambda function has no execution role.
			v["execution_role_arn"] = m.Identity.ExecutionRoleARN
			if lambda {
				v["execution_role_arn"] = ""
			}
			v["cpu"] = m.CPU
			v["memory_mib"] = m.MemoryMiB
			v["token_ref"] = m.TokenRef
			v["cluster"] = p.Cluster
			v["log_group"] = LogGroup(deployment)
			v["container_image"] = c.Image
			v["container_command"] = c.Args
			v["container_environment"] = c.Env
		}
	case fly.CloudYandex:
		v["folder_id"] = p.FolderID
		v["zone"] = cmp.Or(m.Zone, p.Zone)
		if m.Kind == fly.RunnerVM {
			shape, err := fly.VMShapeFor(m.Cloud, m.CPU, memory)
			if err != nil {
				return nil, err
			}
			v["platform_id"] = shape.Platform
			v["cores"] = shape.Cores
			v["core_fraction"] = shape.CoreFraction
			v["memory_gib"] = shape.MemoryMiB / 1024
			v["disk_gib"] = m.DiskGiB
			v["user_data"] = c.UserData
			v["subnet_id"] = p.SubnetID
		} else {
			shape, err := fly.ServerlessShapeFor(m.Cloud, m.CPU, memory)
			if err != nil {
				return nil, err
			}
			v["cores"] = shape.Cores
			v["core_fraction"] = shape.CoreFraction
			v["memory_mib"] = m.MemoryMiB
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
