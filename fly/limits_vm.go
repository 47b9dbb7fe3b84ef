package fly

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// VMShape is the machine one VM runner gets on one cloud, in the cloud's
// own terms.
type VMShape struct {
	Cloud string `json:"cloud"`
	// VCPU and MemoryMiB are what the machine has (at least what the egg
	// asks for).
	VCPU      int   `json:"vcpu"`
	MemoryMiB int64 `json:"memory_mib"`
	// Platform, Cores and CoreFraction are a Compute Cloud instance's
	// platform_id, resources.cores and resources.core_fraction (percent).
	Platform     string `json:"platform,omitempty"`
	Cores        int    `json:"cores,omitempty"`
	CoreFraction int    `json:"core_fraction,omitempty"`
	// InstanceType is an EC2 instance type.
	InstanceType string `json:"instance_type,omitempty"`
}

// String says the shape as the cloud would: "Compute Cloud standard-v3: 2
// vCPU at 100% with 4GiB", "EC2 m7i.large: 2 vCPU with 8GiB".
func (s VMShape) String() string {
	mem := Size(s.MemoryMiB) * MiB
	if s.InstanceType != "" {
		return fmt.Sprintf("EC2 %s: %d vCPU with %s", s.InstanceType, s.VCPU, mem)
	}
	if s.Platform != "" {
		return fmt.Sprintf("Compute Cloud %s: %d vCPU at %d%% with %s", s.Platform, s.Cores, s.CoreFraction, mem)
	}
	return fmt.Sprintf("%s vCPU with %s", strconv.Itoa(s.VCPU), mem)
}

// YandexVMPlatform is the Compute Cloud platform of VM runners: Intel Ice
// Lake, the yandex/vm module's platform_id.
const YandexVMPlatform = "standard-v3"

// yandexV3Cores are the vCPU counts standard-v3 takes at a 100% guaranteed
// share, with the most RAM per vCPU, in GiB, each allows. Source: Yandex
// Compute Cloud, "vCPU performance levels", Available configurations,
// Intel Ice Lake (standard-v3) at 100% (yandex-cloud/docs
// en/compute/concepts/performance-levels.md). RAM per vCPU is a whole
// number of GiB from 1 up to the maximum; the shares below 100% (20% and
// 50%, 2 or 4 vCPU) are not offered to runners.
var yandexV3Cores = []struct{ cores, maxPerCore int }{
	{2, 16}, {4, 16}, {6, 16}, {8, 16}, {10, 16}, {12, 16}, {14, 16}, {16, 16}, {20, 16},
	{24, 13}, {28, 11}, {32, 10}, {36, 16}, {40, 16}, {44, 14}, {48, 13}, {52, 12}, {56, 11},
	{60, 10}, {64, 10}, {68, 9}, {72, 8}, {76, 8}, {80, 8}, {84, 7}, {88, 7}, {92, 6}, {96, 6},
}

// AWSInstanceType is one EC2 instance type VM runners may get.
type AWSInstanceType struct {
	Name      string
	VCPU      int
	MemoryMiB int64
}

// AWSInstanceTypes are the EC2 types of VM runners, smallest first: the
// burstable t3 for the smallest shapes, then the general-purpose m7i
// (Intel Sapphire Rapids, 4 GiB per vCPU). A runner gets the first that
// has at least its vCPUs and memory. Source: Amazon EC2, "Instance type
// specifications", general purpose (t3, m7i). Every name is one of the
// AWS SDK's ec2 InstanceType values (a test checks it).
var AWSInstanceTypes = []AWSInstanceType{
	{"t3.small", 2, 2048}, {"t3.medium", 2, 4096},
	{"m7i.large", 2, 8192}, {"m7i.xlarge", 4, 16384}, {"m7i.2xlarge", 8, 32768}, {"m7i.4xlarge", 16, 65536},
	{"m7i.8xlarge", 32, 131072}, {"m7i.12xlarge", 48, 196608}, {"m7i.16xlarge", 64, 262144},
}

// VMShapeFor returns the VM a runner of cpu vCPUs and memory bytes gets on
// a cloud, or a *ShapeError that names the nearest shape there is:
//   - yandex (Compute Cloud, standard-v3): cpu is a vCPU count the
//     platform takes at 100% (2, 4, 6, ... 20, 24, 28, ... 96), memory a
//     whole number of GiB per vCPU, 1 GiB per vCPU at least and at most
//     16 (fewer past 20 vCPU);
//   - aws (EC2): the smallest of AWSInstanceTypes with at least cpu vCPUs
//     and memory;
//   - local: any shape.
func VMShapeFor(cloud string, cpu float64, memory Size) (VMShape, error) {
	s, se := vmShape(cloud, cpu, memory)
	if se != nil {
		return VMShape{}, se
	}
	return s, nil
}

func vmShape(cloud string, cpu float64, memory Size) (VMShape, *ShapeError) {
	switch cloud {
	case CloudYandex:
		return yandexVMShape(cpu, memory)
	case CloudAWS:
		return awsVMShape(cpu, memory)
	}
	return VMShape{Cloud: cloud, VCPU: int(math.Ceil(cpu)), MemoryMiB: memory.MiB()}, nil
}

const serviceCompute = "Compute Cloud VMs (standard-v3)"

func yandexVMShape(cpu float64, memory Size) (VMShape, *ShapeError) {
	fail := func(field, msg string) (VMShape, *ShapeError) {
		return VMShape{}, &ShapeError{Cloud: CloudYandex, Service: serviceCompute, Field: field, msg: msg}
	}
	idx := -1
	for i, c := range yandexV3Cores {
		if cpu == float64(c.cores) {
			idx = i
		}
	}
	if idx < 0 {
		near := nearestCores(cpu)
		return fail("cpu", fmt.Sprintf("%s take 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28 ... 96 vCPUs at a 100%% share, not cpu = %s. Nearest: %s.",
			serviceCompute, fmtNum(cpu), yandexNearestShape(near, memory)))
	}
	c := yandexV3Cores[idx]
	perCore := float64(memory) / float64(c.cores) / float64(GiB)
	if memory%(Size(c.cores)*GiB) != 0 || perCore < 1 || perCore > float64(c.maxPerCore) {
		return fail("memory", fmt.Sprintf("%s with %d vCPUs take 1 to %d GiB per vCPU in whole GiB (%s to %s in steps of %s), not %s. Nearest: %s.",
			serviceCompute, c.cores, c.maxPerCore, Size(c.cores)*GiB, Size(c.cores*c.maxPerCore)*GiB, Size(c.cores)*GiB, inMiB(memory), yandexNearestShape(c.cores, memory)))
	}
	return VMShape{Cloud: CloudYandex, Platform: YandexVMPlatform, Cores: c.cores, CoreFraction: 100, VCPU: c.cores, MemoryMiB: memory.MiB()}, nil
}

// nearestCores is the vCPU count standard-v3 takes that is closest to cpu,
// the larger one on a tie.
func nearestCores(cpu float64) int {
	best := yandexV3Cores[0].cores
	for _, c := range yandexV3Cores {
		if math.Abs(float64(c.cores)-cpu) <= math.Abs(float64(best)-cpu) {
			best = c.cores
		}
	}
	return best
}

// yandexNearestShape writes the valid shape with cores vCPUs whose memory
// is nearest to memory: `cpu = 2 with memory = "2GiB"`.
func yandexNearestShape(cores int, memory Size) string {
	maxPer := 16
	for _, c := range yandexV3Cores {
		if c.cores == cores {
			maxPer = c.maxPerCore
		}
	}
	per := int(math.Round(float64(memory) / float64(cores) / float64(GiB)))
	per = min(max(per, 1), maxPer)
	return fmt.Sprintf("cpu = %d with memory = %q", cores, (Size(cores*per) * GiB).String())
}

const serviceEC2 = "EC2 general-purpose instances (t3, m7i)"

func awsVMShape(cpu float64, memory Size) (VMShape, *ShapeError) {
	for _, t := range AWSInstanceTypes {
		if float64(t.VCPU) >= cpu && Size(t.MemoryMiB)*MiB >= memory {
			return VMShape{Cloud: CloudAWS, InstanceType: t.Name, VCPU: t.VCPU, MemoryMiB: t.MemoryMiB}, nil
		}
	}
	largest := AWSInstanceTypes[len(AWSInstanceTypes)-1]
	field := "memory"
	if cpu > float64(largest.VCPU) {
		field = "cpu"
	}
	return VMShape{}, &ShapeError{Cloud: CloudAWS, Service: serviceEC2, Field: field, msg: fmt.Sprintf(
		"%s offer at most %d vCPU with %s (%s), not %s vCPU with %s. Nearest: cpu = %s with memory = %q.",
		serviceEC2, largest.VCPU, Size(largest.MemoryMiB)*MiB, largest.Name, fmtNum(cpu), inMiB(memory),
		fmtNum(math.Min(cpu, float64(largest.VCPU))), (Size(largest.MemoryMiB) * MiB).String())}
}

// AWSInstanceTypeNames lists the names of AWSInstanceTypes.
func AWSInstanceTypeNames() []string {
	out := make([]string, 0, len(AWSInstanceTypes))
	for _, t := range AWSInstanceTypes {
		out = append(out, t.Name)
	}
	return out
}

// vmClouds are the clouds an egg's runners are VMs on: every cloud for
// type vm, those where no serverless shape fits (or jobs run too long)
// for auto.
func (r Runner) vmClouds() []string {
	var out []string
	for _, c := range r.Clouds {
		if r.Type == RunnerVM || (r.Type == RunnerAuto && r.kindOn(c, false).Kind == RunnerVM) {
			out = append(out, c)
		}
	}
	return out
}

// checkVM checks a VM runner's cpu and memory against the machines each of
// its VM clouds makes, once its clouds are known.
func checkVM(d *eggDecl) hcl.Diagnostics {
	r := &d.egg.Runner
	var diags hcl.Diagnostics
	for _, c := range r.vmClouds() {
		_, se := vmShape(c, r.CPU, r.Memory)
		if se == nil {
			continue
		}
		rng := d.shapeRange(se.Field)
		detail := fmt.Sprintf("On %s: %v", c, se)
		if r.Type == RunnerAuto {
			detail += " (type = \"auto\" makes VMs there: no serverless size fits, or jobs run too long.)"
		}
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Not a VM size", Detail: detail, Subject: rng.Ptr()})
	}
	return diags
}

// needsSubnets tells whether an egg's runners need the aws provider's
// subnets: EC2 instances and Fargate tasks are placed in one (Lambda
// functions need none).
func (r Runner) needsSubnets() bool {
	for _, c := range r.Clouds {
		if c != CloudAWS {
			continue
		}
		k := r.kindOn(c, false)
		if k.Kind == RunnerVM || !r.OnLambda() {
			return true
		}
	}
	return false
}

// quoteNames writes names as a list for a detail: "a", "b" and "c".
func quoteNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}
