package fly

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/hashicorp/hcl/v2"
)

// DefaultCapacityCooldown is how long a pool leaves a placement that
// refused a machine for capacity or quota before asking it again, when
// the runner block sets no capacity_cooldown.
const DefaultCapacityCooldown = Duration(10 * 60e9)

// Placement is one place a runner's machine may be made: a cloud of the
// runner's clouds, the capacity type bought there (CapacityOnDemand,
// CapacitySpot on AWS, CapacityPreemptible on Yandex Cloud; the local
// provider plays both) and, optionally, a zone of that cloud (a Yandex
// Cloud zone such as ru-central1-b, an AWS Availability Zone such as
// eu-north-1a); empty: the provider's.
type Placement struct {
	Cloud    string `json:"cloud"`
	Capacity string `json:"capacity"`
	Zone     string `json:"zone,omitempty"`
}

func (p Placement) String() string {
	s := p.Cloud + "/" + p.CapacityType()
	if p.Zone != "" {
		s += "/" + p.Zone
	}
	return s
}

// CapacityType is the placement's capacity, CapacityOnDemand when unset.
func (p Placement) CapacityType() string {
	if p.Capacity == "" {
		return CapacityOnDemand
	}
	return p.Capacity
}

// Key identifies the placement in a pool's memory of refusals: cloud,
// capacity type and zone.
func (p Placement) Key() string { return p.String() }

// CapacitySold tells whether a cloud sells machines of a capacity type:
// on demand everywhere, Spot on AWS (EC2 Spot, Fargate Spot), preemptible
// VMs on Yandex Cloud; the local provider plays either.
func CapacitySold(cloud, capacity string) bool {
	switch capacity {
	case "", CapacityOnDemand:
		return true
	case CapacitySpot:
		return cloud == CloudAWS || cloud == CloudLocal
	case CapacityPreemptible:
		return cloud == CloudYandex || cloud == CloudLocal
	}
	return false
}

// MachineCapacity is the capacity type a machine of a cloud and runner
// kind is bought as when capacity is asked for: Serverless Containers
// (Yandex Cloud) and Lambda functions are sold one way only, on demand;
// VMs and Fargate tasks as asked.
func MachineCapacity(cloud, kind string, lambda bool, capacity string) string {
	if capacity == "" || kind == RunnerServerless && (cloud == CloudYandex || cloud == CloudAWS && lambda) {
		return CapacityOnDemand
	}
	return capacity
}

// CapacityOn is the runner's capacity type on a cloud: Capacity where that
// cloud sells it, else on demand (a runner moved to a cloud that is not
// the one its capacity names).
func (r Runner) CapacityOn(cloud string) string {
	if CapacitySold(cloud, r.Capacity) {
		if r.Capacity == "" {
			return CapacityOnDemand
		}
		return r.Capacity
	}
	return CapacityOnDemand
}

// Placements is the order in which a runner's machine is asked for when
// its first cloud is first: first with the runner's capacity, then the
// fallback entries (without one equal to the first placement) or, when
// the runner has none, its other clouds in order with the runner's
// capacity there.
func (r Runner) Placements(first string) []Placement {
	head := Placement{Cloud: first, Capacity: r.CapacityOn(first)}
	out := []Placement{head}
	if len(r.Fallback) == 0 {
		for _, c := range r.Clouds {
			if c != first {
				out = append(out, Placement{Cloud: c, Capacity: r.CapacityOn(c)})
			}
		}
		return out
	}
	for _, p := range r.Fallback {
		p.Capacity = p.CapacityType()
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// CooldownOrDefault is the runner's capacity_cooldown, or
// DefaultCapacityCooldown for a spec decoded before it existed. A
// capacity_cooldown of "0s" is kept in the spec as -1: remember nothing.
func (r Runner) CooldownOrDefault() Duration {
	switch {
	case r.CapacityCooldown < 0:
		return 0
	case r.CapacityCooldown == 0:
		return DefaultCapacityCooldown
	}
	return r.CapacityCooldown
}

// yandexZones are Yandex Cloud's availability zones
// (ru-central1-c was closed in 2024).
var yandexZones = []string{"ru-central1-a", "ru-central1-b", "ru-central1-d"}

// awsZone is an AWS Availability Zone name: its region and a letter.
var awsZone = regexp.MustCompile(`^([a-z]{2}(?:-gov)?-[a-z]+-\d)[a-z]$`)

var fallbackSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "cloud", Required: true}, {Name: "capacity"}, {Name: "zone"}},
}

// fallbackDecl keeps where a fallback block and its attributes are.
type fallbackDecl struct {
	block, cloud, capacity, zone hcl.Range
}

// capacityDecl keeps where a runner's capacity settings are, for the
// checks that need its clouds and providers (checkCapacity).
type capacityDecl struct {
	capacity *hcl.Range
	fallback []fallbackDecl
}

// decodeFallbackBlocks reads the runner's fallback blocks, in order.
func (l *loader) decodeFallbackBlocks(blocks hcl.Blocks, decl *eggDecl, diags *hcl.Diagnostics) []Placement {
	var out []Placement
	for _, b := range blocks {
		content, d := blockContent(b.Body, fallbackSchema)
		*diags = append(*diags, d...)
		a := newAttrs(l.ctx, content.Attributes, diags)
		p := Placement{
			Cloud:    a.enum("cloud", "", runnerClouds...),
			Capacity: a.enum("capacity", CapacityOnDemand, Capacities...),
			Zone:     a.str("zone", ""),
		}
		fd := fallbackDecl{block: b.DefRange, cloud: b.DefRange, capacity: b.DefRange, zone: b.DefRange}
		for name, dst := range map[string]*hcl.Range{"cloud": &fd.cloud, "capacity": &fd.capacity, "zone": &fd.zone} {
			if r := a.rng(name); r != nil {
				*dst = *r
			}
		}
		if a.has("zone") && p.Zone == "" {
			a.errorf("zone", "Empty zone", "Leave zone out to use the provider's zone, or name one, such as zone = \"ru-central1-b\".")
		}
		out = append(out, p)
		decl.capacity.fallback = append(decl.capacity.fallback, fd)
	}
	return out
}

// capacityHint says which capacity type a cloud sells instead.
func capacityHint(cloud, capacity string) string {
	switch {
	case cloud == CloudYandex && capacity == CapacitySpot:
		return "Yandex Cloud sells spare capacity as preemptible VMs: write capacity = \"preemptible\"."
	case cloud == CloudAWS && capacity == CapacityPreemptible:
		return "AWS sells spare capacity as Spot (EC2 Spot, Fargate Spot): write capacity = \"spot\"."
	}
	return fmt.Sprintf("%s sells %s capacity.", cloud, CapacityOnDemand)
}

// checkCapacity checks an egg's capacity and fallback entries once its
// clouds and MotherGoose's providers are known: each capacity type must be
// one its cloud sells, each fallback cloud must be one of the runner's
// clouds, zones must be the cloud's, and no entry may repeat another.
func checkCapacity(e *eggDecl, providers map[string]Provider) hcl.Diagnostics {
	var diags hcl.Diagnostics
	errAt := func(sev hcl.DiagnosticSeverity, rng hcl.Range, summary, format string, args ...any) {
		diags = append(diags, &hcl.Diagnostic{Severity: sev, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: rng.Ptr()})
	}
	r := e.egg.Runner
	if e.capacity.capacity != nil && len(r.Clouds) > 0 {
		// With fallback entries the capacity is the first cloud's; without,
		// every cloud's.
		clouds := r.Clouds
		if len(r.Fallback) > 0 {
			clouds = clouds[:1]
		}
		for _, c := range clouds {
			if CapacitySold(c, r.Capacity) {
				continue
			}
			more := ""
			if len(clouds) > 1 {
				more = fmt.Sprintf(" To mix capacity types across clouds, keep capacity for %s and list the others in fallback blocks (fallback { cloud = %q capacity = \"...\" }).", clouds[0], c)
			}
			errAt(hcl.DiagError, *e.capacity.capacity, "Capacity not sold on this cloud", "Runners of %q run on %s, which sells no %s capacity. %s%s", e.egg.Name, c, r.Capacity, capacityHint(c, r.Capacity), more)
			break
		}
	}
	// Serverless runners where they are sold one way only are bought on
	// demand, whatever the capacity says.
	moot := func(rng hcl.Range, cloud, capacity string) {
		if capacity == CapacityOnDemand || r.KindOn(cloud).Kind != RunnerServerless {
			return
		}
		if MachineCapacity(cloud, RunnerServerless, cloud == CloudAWS && r.OnLambda(), capacity) == CapacityOnDemand {
			what := "Serverless Containers"
			if cloud == CloudAWS {
				what = "Lambda functions (jobs within 15 minutes)"
			}
			errAt(hcl.DiagWarning, rng, "Serverless runners bought on demand", "The egg's runners on %s are %s, which are sold on demand only: its %s capacity applies to VMs%s. Use type = \"vm\" for %s runners.",
				cloud, what, capacity, map[bool]string{true: " and Fargate tasks", false: ""}[cloud == CloudAWS], capacity)
		}
	}
	if e.capacity.capacity != nil && len(r.Clouds) > 0 && CapacitySold(r.Clouds[0], r.Capacity) {
		moot(*e.capacity.capacity, r.Clouds[0], r.Capacity)
	}
	seen := map[Placement]hcl.Range{}
	if len(r.Clouds) > 0 {
		seen[Placement{Cloud: r.Clouds[0], Capacity: r.CapacityOn(r.Clouds[0])}] = e.runner
	}
	for i, p := range r.Fallback {
		if i >= len(e.capacity.fallback) || p.Cloud == "" {
			continue
		}
		d := e.capacity.fallback[i]
		if len(r.Clouds) > 0 && !slices.Contains(r.Clouds, p.Cloud) {
			errAt(hcl.DiagError, d.cloud, "Fallback cloud not among the runner's clouds", "Fallback entries order places among the runner's clouds, which are %s. Add %q to clouds, or remove this entry.", quoteList(r.Clouds), p.Cloud)
			continue
		}
		if !CapacitySold(p.Cloud, p.Capacity) {
			errAt(hcl.DiagError, d.capacity, "Capacity not sold on this cloud", "%s sells no %s capacity. %s", p.Cloud, p.Capacity, capacityHint(p.Cloud, p.Capacity))
			continue
		}
		if p.Zone != "" {
			switch p.Cloud {
			case CloudLocal:
				errAt(hcl.DiagError, d.zone, "The local provider has no zones", "Local runners run on this machine: remove zone from this entry.")
				continue
			case CloudYandex:
				if !slices.Contains(yandexZones, p.Zone) {
					errAt(hcl.DiagError, d.zone, "Unknown Yandex Cloud zone", "Yandex Cloud's zones are %s; got %q.%s", quoteList(yandexZones), p.Zone, didYouMean(p.Zone, yandexZones))
					continue
				}
			case CloudAWS:
				m := awsZone.FindStringSubmatch(p.Zone)
				if m == nil {
					errAt(hcl.DiagError, d.zone, "Invalid Availability Zone", "An AWS Availability Zone is its region and a letter, such as \"eu-north-1a\"; got %q.", p.Zone)
					continue
				}
				if region := providers[CloudAWS].Region; region != "" && m[1] != region {
					errAt(hcl.DiagError, d.zone, "Availability Zone outside the provider's region", "Zone %q is in %s, but provider \"aws\" makes machines in %s. Name a zone of %s, such as %q.", p.Zone, m[1], region, region, region+"a")
					continue
				}
				if r.Type == RunnerServerless {
					errAt(hcl.DiagError, d.zone, "Serverless runners take no zone on AWS", "Fargate tasks and Lambda functions start in any of provider \"aws\"'s subnets: remove zone from this entry.")
					continue
				}
			}
		}
		moot(d.capacity, p.Cloud, p.Capacity)
		if prev, dup := seen[p]; dup {
			sev, what := hcl.DiagError, "is listed already at "+at(prev)
			if prev == e.runner {
				sev, what = hcl.DiagWarning, fmt.Sprintf("is the runner's first placement (its first cloud with capacity %q), asked before any fallback", r.CapacityOn(p.Cloud))
			}
			errAt(sev, d.block, "Duplicate fallback entry", "%s %s. Remove this entry.", p, what)
			continue
		}
		seen[p] = d.block
	}
	return diags
}
