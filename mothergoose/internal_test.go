package mothergoose

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/workflows/contract"
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
	s := &MotherGoose{cfg: Config{OutboxMaxBackoff: 10 * time.Second}}
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
