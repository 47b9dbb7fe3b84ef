package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/gosling-ci/gosling/internal/store"
)

func TestUglyFoxFlagsToOptions(t *testing.T) {
	tio := newTestIO("", false)
	var got *UglyFoxRunOptions
	cmd := NewCmdUglyFoxRun(tio.f, func(o *UglyFoxRunOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--reconcile", "--nest", "my-nest", "--json", "findings", "--temporal-address", "t:7233"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !got.Reconcile || got.DryRun || got.Local || got.Nest != "my-nest" || !got.Export.Enabled() || got.Temporal.Address != "t:7233" {
		t.Errorf("options = %+v", got)
	}
	cmd = NewCmdUglyFoxRun(tio.f, func(o *UglyFoxRunOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--local"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !got.Local || !got.DryRun {
		t.Errorf("--local must imply --dry-run: %+v", got)
	}
	var sched *UglyFoxScheduleOptions
	cmd = NewCmdUglyFoxSchedule(tio.f, func(o *UglyFoxScheduleOptions) error { sched = o; return nil })
	cmd.SetArgs([]string{"--nest", "n"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if sched.Nest != "n" {
		t.Errorf("schedule options = %+v", sched)
	}
}

// --local evaluates the example Nest's policies against a store on disk,
// without Temporal, and acts on nothing.
func TestUglyFoxRunLocal(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, "gosling.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-100 * time.Hour)
	for _, r := range []*store.Runner{
		{ID: "web-p1", Egg: "web", Cloud: "aws", Kind: "vm", State: store.StateActive, WorkflowID: "pool/web/runner/web-p1", Failures: 7, CreatedAt: old, UpdatedAt: old},
		{ID: "web-p2", Egg: "web", Cloud: "aws", Kind: "vm", State: store.StateActive, WorkflowID: "pool/web/runner/web-p2", CreatedAt: time.Now(), UpdatedAt: time.Now()},
	} {
		if err := st.CreateRunner(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	tio := newTestIO("", false)
	tio.f.Logger = discardLogger()
	code := run(t, tio, "uglyfox", "run", "--local", "--json", "dry_run,runners,decisions", "--nest", filepath.Join("..", "examples", "nest"),
		"--state-dir", dir, "--tofu", "/bin/true")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	var res contract.PruneResult
	if err := json.Unmarshal(tio.out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, tio.out)
	}
	if !res.DryRun || res.Runners != 2 || len(res.Decisions) != 1 || res.Decisions[0].RunnerID != "web-p1" || res.Decisions[0].Policy != contract.PolicyFailed {
		t.Errorf("result = %+v", res)
	}

	tio = newTestIO("", false)
	tio.f.Logger = discardLogger()
	if code := run(t, tio, "uglyfox", "run", "--local", "--nest", filepath.Join("..", "examples", "nest"), "--state-dir", dir, "--tofu", "/bin/true"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	if out := tio.out.String(); !strings.HasPrefix(out, "web-p1\tweb\tactive\tfailed\tterminate\t-\t") {
		t.Errorf("piped output:\n%s", out)
	}
}

func TestAuditCommand(t *testing.T) {
	url, st := apiServer(t)
	ctx := context.Background()
	base := time.Now().Add(-3 * time.Hour).UTC()
	for i, r := range []store.AuditRecord{
		{At: base, Actor: "uglyfox", Action: "terminate", Egg: "web", RunnerID: "web-a", Policy: "heartbeat", Reason: "no heartbeat",
			Before: json.RawMessage(`{"state":"active"}`), After: json.RawMessage(`{"state":"terminated","outcome":"terminated"}`)},
		{At: base.Add(time.Hour), Actor: "api", Action: "drain", Egg: "web", RunnerID: "web-c", Reason: "drained through the API"},
		{At: base.Add(2 * time.Hour), Actor: "uglyfox", Action: "reap", Egg: "api", RunnerID: "api-x", Policy: "reconcile", Reason: "unowned"},
	} {
		if _, err := st.AppendAudit(ctx, r); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	tio := apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "audit", "--egg", "web"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	lines := strings.Split(strings.TrimSpace(tio.out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "\tuglyfox\tterminate\tweb\tweb-a\theartbeat\tactive > terminated\tno heartbeat") {
		t.Errorf("audit --egg web:\n%s", tio.out)
	}

	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "audit", "--since", "90m", "--json", "runner_id,action"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	var recs []apiv1.AuditRecord
	if err := json.Unmarshal(tio.out.Bytes(), &recs); err != nil || len(recs) != 1 || recs[0].RunnerID != "api-x" {
		t.Errorf("audit --since 90m --json = %s (%v)", tio.out, err)
	}

	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "audit", "--runner", "web-c", "--limit", "1"); code != 0 || !strings.Contains(tio.out.String(), "\tapi\tdrain\t") {
		t.Errorf("audit --runner web-c: exit %d\n%s%s", code, tio.out, tio.err)
	}
	if code := run(t, apiIO("", false, url, "wrong"), "audit"); code != ExitAuth {
		t.Errorf("wrong token: exit %d, want %d", code, ExitAuth)
	}
	if code := run(t, apiIO("", false, url, testAPIToken), "audit", "--since", "yesterday"); code != ExitError {
		t.Errorf("bad --since: exit %d", code)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2025, 6, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                  now.Add(-24 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"2025-06-01T08:00:00Z": time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC),
		"2025-06-01":           time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
