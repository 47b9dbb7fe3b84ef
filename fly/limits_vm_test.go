package fly

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestYandexVMTable counts the standard-v3 shapes VMShapeFor takes from 1
// to 100 vCPUs and 1 to 1024 GiB in whole GiB: at 100%, 28 vCPU counts,
// each with 1 GiB per vCPU up to its maximum (Yandex's "Available
// configurations" table).
func TestYandexVMTable(t *testing.T) {
	want := 0
	for _, c := range yandexV3Cores {
		want += c.maxPerCore
	}
	got := 0
	for cpu := 1; cpu <= 100; cpu++ {
		for g := 1; g <= 1024; g++ {
			if _, err := VMShapeFor(CloudYandex, float64(cpu), Size(g)*GiB); err == nil {
				got++
			}
		}
	}
	if got != want || want != 9*16+13+11+10+2*16+14+13+12+11+2*10+9+3*8+2*7+2*6 {
		t.Errorf("%d shapes, want %d", got, want)
	}
	for _, c := range []struct {
		cpu    float64
		memory Size
		field  string
		hint   string
	}{
		{1, GiB, "cpu", `Nearest: cpu = 2 with memory = "2GiB"`},
		{3, 6 * GiB, "cpu", `Nearest: cpu = 4 with memory = "8GiB"`},
		{2.5, 4 * GiB, "cpu", "not cpu = 2.5"},
		{2, 3 * GiB, "memory", `Nearest: cpu = 2 with memory = "4GiB"`},
		{2, 40 * GiB, "memory", `Nearest: cpu = 2 with memory = "32GiB"`},
		{96, 640 * GiB, "memory", `Nearest: cpu = 96 with memory = "576GiB"`},
		{24, 512 * 1024 * 1024, "memory", "1 to 13 GiB per vCPU"},
	} {
		_, err := VMShapeFor(CloudYandex, c.cpu, c.memory)
		var se *ShapeError
		if !errors.As(err, &se) || se.Field != c.field || !strings.Contains(se.Error(), c.hint) {
			t.Errorf("VMShapeFor(yandex, %g, %s) = %v, want a %s error with %q", c.cpu, c.memory, err, c.field, c.hint)
		}
	}
	s, err := VMShapeFor(CloudYandex, 8, 32*GiB)
	if err != nil || s.Platform != YandexVMPlatform || s.Cores != 8 || s.CoreFraction != 100 || s.MemoryMiB != 32768 {
		t.Errorf("VMShapeFor(yandex, 8, 32GiB) = %+v, %v", s, err)
	}
}

// TestAWSVMTypes picks the smallest general-purpose type that fits, and
// refuses what none offers with the largest as the hint.
func TestAWSVMTypes(t *testing.T) {
	for _, c := range []struct {
		cpu    float64
		memory Size
		want   string
	}{
		{0.05, 128 * MiB, "t3.small"}, {2, 4 * GiB, "t3.medium"}, {2, 5 * GiB, "m7i.large"}, {3, 4 * GiB, "m7i.xlarge"},
		{8, 32 * GiB, "m7i.2xlarge"}, {40, 100 * GiB, "m7i.12xlarge"}, {64, 256 * GiB, "m7i.16xlarge"},
	} {
		s, err := VMShapeFor(CloudAWS, c.cpu, c.memory)
		if err != nil || s.InstanceType != c.want {
			t.Errorf("VMShapeFor(aws, %g, %s) = %+v, %v; want %s", c.cpu, c.memory, s, err, c.want)
		}
	}
	_, err := VMShapeFor(CloudAWS, 8, 300*GiB)
	var se *ShapeError
	if !errors.As(err, &se) || se.Field != "memory" || !strings.Contains(se.Error(), `at most 64 vCPU with 256GiB (m7i.16xlarge)`) || !strings.Contains(se.Error(), `cpu = 8 with memory = "256GiB"`) {
		t.Errorf("VMShapeFor(aws, 8, 300GiB) = %v", err)
	}
}

// TestServerlessDeadline rounds the job timeout up to whole minutes within
// 1 to 60 minutes, and puts AWS jobs of 15 minutes or less on Lambda when
// Lambda's memory gives the vCPUs asked for.
func TestServerlessDeadline(t *testing.T) {
	for _, c := range []struct {
		expected time.Duration
		deadline time.Duration
		lambda   bool
	}{
		{90 * time.Second, 2 * time.Minute, true}, {5 * time.Minute, 5 * time.Minute, true}, {15 * time.Minute, 15 * time.Minute, true},
		{15*time.Minute + time.Second, 16 * time.Minute, false}, {3 * time.Hour, time.Hour, false}, {10 * time.Second, time.Minute, true},
	} {
		r := Runner{Type: RunnerServerless, CPU: 1, Memory: 2 * GiB, ExpectedJobDuration: Duration(c.expected)}
		if got := r.ServerlessDeadline(); got != c.deadline || r.OnLambda() != c.lambda {
			t.Errorf("%s: deadline %s lambda %t, want %s %t", c.expected, got, r.OnLambda(), c.deadline, c.lambda)
		}
	}
	r := Runner{Type: RunnerServerless, CPU: 2, Memory: 2 * GiB, ExpectedJobDuration: Duration(5 * time.Minute)}
	if r.OnLambda() {
		t.Error("2 vCPU with 2GiB on Lambda, which gives 1.16 vCPU")
	}
	if _, se := lambdaShape(2, 2*GiB, true); se == nil || !strings.Contains(se.Error(), `memory = "3538MiB"`) {
		t.Errorf("lambdaShape(2, 2GiB) = %v", se)
	}
	if s, err := (Runner{CPU: 2, Memory: 4 * GiB, ExpectedJobDuration: Duration(5 * time.Minute)}).ServerlessShapeOn(CloudAWS); err != nil || s.Service != serviceLambda || s.String() != "AWS Lambda: 4GiB (2.32 vCPU)" {
		t.Errorf("ServerlessShapeOn(aws) = %v, %v", s, err)
	}
}

// TestAWSRunnersNeedSubnets refuses, at load, AWS VM and Fargate eggs when
// provider "aws" names no subnet; Lambda runners need none.
func TestAWSRunnersNeedSubnets(t *testing.T) {
	egg := func(name, typ, duration string) string {
		return `egg "` + name + `" {
  gitlab {
    host           = "gitlab.com"
    token          = "local://gitlab/token"
    webhook_secret = "local://gitlab/webhook"
  }
  project = "acme/` + name + `"
  runner {
    type                  = "` + typ + `"
    clouds                = ["aws"]
    cpu                   = 1
    memory                = "2GiB"
    expected_job_duration = "` + duration + `"
    run_untagged          = true
  }
}
`
	}
	mg := "mothergoose {\n  cloud = \"local\"\n  provider \"aws\" {\n    region = \"eu-north-1\"\n  }\n}\n"
	for _, c := range []struct {
		typ, duration string
		refused       bool
	}{{"vm", "5m", true}, {"serverless", "30m", true}, {"serverless", "5m", false}} {
		dir := t.TempDir()
		writeFile(t, dir, "MG/config.fly", mg)
		writeFile(t, dir, "Eggs/e/config.fly", egg("e", c.typ, c.duration))
		_, diags := LoadNest(dir, Options{Getenv: testEnv})
		found := false
		for _, d := range diags.Diagnostics {
			if d.Summary == "No subnets for AWS runners" {
				found = true
				if d.Subject == nil || !strings.HasSuffix(d.Subject.Filename, "MG/config.fly") || d.Subject.Start.Line != 3 || !strings.Contains(d.Detail, `"e"`) {
					t.Errorf("%s %s: at %v: %s", c.typ, c.duration, d.Subject, d.Detail)
				}
			}
		}
		if found != c.refused {
			t.Errorf("%s %s: refused %t, want %t (%v)", c.typ, c.duration, found, c.refused, diags)
		}
	}
}

// TestAWSVMMemoryRefusedAtLoad: memory no EC2 type of AWSInstanceTypes
// offers is an error of validate, on the memory attribute.
func TestAWSVMMemoryRefusedAtLoad(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "MG/config.fly", "mothergoose {\n  cloud = \"local\"\n  provider \"aws\" {\n    region  = \"eu-north-1\"\n    subnets = [\"subnet-1\"]\n  }\n}\n")
	writeFile(t, dir, "Eggs/big/config.fly", `egg "big" {
  gitlab {
    host           = "gitlab.com"
    token          = "local://gitlab/token"
    webhook_secret = "local://gitlab/webhook"
  }
  project = "acme/big"
  runner {
    type         = "vm"
    clouds       = ["aws"]
    cpu          = 16
    memory       = "384GiB"
    run_untagged = true
  }
}
`)
	nest, diags := LoadNest(dir, Options{Getenv: testEnv})
	if nest != nil || len(diags.Diagnostics) != 1 {
		t.Fatalf("diagnostics %v", diags)
	}
	d := diags.Diagnostics[0]
	if d.Summary != "Not a VM size" || d.Subject.Start.Line != 12 || !strings.Contains(d.Detail, `cpu = 16 with memory = "256GiB"`) {
		t.Errorf("%s at %v: %s", d.Summary, d.Subject, d.Detail)
	}
}
