package mothergoose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"go.temporal.io/api/serviceerror"
)

func TestUnreachable(t *testing.T) {
	for err, want := range map[error]bool{
		serviceerror.NewUnavailable("down"):                  true,
		fmt.Errorf("x: %w", serviceerror.NewUnavailable("")): true,
		serviceerror.NewDeadlineExceeded("slow"):             true,
		context.DeadlineExceeded:                             true,
		fmt.Errorf("dial: %w", syscall.ECONNREFUSED):         true,
		serviceerror.NewNotFound("gone"):                     false,
		serviceerror.NewInvalidArgument("bad"):               false,
		errors.New("other"):                                  false,
	} {
		if got := Unreachable(err); got != want {
			t.Errorf("Unreachable(%v) = %v", err, got)
		}
	}
}

func TestOutboxBackoff(t *testing.T) {
	s := &deps{cfg: Config{OutboxMaxBackoff: 10 * time.Second}}
	var got []time.Duration
	for i := 1; i <= 6; i++ {
		got = append(got, s.outboxBackoff(i))
	}
	if fmt.Sprint(got) != "[1s 2s 4s 8s 10s 10s]" {
		t.Errorf("backoff %v", got)
	}
}

func TestPerJobRunner(t *testing.T) {
	nest := &fly.Nest{MotherGoose: fly.MotherGoose{Providers: map[string]fly.Provider{"aws": {Name: "aws", Region: "eu-west-1"}}}}
	egg := &fly.Egg{Name: "web", Runner: fly.Runner{Clouds: []string{"aws", "yandex"}}}
	ev := JobEvent{Host: "gitlab.com", ProjectID: 1, ProjectPath: "a/b", JobID: 9, Name: "unit", Status: "pending", At: time.Unix(100, 0)}
	in, ok, err := PerJobRunner(nest, egg, ev)
	if err != nil || !ok || in.Kind != IntentSignalWithStart || in.WorkflowID != "runner/gitlab.com/job/9" || in.Workflow != "ProvisionRunner" || in.Signal != contract.SignalJobStatus {
		t.Fatalf("pending: %+v %v %v", in, ok, err)
	}
	ev.Status = "manual"
	if _, ok, _ := PerJobRunner(nest, egg, ev); ok {
		t.Error("manual job dispatched")
	}
	ev.Status = "canceled"
	if in, ok, err := PerJobRunner(nest, egg, ev); err != nil || !ok || in.Kind != IntentSignal || len(in.Input) != 0 {
		t.Errorf("canceled: %+v", in)
	}
	ev.Status = "pending"
	if _, _, err := PerJobRunner(nest, &fly.Egg{Name: "x"}, ev); err == nil {
		t.Error("an egg without clouds was dispatched")
	}
}

// A serverless egg's jobs go to its gate: pending as demand that starts
// the gate with the egg, its first cloud and the providers of the egg's
// clouds (for a runner's fallback), later statuses as job statuses.
func TestGateDemand(t *testing.T) {
	nest := &fly.Nest{MotherGoose: fly.MotherGoose{Providers: map[string]fly.Provider{
		"aws": {Name: "aws", Region: "eu-west-1"}, "yandex": {Name: "yandex", FolderID: "b1g"}, "local": {Name: "local"},
	}}}
	egg := &fly.Egg{Name: "fn", Runner: fly.Runner{Type: fly.RunnerServerless, Clouds: []string{"aws", "yandex"}, MaxConcurrent: 3}}
	ev := JobEvent{Host: "gitlab.com", ProjectID: 1, ProjectPath: "a/b", JobID: 9, Name: "unit", Status: "pending", At: time.Unix(100, 0)}
	in, ok, err := ByRunnerKind(nest, egg, ev)
	if err != nil || !ok || in.Kind != IntentSignalWithStart || in.WorkflowID != "gate/fn" || in.Workflow != contract.WorkflowGate || in.Signal != contract.SignalDemand {
		t.Fatalf("pending: %+v %v %v", in, ok, err)
	}
	var start contract.GateInput
	var demand contract.Demand
	if err := json.Unmarshal(in.Input, &start); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(in.SignalArg, &demand); err != nil {
		t.Fatal(err)
	}
	if start.Egg.Name != "fn" || start.Cloud != "aws" || start.Provider.Region != "eu-west-1" || len(start.Providers) != 2 || start.Providers["yandex"].FolderID != "b1g" {
		t.Errorf("gate input: %+v", start)
	}
	if demand.Job.JobID != 9 || demand.Job.Host != "gitlab.com" || demand.Job.ProjectID != 1 || !demand.At.Equal(ev.At) {
		t.Errorf("demand: %+v", demand)
	}
	for status, want := range map[string]bool{"created": false, "manual": false, "running": true, "success": true, "canceled": true} {
		ev.Status = status
		in, ok, err := GateDemand(nest, egg, ev)
		if err != nil || ok != want || (ok && (in.Kind != IntentSignal || in.WorkflowID != "gate/fn" || in.Signal != contract.SignalJobStatus)) {
			t.Errorf("%s: %+v %v %v", status, in, ok, err)
		}
	}
	one := &fly.Egg{Name: "one", Runner: fly.Runner{Type: fly.RunnerServerless, Clouds: []string{"aws"}}}
	if p := eggProviders(nest, one); p != nil {
		t.Errorf("providers of a one-cloud egg: %v", p)
	}
}
