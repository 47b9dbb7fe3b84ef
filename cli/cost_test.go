package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/store"
)

func TestCostFlagsToOptions(t *testing.T) {
	tio := withEnv(newTestIO("", false), map[string]string{envAPIURL: "http://from-env:1", envAPIToken: "secret"})
	var got *CostOptions
	cmd := NewCmdCost(tio.f, func(o *CostOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--since", "2025-06-01", "--by", "project", "--json", "project,cost"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.By != "project" || !got.since.Equal(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)) || got.API.URL != "http://from-env:1" ||
		strings.Join(got.Export.Fields, ",") != "project,cost" {
		t.Errorf("options = %+v", got)
	}
	cmd = NewCmdCost(tio.f, func(o *CostOptions) error { got = o; return nil })
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if week := time.Since(got.since); got.By != "egg" || week < 7*24*time.Hour || week > 7*24*time.Hour+time.Hour {
		t.Errorf("defaults: by %q, since %s", got.By, got.since)
	}
	for _, args := range [][]string{{"cost", "--by", "runner"}, {"cost", "--since", "last week"}, {"cost", "--json", "price"}} {
		if code := run(t, newTestIO("", false), args...); code != ExitError {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}

// The chargeback table sums the jobs that finished in the period, by egg
// or by project, most costly first.
func TestCostTable(t *testing.T) {
	url, st := apiServer(t)
	ctx := context.Background()
	recent := time.Now().Add(-time.Hour)
	old := time.Now().Add(-30 * 24 * time.Hour)
	for _, j := range []store.JobRecord{
		{JobID: 101, ProjectPath: "acme/web", RunnerID: "web-a", FinishedAt: &recent, QueueSeconds: 4, MachineSeconds: 1800, Cost: 0.25, IdleCost: 0.05},
		{JobID: 102, ProjectPath: "acme/web", RunnerID: "web-a", FinishedAt: &recent, QueueSeconds: 2, MachineSeconds: 1800, Cost: 0.25},
		{JobID: 103, ProjectPath: "acme/api", RunnerID: "web-c", FinishedAt: &recent, MachineSeconds: 3600, Cost: 1},
		{JobID: 104, ProjectPath: "acme/api", RunnerID: "web-c", FinishedAt: &old, MachineSeconds: 3600, Cost: 7},
		{JobID: 105, ProjectPath: "acme/api", FinishedAt: &recent}, // not a Gosling runner's
	} {
		j.GitLabHost, j.ProjectID, j.Egg, j.Status = "gitlab.example.com", 1, "web", "success"
		if _, err := st.RecordJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	tio := apiIO("", true, url, testAPIToken)
	if code := run(t, tio, "cost", "--since", "7d"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	out := tio.out.String()
	if !strings.Contains(out, "TOTAL USD") || !strings.Contains(out, "web  3     3s     2.000          1.5000  0.0500  1.5500") {
		t.Errorf("table by egg:\n%s", out)
	}

	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "cost", "--by", "project"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	if want := "acme/api\tweb\t1\t-\t1.000\t1.0000\t0.0000\t1.0000\nacme/web\tweb\t2\t3s\t1.000\t0.5000\t0.0500\t0.5500\n"; tio.out.String() != want {
		t.Errorf("by project in a pipe:\n%q\nwant\n%q", tio.out.String(), want)
	}

	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "cost", "--by", "project", "--json", "project,jobs,cost,queue_mean_seconds"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(tio.out.Bytes(), &rows); err != nil || len(rows) != 2 || rows[1]["project"] != "acme/web" || rows[1]["queue_mean_seconds"] != 3.0 || rows[0]["cost"] != 1.0 {
		t.Errorf("--json: %s (%v)", tio.out, err)
	}
}
