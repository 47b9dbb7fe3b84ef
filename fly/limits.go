package fly

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ServerlessLimits are the limits of one cloud's serverless runners.
type ServerlessLimits struct {
	// Service names the cloud service that runs serverless runners.
	Service string
	CPU     float64
	Memory  Size
	// MaxRun is how long one serverless runner may live.
	MaxRun time.Duration
}

// MaxServerlessRun is Gosling's own limit on a serverless runner's life.
const MaxServerlessRun = 60 * time.Minute

// ServerlessLimitsFor returns the serverless limits of a cloud: the largest
// runner and the longest life. Not every size below the largest is one the
// cloud makes; ServerlessShapeFor says which are. On AWS, Fargate takes jobs
// up to the 60-minute limit (Lambda stops at 15 minutes).
func ServerlessLimitsFor(cloud string) (ServerlessLimits, bool) {
	switch cloud {
	case CloudYandex:
		return ServerlessLimits{Service: serviceYandex, CPU: 4, Memory: 8 * GiB, MaxRun: MaxServerlessRun}, true
	case CloudAWS:
		return ServerlessLimits{Service: serviceFargate, CPU: 16, Memory: 120 * GiB, MaxRun: MaxServerlessRun}, true
	case CloudLocal:
		return ServerlessLimits{Service: serviceLocal, CPU: 64, Memory: 256 * GiB, MaxRun: MaxServerlessRun}, true
	}
	return ServerlessLimits{}, false
}

// LambdaMaxRun is AWS Lambda's hard limit on one invocation.
const LambdaMaxRun = 15 * time.Minute

// YandexShortRun is the longest execution timeout of a Serverless
// Container outside Yandex's long-lived containers, a Preview: "A timeout
// longer than ten minutes is only available for long-lived containers"
// (Yandex Serverless Containers, container settings).
const YandexShortRun = 10 * time.Minute

const (
	serviceFargate = "ECS Fargate"
	serviceLambda  = "AWS Lambda"
	serviceYandex  = "Serverless Containers"
	serviceLocal   = "local processes"
)

// ServerlessDeadline is how long one serverless runner of the egg lives:
// its job timeout (expected_job_duration) rounded up to whole minutes, at
// least one minute and at most MaxServerlessRun. The platform's timeout
// (a Serverless Container's execution_timeout, a Lambda function's
// timeout, the agent's --max-run on Fargate) and the GitLab runner's
// maximum_timeout are set from it.
func (r Runner) ServerlessDeadline() time.Duration {
	d := r.ExpectedJobDuration.D()
	if m := d.Truncate(time.Minute); m < d {
		d = m + time.Minute
	}
	return min(max(d, time.Minute), MaxServerlessRun)
}

// OnLambda tells whether the egg's serverless runners on AWS are Lambda
// functions: jobs whose deadline (ServerlessDeadline) fits Lambda's
// 15-minute limit, with a memory Lambda offers that gives at least the
// egg's vCPUs, start there far sooner than as Fargate tasks; the others
// run on Fargate.
func (r Runner) OnLambda() bool {
	if r.ServerlessDeadline() > LambdaMaxRun {
		return false
	}
	_, se := lambdaShape(r.CPU, r.Memory, false)
	return se == nil
}

// Lambda's sizes: memory from 128 MB to 10,240 MB in 1 MB steps (Lambda's
// MB are MiB), and vCPUs in proportion to it, one per 1,769 MB, six at
// most (AWS Lambda developer guide, "Configuring Lambda function memory").
const (
	lambdaMinMemory  = 128 * MiB
	lambdaMaxMemory  = 10240 * MiB
	lambdaMiBPerVCPU = 1769
	lambdaMaxVCPU    = 6
)

// lambdaVCPU is the vCPU share Lambda gives a function of memMiB.
func lambdaVCPU(memMiB int64) float64 {
	return math.Min(float64(lambdaMaxVCPU), float64(memMiB)/lambdaMiBPerVCPU)
}

// lambdaShape is the shape of a Lambda function of memory for a runner
// of cpu vCPUs: Lambda takes no CPU setting, so memory must be enough to
// give at least cpu vCPUs.
func lambdaShape(cpu float64, memory Size, explain bool) (ServerlessShape, *ShapeError) {
	fail := func(field string, msg func() string) (ServerlessShape, *ShapeError) {
		se := &ShapeError{Cloud: CloudAWS, Service: serviceLambda, Field: field}
		if explain {
			se.msg = msg()
		}
		return ServerlessShape{}, se
	}
	if memory%MiB != 0 || memory < lambdaMinMemory || memory > lambdaMaxMemory {
		return fail("memory", func() string {
			return fmt.Sprintf("%s takes 128MiB to 10GiB of memory in whole MiB, not %s. Jobs of %s fit Lambda's 15-minute limit; with a longer expected_job_duration they run on ECS Fargate.",
				serviceLambda, inMiB(memory), Duration(LambdaMaxRun))
		})
	}
	vcpu := lambdaVCPU(memory.MiB())
	if cpu > vcpu+1e-9 {
		return fail("cpu", func() string {
			if cpu > lambdaMaxVCPU {
				return fmt.Sprintf("%s gives at most %d vCPU (with 10GiB), not %s. Use cpu = %d or less, or a longer expected_job_duration for ECS Fargate.", serviceLambda, lambdaMaxVCPU, fmtNum(cpu), lambdaMaxVCPU)
			}
			need := int64(math.Ceil(cpu * lambdaMiBPerVCPU))
			return fmt.Sprintf("%s gives vCPUs in proportion to memory, one per 1769MiB: %s gives %s vCPU, not %s. Nearest: memory = %q, or cpu = %s.",
				serviceLambda, inMiB(memory), strconv.FormatFloat(vcpu, 'f', 2, 64), fmtNum(cpu), (Size(need) * MiB).String(), strconv.FormatFloat(math.Floor(vcpu*100)/100, 'f', -1, 64))
		})
	}
	return ServerlessShape{Cloud: CloudAWS, Service: serviceLambda, VCPU: vcpu, MemoryMiB: memory.MiB(), LambdaMemoryMiB: memory.MiB()}, nil
}

// ServerlessShapeOn is ServerlessShapeFor for this runner: on AWS, the
// Lambda function's shape when OnLambda, else the Fargate task's (whose
// error names the Fargate sizes).
func (r Runner) ServerlessShapeOn(cloud string) (ServerlessShape, error) {
	s, se := r.serverlessShapeOn(cloud, true)
	if se != nil {
		return ServerlessShape{}, se
	}
	return s, nil
}

func (r Runner) serverlessShapeOn(cloud string, explain bool) (ServerlessShape, *ShapeError) {
	if cloud == CloudAWS && r.ServerlessDeadline() <= LambdaMaxRun {
		if s, se := lambdaShape(r.CPU, r.Memory, false); se == nil {
			return s, nil
		}
	}
	return serverlessShape(cloud, r.CPU, r.Memory, explain)
}

// ServerlessShape is the size one serverless runner gets on one cloud, in the
// platform's own terms.
type ServerlessShape struct {
	Cloud   string `json:"cloud"`
	Service string `json:"service"`
	// VCPU and MemoryMiB are the runner's vCPUs and memory in MiB.
	VCPU      float64 `json:"vcpu"`
	MemoryMiB int64   `json:"memory_mib"`
	// CPUUnits is an ECS Fargate task's cpu: 1024 units per vCPU.
	CPUUnits int `json:"cpu_units,omitempty"`
	// Cores and CoreFraction are a Serverless Container's cores and the
	// guaranteed share of each, in percent.
	Cores        int `json:"cores,omitempty"`
	CoreFraction int `json:"core_fraction,omitempty"`
	// LambdaMemoryMiB is a Lambda function's memory; its vCPUs (VCPU)
	// follow from it.
	LambdaMemoryMiB int64 `json:"lambda_memory_mib,omitempty"`
}

// String says the shape as the platform would: "ECS Fargate: 1 vCPU (1024
// CPU units) with 4GiB".
func (s ServerlessShape) String() string {
	mem := Size(s.MemoryMiB) * MiB
	switch {
	case s.LambdaMemoryMiB > 0:
		return fmt.Sprintf("%s: %s (%s vCPU)", s.Service, mem, strconv.FormatFloat(s.VCPU, 'f', 2, 64))
	case s.CPUUnits > 0:
		return fmt.Sprintf("%s: %s vCPU (%d CPU units) with %s", s.Service, fmtNum(s.VCPU), s.CPUUnits, mem)
	case s.Cores > 0:
		return fmt.Sprintf("%s: %s at %d%% with %s", s.Service, plural(s.Cores, "core"), s.CoreFraction, mem)
	}
	return fmt.Sprintf("%s: %s vCPU with %s", s.Service, fmtNum(s.VCPU), mem)
}

// ShapeError says why no serverless shape fits a runner: Field is the
// attribute to change ("cpu" or "memory") and the message names the nearest
// shapes that exist.
type ShapeError struct {
	Cloud, Service, Field string
	msg                   string
}

func (e *ShapeError) Error() string { return e.msg }

// fargateSizes are the task sizes ECS Fargate accepts: CPU units and, for
// each, the memory in MiB. Source: AWS, "Troubleshoot Amazon ECS task
// definition invalid CPU or memory errors" (task-cpu-memory-error.html) and
// RegisterTaskDefinition's memory parameter (Linux platform 1.4.0 for 8 and
// 16 vCPU).
var fargateSizes = []struct {
	units int
	// memory is what the docs say; mems lists it in MiB.
	memory string
	mems   []int64
}{
	{256, "512MiB, 1GiB or 2GiB", []int64{512, 1024, 2048}},
	{512, "1GiB to 4GiB in 1GiB steps", mibSteps(1024, 4096, 1024)},
	{1024, "2GiB to 8GiB in 1GiB steps", mibSteps(2048, 8192, 1024)},
	{2048, "4GiB to 16GiB in 1GiB steps", mibSteps(4096, 16384, 1024)},
	{4096, "8GiB to 30GiB in 1GiB steps", mibSteps(8192, 30720, 1024)},
	{8192, "16GiB to 60GiB in 4GiB steps", mibSteps(16384, 61440, 4096)},
	{16384, "32GiB to 120GiB in 8GiB steps", mibSteps(32768, 122880, 8192)},
}

func mibSteps(lo, hi, step int64) []int64 {
	var out []int64
	for m := lo; m <= hi; m += step {
		out = append(out, m)
	}
	return out
}

// fargateMemories lists the memory sizes, in MiB, of a Fargate CPU size.
func fargateMemories(units int) []int64 {
	for _, r := range fargateSizes {
		if r.units == units {
			return r.mems
		}
	}
	return nil
}

func describeFargateMemories(units int) string {
	for _, r := range fargateSizes {
		if r.units == units {
			return r.memory
		}
	}
	return ""
}

// Yandex Serverless Containers' resources, from the API's Resources message
// (yandex/cloud/serverless/containers/v1/container.proto): memory 128 MiB to
// 8 GiB in multiples of 128 MiB; 1 to 4 cores; a core fraction below 100%
// only with one core. Fractions are the 5, 20 and 50 percent levels that the
// Yandex Cloud console offers.
const (
	yandexMemoryStep = 128 * MiB
	yandexMemoryMin  = 128 * MiB
	yandexMemoryMax  = 8 * GiB
	yandexMaxCores   = 4
)

var yandexFractions = []int{5, 20, 50}

// ServerlessShapeFor returns the serverless shape on a cloud for a runner of
// cpu vCPUs and memory bytes, or a *ShapeError that names the nearest shapes.
// Sizes must be exact, as the platforms take them:
//   - aws (ECS Fargate): cpu 0.25, 0.5, 1, 2, 4, 8 or 16 and, with 0.25, 512 MiB,
//     1 GiB or 2 GiB; with 0.5, 1-4 GiB; 1: 2-8 GiB; 2: 4-16 GiB; 4: 8-30 GiB,
//     all in 1 GiB steps; 8: 16-60 GiB in 4 GiB steps; 16: 32-120 GiB in 8 GiB
//     steps;
//   - yandex (Serverless Containers): cpu 1 to 4 whole cores, or 0.05, 0.2 or
//     0.5 (one core at 5, 20 or 50%); memory 128 MiB to 8 GiB in 128 MiB steps;
//   - local: up to 64 vCPU and 256 GiB.
//
// Decimal sizes such as "4GB" (3814.7 MiB) are not whole MiB and fit neither
// cloud.
func ServerlessShapeFor(cloud string, cpu float64, memory Size) (ServerlessShape, error) {
	shape, se := serverlessShape(cloud, cpu, memory, true)
	if se != nil {
		return ServerlessShape{}, se
	}
	return shape, nil
}

// serverlessShape is ServerlessShapeFor. Without explain, a ShapeError has
// its Field but no message: the message names the nearest shapes, which
// costs many times the check itself, and Runner.KindOn's callers that only
// ask whether a shape fits do not read it.
func serverlessShape(cloud string, cpu float64, memory Size, explain bool) (ServerlessShape, *ShapeError) {
	lim, ok := ServerlessLimitsFor(cloud)
	if !ok {
		se := &ShapeError{Cloud: cloud, Field: "clouds"}
		if explain {
			se.msg = fmt.Sprintf("no serverless runners on cloud %q", cloud)
		}
		return ServerlessShape{}, se
	}
	shape := ServerlessShape{Cloud: cloud, Service: lim.Service, VCPU: cpu, MemoryMiB: memory.MiB()}
	fail := func(field string, msg func() string) (ServerlessShape, *ShapeError) {
		se := &ShapeError{Cloud: cloud, Service: lim.Service, Field: field}
		if explain {
			se.msg = msg()
		}
		return ServerlessShape{}, se
	}
	switch cloud {
	case CloudAWS:
		units := -1
		for _, r := range fargateSizes {
			if float64(r.units) == cpu*1024 {
				units = r.units
			}
		}
		if units < 0 {
			return fail("cpu", func() string {
				return fmt.Sprintf("%s takes 0.25, 0.5, 1, 2, 4, 8 or 16 vCPU, not %s.%s", lim.Service, fmtNum(cpu), fargateCPUHint(cpu, memory))
			})
		}
		mems := fargateMemories(units)
		if memory%MiB != 0 || !slices.Contains(mems, int64(memory/MiB)) {
			return fail("memory", func() string {
				return fmt.Sprintf("%s has no task of %s vCPU with %s: with %s vCPU (%d CPU units) it takes %s. Nearest: %s.%s",
					lim.Service, fmtNum(cpu), inMiB(memory), fmtNum(cpu), units, describeFargateMemories(units),
					nearestSizes(memory, mems), fargateOtherCPU(memory, units))
			})
		}
		shape.CPUUnits = units
	case CloudYandex:
		cores, fraction := 0, 0
		switch {
		case cpu >= 1 && cpu <= yandexMaxCores && cpu == math.Trunc(cpu):
			cores, fraction = int(cpu), 100
		case cpu < 1:
			for _, f := range yandexFractions {
				if math.Abs(cpu*100-float64(f)) < 1e-9 {
					cores, fraction = 1, f
				}
			}
		}
		if cores == 0 {
			return fail("cpu", func() string {
				return fmt.Sprintf("%s take 1 to 4 whole cores, or one core at 5, 20 or 50%% (cpu = 0.05, 0.2 or 0.5), not cpu = %s.%s",
					lim.Service, fmtNum(cpu), yandexCPUHint(cpu))
			})
		}
		if memory < yandexMemoryMin || memory > yandexMemoryMax || memory%yandexMemoryStep != 0 {
			return fail("memory", func() string {
				steps := mibSteps(int64(yandexMemoryMin/MiB), int64(yandexMemoryMax/MiB), int64(yandexMemoryStep/MiB))
				return fmt.Sprintf("%s take 128MiB to 8GiB of memory in 128MiB steps, not %s. Nearest: %s.", lim.Service, inMiB(memory), nearestSizes(memory, steps))
			})
		}
		shape.Cores, shape.CoreFraction = cores, fraction
	default:
		if cpu > lim.CPU {
			return fail("cpu", func() string {
				return fmt.Sprintf("%s allow at most %s vCPU, not %s.", lim.Service, fmtNum(lim.CPU), fmtNum(cpu))
			})
		}
		if memory > lim.Memory {
			return fail("memory", func() string {
				return fmt.Sprintf("%s allow at most %s of memory, not %s.", lim.Service, lim.Memory, memory)
			})
		}
	}
	return shape, nil
}

// inMiB writes a size in whole binary units when it has them, else in MiB
// with a decimal: "4GiB", "3814.7MiB".
func inMiB(s Size) string {
	if s%MiB == 0 {
		return s.String()
	}
	return strconv.FormatFloat(float64(s)/float64(MiB), 'f', 1, 64) + "MiB"
}

// nearestSizes names the valid sizes just below and above a size, as memory
// values to write: `memory = "3GiB" or "4GiB"`.
func nearestSizes(s Size, validMiB []int64) string {
	var below, above int64 = -1, -1
	for _, m := range validMiB {
		if Size(m)*MiB <= s {
			below = m
		}
		if Size(m)*MiB >= s && above < 0 {
			above = m
		}
	}
	var opts []string
	for _, m := range []int64{below, above} {
		if m >= 0 && !slices.Contains(opts, strconv.Quote((Size(m)*MiB).String())) {
			opts = append(opts, strconv.Quote((Size(m) * MiB).String()))
		}
	}
	return "memory = " + strings.Join(opts, " or ")
}

// fargateOtherCPU names the other Fargate CPU sizes that take a memory size.
func fargateOtherCPU(memory Size, units int) string {
	if memory%MiB != 0 {
		return ""
	}
	var cpus []string
	for _, r := range fargateSizes {
		if r.units != units && slices.Contains(fargateMemories(r.units), int64(memory/MiB)) {
			cpus = append(cpus, fmtNum(float64(r.units)/1024))
		}
	}
	if len(cpus) == 0 {
		return ""
	}
	return fmt.Sprintf(" Or keep %s with cpu = %s.", memory, strings.Join(cpus, " or "))
}

// fargateCPUHint names the Fargate CPU sizes around cpu, and those that take
// the memory as given.
func fargateCPUHint(cpu float64, memory Size) string {
	var fit []string
	for _, r := range fargateSizes {
		if memory%MiB == 0 && slices.Contains(fargateMemories(r.units), int64(memory/MiB)) {
			fit = append(fit, fmtNum(float64(r.units)/1024))
		}
	}
	if len(fit) > 0 {
		return fmt.Sprintf(" With %s of memory: cpu = %s.", memory, strings.Join(fit, " or "))
	}
	var below, above string
	for _, r := range fargateSizes {
		v := float64(r.units) / 1024
		if v < cpu {
			below = fmtNum(v)
		} else if above == "" {
			above = fmtNum(v)
		}
	}
	return fmt.Sprintf(" Nearest: cpu = %s.", strings.Trim(strings.Join([]string{below, above}, " or "), " or"))
}

func yandexCPUHint(cpu float64) string {
	switch {
	case cpu > 1 && cpu < yandexMaxCores:
		return fmt.Sprintf(" Nearest: cpu = %s or %s.", fmtNum(math.Floor(cpu)), fmtNum(math.Ceil(cpu)))
	}
	return ""
}

// KindOn resolves the runner type on one cloud. A serverless or vm runner is
// what it asks for; an auto runner is serverless when its jobs are expected
// to end within the cloud's serverless limit and a serverless shape fits its
// cpu and memory (ServerlessShapeFor), a VM otherwise. Shape is set for
// serverless runners whose shape exists; Reason says why, in words.
func (r Runner) KindOn(cloud string) CloudKind {
	return r.kindOn(cloud, true)
}

// kindOn is KindOn; without explain, Reason may be empty (the loader
// resolves every egg on every cloud and reads only Kind and Shape).
func (r Runner) kindOn(cloud string, explain bool) CloudKind {
	out := CloudKind{Cloud: cloud, Kind: r.Type}
	if r.Type == RunnerVM {
		out.Reason = "the egg asks for vm runners"
		return out
	}
	shape, se := r.serverlessShapeOn(cloud, explain)
	if se == nil {
		out.Shape = &shape
	}
	if r.Type == RunnerServerless {
		out.Reason = "the egg asks for serverless runners"
		return out
	}
	lim, ok := ServerlessLimitsFor(cloud)
	out.Kind = RunnerVM
	switch {
	case !ok:
		out.Reason = fmt.Sprintf("no serverless runners on cloud %q", cloud)
	case r.ExpectedJobDuration.D() > lim.MaxRun:
		if explain {
			out.Reason = fmt.Sprintf("jobs are expected to take %s, longer than the %s limit of %s", r.ExpectedJobDuration, Duration(lim.MaxRun), lim.Service)
		}
	case se != nil:
		if explain {
			out.Reason = fmt.Sprintf("no %s size fits %s vCPU with %s: %v", lim.Service, fmtNum(r.CPU), inMiB(r.Memory), se)
		}
	default:
		out.Kind = RunnerServerless
		if explain {
			maxRun := lim.MaxRun
			if shape.Service == serviceLambda {
				maxRun = LambdaMaxRun
			}
			out.Reason = fmt.Sprintf("jobs expected to take %s with %s vCPU and %s fit %s (%s at most) as %s",
				r.ExpectedJobDuration, fmtNum(r.CPU), inMiB(r.Memory), shape.Service, Duration(maxRun), shape)
		}
	}
	if out.Kind == RunnerVM {
		out.Shape = nil
	}
	return out
}

// CloudKind is the runner type an egg's runners get on one cloud.
type CloudKind struct {
	Cloud string
	// Kind is serverless or vm.
	Kind string
	// Shape is the serverless shape, when Kind is serverless and one fits.
	Shape  *ServerlessShape
	Reason string
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// AutoNote says what type = "auto" makes on each of an egg's clouds, with
// the serverless shape or the reason for VMs:
//
//	egg "web" (type auto): serverless on yandex (Serverless Containers: 2 cores at 100% with 4GiB)
//
// It is empty for other types.
func (e Egg) AutoNote() string {
	if e.Runner.Type != RunnerAuto {
		return ""
	}
	var parts []string
	for _, c := range e.Runner.Clouds {
		k := e.Runner.KindOn(c)
		if k.Kind == RunnerServerless {
			parts = append(parts, fmt.Sprintf("serverless on %s (%s)", c, k.Shape))
		} else {
			parts = append(parts, fmt.Sprintf("vm on %s (%s)", c, k.Reason))
		}
	}
	return fmt.Sprintf("egg %q (type auto): %s", e.Name, strings.Join(parts, "; "))
}
