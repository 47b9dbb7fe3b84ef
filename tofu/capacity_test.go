package tofu

import (
	"testing"

	"github.com/gosling-ci/gosling/fly"
)

// A machine's capacity type and zone reach the module that makes it, as
// variables the module declares; what a cloud does not sell is refused,
// and machines sold one way only are bought on demand.
func TestMachineCapacityVariables(t *testing.T) {
	for _, tc := range []struct {
		cloud, kind, capacity, zone string
		lambda                      bool
		want                        map[string]any // nil: the variable is absent
		wantErr                     bool
	}{
		{cloud: fly.CloudAWS, kind: fly.RunnerVM, capacity: fly.CapacitySpot, zone: "eu-central-1b",
			want: map[string]any{"capacity": "spot", "availability_zone": "eu-central-1b"}},
		{cloud: fly.CloudAWS, kind: fly.RunnerVM, want: map[string]any{"capacity": "on_demand", "availability_zone": ""}},
		{cloud: fly.CloudAWS, kind: fly.RunnerServerless, capacity: fly.CapacitySpot, want: map[string]any{"capacity": "spot"}},
		{cloud: fly.CloudAWS, kind: fly.RunnerServerless, capacity: fly.CapacitySpot, lambda: true, want: map[string]any{"capacity": "on_demand"}},
		{cloud: fly.CloudAWS, kind: fly.RunnerVM, capacity: fly.CapacityPreemptible, wantErr: true},
		{cloud: fly.CloudAWS, kind: fly.RunnerServerless, zone: "eu-central-1b", wantErr: true},
		{cloud: fly.CloudYandex, kind: fly.RunnerVM, capacity: fly.CapacityPreemptible, zone: "ru-central1-b",
			want: map[string]any{"capacity": "preemptible", "zone": "ru-central1-b"}},
		{cloud: fly.CloudYandex, kind: fly.RunnerVM, want: map[string]any{"capacity": "on_demand", "zone": "ru-central1-a"}},
		{cloud: fly.CloudYandex, kind: fly.RunnerVM, capacity: fly.CapacitySpot, wantErr: true},
		{cloud: fly.CloudYandex, kind: fly.RunnerServerless, capacity: fly.CapacityPreemptible, want: map[string]any{"capacity": nil}},
		{cloud: fly.CloudLocal, kind: fly.RunnerVM, capacity: fly.CapacitySpot, want: map[string]any{"capacity": "spot"}},
		{cloud: fly.CloudLocal, kind: fly.RunnerVM, zone: "here", wantErr: true},
	} {
		name := tc.cloud + "/" + tc.kind + "/" + tc.capacity + "/" + tc.zone
		t.Run(name, func(t *testing.T) {
			m := machineFor(tc.cloud, tc.kind)
			m.Capacity, m.Zone, m.Lambda = tc.capacity, tc.zone, tc.lambda
			if tc.lambda {
				m.MaxRunMinutes = 15
			}
			vars, err := m.Variables()
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted: %v", vars)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				got, ok := vars[k]
				if want == nil && ok || want != nil && got != want {
					t.Errorf("%s = %v (set %v), want %v", k, got, ok, want)
				}
			}
			if err := CheckVariables(m.Module(), vars); err != nil {
				t.Error(err)
			}
		})
	}
}
