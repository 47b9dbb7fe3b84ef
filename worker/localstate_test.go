package worker

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/testbin"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
)

// TestCheckAloneOnLocalState: with a worker on local OpenTofu state polling
// the mothergoose queue, a second one elsewhere is refused; the same state
// (a restart) and a worker on a shared backend are not.
func TestCheckAloneOnLocalState(t *testing.T) {
	dev, err := testsuite.StartDevServer(context.Background(), testsuite.DevServerOptions{
		ExistingPath: testbin.Temporal(t), LogLevel: "error", Stdout: io.Discard, Stderr: io.Discard,
		ClientOptions: &client.Options{Logger: quiet{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Stop() })
	c := dev.Client()
	ctx := context.Background()
	first := LocalStateIdentity("/srv/a/.gosling")
	if err := CheckAloneOnLocalState(ctx, c, first); err != nil {
		t.Fatalf("the first worker: %v", err)
	}
	w, err := New(c, contract.TaskQueueMotherGoose, &activities.Activities{}, Options{Identity: first})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	second := LocalStateIdentity("/srv/b/.gosling")
	deadline := time.Now().Add(time.Minute)
	for {
		err := CheckAloneOnLocalState(ctx, c, second)
		if errors.Is(err, ErrSecondLocalStateWorker) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a second worker on local state was not refused: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := CheckAloneOnLocalState(ctx, c, LocalStateIdentity("/srv/a/.gosling")); err != nil {
		t.Errorf("the same state again (a restart): %v", err)
	}
	if err := CheckAloneOnLocalState(ctx, c, "1@host@"); err != nil {
		t.Errorf("a worker on a shared backend: %v", err)
	}
}

type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
