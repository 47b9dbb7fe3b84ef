package fly

import (
	"reflect"
	"testing"
)

func TestPlacements(t *testing.T) {
	for _, tc := range []struct {
		name  string
		r     Runner
		first string
		want  []string
	}{
		{"on demand across clouds", Runner{Clouds: []string{CloudYandex, CloudAWS}}, CloudYandex,
			[]string{"yandex/on_demand", "aws/on_demand"}},
		{"capacity where sold", Runner{Clouds: []string{CloudAWS, CloudLocal}, Capacity: CapacitySpot}, CloudAWS,
			[]string{"aws/spot", "local/spot"}},
		{"first cloud that does not sell it", Runner{Clouds: []string{CloudAWS, CloudYandex}, Capacity: CapacitySpot}, CloudYandex,
			[]string{"yandex/on_demand", "aws/spot"}},
		{"fallback list replaces the clouds", Runner{
			Clouds: []string{CloudYandex, CloudAWS}, Capacity: CapacityPreemptible,
			Fallback: []Placement{
				{Cloud: CloudYandex, Capacity: CapacityOnDemand, Zone: "ru-central1-b"},
				{Cloud: CloudYandex, Capacity: CapacityPreemptible},
				{Cloud: CloudAWS, Capacity: CapacitySpot},
				{Cloud: CloudAWS},
			}}, CloudYandex,
			[]string{"yandex/preemptible", "yandex/on_demand/ru-central1-b", "aws/spot", "aws/on_demand"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range tc.r.Placements(tc.first) {
				got = append(got, p.String())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Placements(%s) = %v, want %v", tc.first, got, tc.want)
			}
		})
	}
}

func TestCooldownOrDefault(t *testing.T) {
	for in, want := range map[Duration]Duration{0: DefaultCapacityCooldown, -1: 0, Duration(60e9): Duration(60e9)} {
		if got := (Runner{CapacityCooldown: in}).CooldownOrDefault(); got != want {
			t.Errorf("CooldownOrDefault(%v) = %v, want %v", in, got, want)
		}
	}
}
