package fly

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/hashicorp/hcl/v2"
)

// Capacity types a machine is bought as: on demand (the default), AWS Spot
// (EC2 Spot, Fargate Spot) or Yandex Cloud preemptible VMs.
const (
	CapacityOnDemand    = "on_demand"
	CapacitySpot        = "spot"
	CapacityPreemptible = "preemptible"
)

// Capacities lists the capacity types.
var Capacities = []string{CapacityOnDemand, CapacitySpot, CapacityPreemptible}

// DefaultCurrency labels amounts when the cost block names none.
const DefaultCurrency = "USD"

// maxUnitPrice bounds a price per unit-hour: a typo, not a price, past it.
const maxUnitPrice = 1000

// Cost is the cost block of MG/config.fly: the currency and the price
// table that runner machines are charged by, per job and project (see
// mothergoose's cost accounting).
type Cost struct {
	// Currency is an ISO 4217 code, such as USD; it only labels amounts.
	Currency string  `json:"currency"`
	Prices   []Price `json:"prices,omitempty"`
}

// Price is one price block: what a machine of a cloud costs, for one
// runner kind (empty: any) and capacity type, by the hour and unit of its
// shape.
type Price struct {
	Cloud    string `json:"cloud"`
	Kind     string `json:"kind,omitempty"`
	Capacity string `json:"capacity"`
	// VCPUHour and MemoryGiBHour are charged while the machine runs (for
	// a serverless runner: while it is invoked); DiskGiBHour while the
	// machine exists, running or stopped in Nadir.
	VCPUHour      float64 `json:"vcpu_hour"`
	MemoryGiBHour float64 `json:"memory_gib_hour"`
	DiskGiBHour   float64 `json:"disk_gib_hour"`
}

// Unit is the currency amounts are in: Currency, else DefaultCurrency.
func (c Cost) Unit() string {
	if c.Currency == "" {
		return DefaultCurrency
	}
	return c.Currency
}

// PriceFor is the price of a machine of the cloud, runner kind and
// capacity type: the block that names the kind, else the one for any
// kind; false when the table has neither.
func (c Cost) PriceFor(cloud, kind, capacity string) (Price, bool) {
	if capacity == "" {
		capacity = CapacityOnDemand
	}
	var anyKind *Price
	for i, p := range c.Prices {
		if p.Cloud != cloud || p.Capacity != capacity {
			continue
		}
		if p.Kind == kind {
			return p, true
		}
		if p.Kind == "" {
			anyKind = &c.Prices[i]
		}
	}
	if anyKind != nil {
		return *anyKind, true
	}
	return Price{}, false
}

// Running is what a running machine of cpu vCPUs, memory and disk costs a
// second.
func (p Price) Running(cpu float64, memory, disk Size) float64 {
	return (cpu*p.VCPUHour + gib(memory)*p.MemoryGiBHour + gib(disk)*p.DiskGiBHour) / 3600
}

// Stopped is what a stopped machine's disk costs a second.
func (p Price) Stopped(disk Size) float64 {
	return gib(disk) * p.DiskGiBHour / 3600
}

func gib(s Size) float64 { return float64(s) / float64(GiB) }

// currencyRE is an ISO 4217 code's shape.
var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// decodeCost reads the cost block: currency (default USD) and one price
// block per cloud, runner kind and capacity type.
func (l *loader) decodeCost(blk *hcl.Block, diags *hcl.Diagnostics) Cost {
	c := Cost{Currency: DefaultCurrency}
	if blk == nil {
		return c
	}
	content, d := blk.Body.Content(&hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "currency"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "price", LabelNames: []string{"cloud"}}},
	})
	*diags = append(*diags, d...)
	a := newAttrs(l.ctx, content.Attributes, diags)
	c.Currency = a.str("currency", c.Currency)
	if !currencyRE.MatchString(c.Currency) {
		a.errorf("currency", "Invalid currency", "currency is an ISO 4217 code in capitals, such as \"USD\" or \"EUR\"; got %q.", c.Currency)
	}
	seen := map[string]hcl.Range{}
	for _, pb := range content.Blocks {
		pc, d := pb.Body.Content(attrSchema("kind", "capacity", "vcpu_hour", "memory_gib_hour", "disk_gib_hour"))
		*diags = append(*diags, d...)
		pa := newAttrs(l.ctx, pc.Attributes, diags)
		p := Price{
			Cloud:         pb.Labels[0],
			Kind:          pa.enum("kind", "", RunnerVM, RunnerServerless),
			Capacity:      pa.enum("capacity", CapacityOnDemand, Capacities...),
			VCPUHour:      pa.number("vcpu_hour", 0, 0, maxUnitPrice),
			MemoryGiBHour: pa.number("memory_gib_hour", 0, 0, maxUnitPrice),
			DiskGiBHour:   pa.number("disk_gib_hour", 0, 0, maxUnitPrice),
		}
		if !slices.Contains(runnerClouds, p.Cloud) {
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Unknown cloud",
				Detail:  fmt.Sprintf("A price is for a cloud runners run on: %s; got %q.%s", quoteList(runnerClouds), p.Cloud, didYouMean(p.Cloud, runnerClouds)),
				Subject: pb.LabelRanges[0].Ptr(),
			})
			continue
		}
		key := p.Cloud + "/" + p.Kind + "/" + p.Capacity
		if prev, dup := seen[key]; dup {
			kind := "any kind"
			if p.Kind != "" {
				kind = "kind " + p.Kind
			}
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Duplicate price",
				Detail:  fmt.Sprintf("The %s price of %s runners of %s is set already at %s: keep one of the two blocks.", p.Capacity, p.Cloud, kind, at(prev)),
				Subject: pb.DefRange.Ptr(),
			})
			continue
		}
		seen[key] = pb.DefRange
		c.Prices = append(c.Prices, p)
	}
	return c
}
