package app_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/cli/app"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/testbin"
	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/gosling-ci/gosling/worker"
)

// One Config builds a whole process: MotherGoose over a SQLite store, the
// activities with MotherGoose wired in, a worker and the API handler.
func TestOpenBuildsAProcess(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	a, err := app.Open(ctx, app.Config{
		MotherGoose: mothergoose.Config{
			Nest:     &fly.Nest{},
			StoreDSN: "sqlite://" + filepath.Join(dir, "gosling.db"), SecretsDir: filepath.Join(dir, "secrets"),
			TemporalConnection: mothergoose.TemporalConnection{Address: "127.0.0.1:1"}, LazyTemporal: true,
		},
		Activities: func(context.Context, *mothergoose.MotherGoose) (worker.Deps, error) {
			return worker.Deps{Tofu: testbin.Tofu(t), StateDir: dir}, nil
		},
		Queues:     []string{contract.TaskQueueUglyFox},
		API:        &api.Config{},
		AuditQueue: contract.TaskQueueUglyFox,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Activities == nil || a.Activities.MotherGoose != a.MotherGoose.Operations() || a.Activities.Store != a.MotherGoose.Store() || len(a.Workers) != 1 || a.API == nil {
		t.Fatalf("built %+v", a)
	}
	rec := httptest.NewRecorder()
	a.API.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("/healthz: %d", rec.Code)
	}
}

// Workers without activities, and activities that cannot be built, are
// refused, and nothing opened is left open.
func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	mg := mothergoose.Config{Nest: &fly.Nest{}, StoreDSN: "sqlite://" + filepath.Join(dir, "gosling.db"), SecretsDir: filepath.Join(dir, "secrets"),
		TemporalConnection: mothergoose.TemporalConnection{Address: "127.0.0.1:1"}, LazyTemporal: true}
	if _, err := app.Open(context.Background(), app.Config{MotherGoose: mg, Queues: []string{contract.TaskQueueUglyFox}}); err == nil || !strings.Contains(err.Error(), "need activities") {
		t.Errorf("workers without activities: %v", err)
	}
	_, err := app.Open(context.Background(), app.Config{MotherGoose: mg, Activities: func(context.Context, *mothergoose.MotherGoose) (worker.Deps, error) {
		return worker.Deps{Tofu: filepath.Join(dir, "no-tofu"), StateDir: dir}, nil
	}})
	var ae *app.ActivitiesError
	if !errors.As(err, &ae) {
		t.Errorf("activities without OpenTofu: %v", err)
	}
}
