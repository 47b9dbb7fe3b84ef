package fly

import (
	"errors"
	"strings"
	"testing"
)

func TestServerlessShapeFor(t *testing.T) {
	cases := []struct {
		cloud  string
		cpu    float64
		memory Size
		want   string // the shape, or the field at fault and a piece of the hint
	}{
		{CloudAWS, 0.25, 512 * MiB, "ECS Fargate: 0.25 vCPU (256 CPU units) with 512MiB"},
		{CloudAWS, 0.25, 1536 * MiB, `memory: memory = "1GiB" or "2GiB"`},
		{CloudAWS, 0.5, 4 * GiB, "ECS Fargate: 0.5 vCPU (512 CPU units) with 4GiB"},
		{CloudAWS, 1, 4 * GiB, "ECS Fargate: 1 vCPU (1024 CPU units) with 4GiB"},
		{CloudAWS, 1, 4e9, `memory: no task of 1 vCPU with 3814.7MiB`},
		{CloudAWS, 1, 4e9, `memory: memory = "3GiB" or "4GiB"`},
		{CloudAWS, 1, 10 * GiB, `memory: Or keep 10GiB with cpu = 2 or 4`},
		{CloudAWS, 2, 16 * GiB, "ECS Fargate: 2 vCPU (2048 CPU units) with 16GiB"},
		{CloudAWS, 4, 30 * GiB, "ECS Fargate: 4 vCPU (4096 CPU units) with 30GiB"},
		{CloudAWS, 4, 31 * GiB, `memory: memory = "30GiB"`},
		{CloudAWS, 8, 20 * GiB, "ECS Fargate: 8 vCPU (8192 CPU units) with 20GiB"},
		{CloudAWS, 8, 18 * GiB, `memory: memory = "16GiB" or "20GiB"`},
		{CloudAWS, 16, 120 * GiB, "ECS Fargate: 16 vCPU (16384 CPU units) with 120GiB"},
		{CloudAWS, 16, 36 * GiB, `memory: memory = "32GiB" or "40GiB"`},
		{CloudAWS, 3, 6 * GiB, "cpu: With 6GiB of memory: cpu = 1 or 2"},
		{CloudAWS, 32, 64 * GiB, "cpu: With 64GiB of memory: cpu = 16"},
		{CloudAWS, 32, 200 * GiB, "cpu: Nearest: cpu = 16."},
		{CloudAWS, 3, 100 * GiB, "cpu: Nearest: cpu = 2 or 4."},
		{CloudYandex, 0.05, 128 * MiB, "Serverless Containers: 1 core at 5% with 128MiB"},
		{CloudYandex, 0.2, 256 * MiB, "Serverless Containers: 1 core at 20% with 256MiB"},
		{CloudYandex, 0.5, 1 * GiB, "Serverless Containers: 1 core at 50% with 1GiB"},
		{CloudYandex, 4, 8 * GiB, "Serverless Containers: 4 cores at 100% with 8GiB"},
		{CloudYandex, 0.3, 1 * GiB, "cpu: one core at 5, 20 or 50%"},
		{CloudYandex, 2.5, 1 * GiB, "cpu: Nearest: cpu = 2 or 3"},
		{CloudYandex, 5, 1 * GiB, "cpu: 1 to 4 whole cores"},
		{CloudYandex, 1, 4e9, `memory: memory = "3712MiB" or "3840MiB"`},
		{CloudYandex, 1, 9 * GiB, `memory: memory = "8GiB"`},
		{CloudYandex, 1, 64 * MiB, `memory: memory = "128MiB"`},
		{CloudLocal, 0.3, 3 * GiB, "local processes: 0.3 vCPU with 3GiB"},
		{CloudLocal, 65, 3 * GiB, "cpu: at most 64 vCPU"},
	}
	for _, c := range cases {
		shape, err := ServerlessShapeFor(c.cloud, c.cpu, c.memory)
		ok := err == nil && shape.String() == c.want
		got := shape.String()
		if err != nil {
			var se *ShapeError
			if !errors.As(err, &se) {
				t.Fatalf("%s %v %s: %T %v", c.cloud, c.cpu, c.memory, err, err)
			}
			got = se.Field + ": " + err.Error()
			hint, field := strings.CutPrefix(c.want, se.Field+": ")
			ok = field && strings.Contains(err.Error(), hint)
		}
		if !ok {
			t.Errorf("ServerlessShapeFor(%s, %v, %s) = %q, want %q", c.cloud, c.cpu, c.memory, got, c.want)
		}
	}
}

// TestFargateTable counts the sizes Fargate takes: AWS's table lists 74
// combinations of CPU and memory (3, 4, 7, 13, 23, 12 and 12 per CPU size).
func TestFargateTable(t *testing.T) {
	perCPU := map[float64]int{}
	total := 0
	for _, cpu := range []float64{0.125, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32} {
		for m := Size(256) * MiB; m <= 128*GiB; m += 256 * MiB {
			if _, err := ServerlessShapeFor(CloudAWS, cpu, m); err == nil {
				perCPU[cpu]++
				total++
			}
		}
	}
	want := map[float64]int{0.25: 3, 0.5: 4, 1: 7, 2: 13, 4: 23, 8: 12, 16: 12}
	for cpu, n := range want {
		if perCPU[cpu] != n {
			t.Errorf("%v vCPU: %d sizes, want %d", cpu, perCPU[cpu], n)
		}
	}
	if total != 74 {
		t.Errorf("%d sizes in all, want 74", total)
	}
}

// TestYandexTable counts Serverless Containers' sizes: 7 CPU settings
// (three fractions of one core, one to four cores) by 64 memory sizes.
func TestYandexTable(t *testing.T) {
	total := 0
	for _, cpu := range []float64{0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5} {
		for m := Size(64) * MiB; m <= 9*GiB; m += 64 * MiB {
			if _, err := ServerlessShapeFor(CloudYandex, cpu, m); err == nil {
				total++
			}
		}
	}
	if total != 7*64 {
		t.Errorf("%d sizes, want %d", total, 7*64)
	}
}

func TestKindOn(t *testing.T) {
	r := Runner{Type: RunnerAuto, CPU: 1, Memory: 2 * GiB, ExpectedJobDuration: Duration(15 * 60e9)}
	cases := []struct {
		r      func(Runner) Runner
		cloud  string
		kind   string
		reason string
	}{
		{func(r Runner) Runner { return r }, CloudAWS, RunnerServerless, "fit AWS Lambda (15m at most) as AWS Lambda: 2GiB (1.16 vCPU)"},
		{func(r Runner) Runner { r.ExpectedJobDuration = Duration(16 * 60e9); return r }, CloudAWS, RunnerServerless, "fit ECS Fargate (1h at most) as ECS Fargate: 1 vCPU (1024 CPU units) with 2GiB"},
		{func(r Runner) Runner { r.Memory = GiB; return r }, CloudAWS, RunnerVM, "no ECS Fargate size fits 1 vCPU with 1GiB"},
		{func(r Runner) Runner { return r }, CloudYandex, RunnerServerless, "as Serverless Containers: 1 core at 100% with 2GiB"},
		{func(r Runner) Runner { r.Memory = 4e9; return r }, CloudAWS, RunnerVM, "no ECS Fargate size fits 1 vCPU with 3814.7MiB"},
		{func(r Runner) Runner { r.CPU = 8; r.Memory = 32 * GiB; return r }, CloudYandex, RunnerVM, "no Serverless Containers size fits"},
		{func(r Runner) Runner { r.CPU = 8; r.Memory = 32 * GiB; return r }, CloudAWS, RunnerServerless, "8 vCPU (8192 CPU units) with 32GiB"},
		{func(r Runner) Runner { r.ExpectedJobDuration = Duration(2 * 3600e9); return r }, CloudAWS, RunnerVM, "longer than the 1h limit"},
		{func(r Runner) Runner { r.Type = RunnerVM; return r }, CloudAWS, RunnerVM, "asks for vm"},
		{func(r Runner) Runner { r.Type = RunnerServerless; r.Memory = 4e9; return r }, CloudAWS, RunnerServerless, "asks for serverless"},
		{func(r Runner) Runner { return r }, "mars", RunnerVM, "no serverless runners"},
	}
	for i, c := range cases {
		k := c.r(r).KindOn(c.cloud)
		if k.Kind != c.kind || !strings.Contains(k.Reason, c.reason) {
			t.Errorf("%d: KindOn(%s) = %s (%s), want %s (%s)", i, c.cloud, k.Kind, k.Reason, c.kind, c.reason)
		}
		if (k.Kind == RunnerServerless && c.r(r).Type == RunnerAuto) != (k.Shape != nil) {
			t.Errorf("%d: shape %v for kind %s", i, k.Shape, k.Kind)
		}
	}
}
