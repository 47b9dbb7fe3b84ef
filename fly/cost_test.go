package fly

import (
	"math"
	"testing"
)

func TestPriceTable(t *testing.T) {
	n := loadExample(t, Options{})
	c := n.MotherGoose.Cost
	if c.Currency != "USD" || len(c.Prices) != 3 {
		t.Fatalf("example's cost block %+v", c)
	}
	p, ok := c.PriceFor(CloudYandex, RunnerVM, "")
	if !ok || p.Capacity != CapacityOnDemand || p.VCPUHour != 0.0125 {
		t.Errorf("yandex on demand: %+v %v", p, ok)
	}
	if p, ok := c.PriceFor(CloudYandex, RunnerServerless, CapacityPreemptible); !ok || p.VCPUHour != 0.0034 {
		t.Errorf("yandex preemptible: %+v %v", p, ok)
	}
	if _, ok := c.PriceFor(CloudAWS, RunnerVM, CapacitySpot); ok {
		t.Error("no spot price for aws in the example")
	}
	// A block for the kind beats one for any kind.
	c.Prices = append(c.Prices, Price{Cloud: CloudAWS, Kind: RunnerServerless, Capacity: CapacityOnDemand, VCPUHour: 0.05})
	if p, _ := c.PriceFor(CloudAWS, RunnerServerless, CapacityOnDemand); p.VCPUHour != 0.05 {
		t.Errorf("serverless aws: %+v", p)
	}
	if p, _ := c.PriceFor(CloudAWS, RunnerVM, CapacityOnDemand); p.VCPUHour != 0.0404 {
		t.Errorf("vm aws: %+v", p)
	}
	// 2 vCPU, 4 GiB, 20 GiB of disk for an hour: 2*0.0404 + 4*0.0044 + 20*0.00011.
	p, _ = c.PriceFor(CloudAWS, RunnerVM, "")
	if got, want := p.Running(2, 4*GiB, 20*GiB)*3600, 2*0.0404+4*0.0044+20*0.00011; math.Abs(got-want) > 1e-12 {
		t.Errorf("running an hour: %v, want %v", got, want)
	}
	if got, want := p.Stopped(20*GiB)*3600, 20*0.00011; math.Abs(got-want) > 1e-12 {
		t.Errorf("stopped an hour: %v, want %v", got, want)
	}
}
