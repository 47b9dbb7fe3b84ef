// Package storetest is the contract every store engine passes: each engine's
// tests call Run (and RunPersistence when its data outlives a Close).
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/store"
)

// Open returns a new, empty store for one test. The suite closes it.
type Open func(t *testing.T) store.Store

// Run runs the contract against stores from open. Subtests run in parallel,
// so open must give each call its own data.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"CreateAndGetRunner", testCreateAndGetRunner},
		{"TimesAndNilTimes", testTimes},
		{"ListRunnersFilters", testListRunnersFilters},
		{"ListRunnersPagination", testListRunnersPagination},
		{"UpdateRunner", testUpdateRunner},
		{"UpdateRunnerConcurrentWriters", testUpdateRunnerConcurrentWriters},
		{"TransitionTable", testTransitionTable},
		{"TransitionVersionAndUpdate", testTransitionVersionAndUpdate},
		{"TransitionRace", testTransitionRace},
		{"TransitionRaceWithoutVersion", testTransitionRaceWithoutVersion},
		{"RunnerHistory", testRunnerHistory},
		{"EggConfigs", testEggConfigs},
		{"Policies", testPolicies},
		{"RecordJobKeepsFields", testRecordJobKeepsFields},
		{"RecordJobNeverGoesBack", testRecordJobNeverGoesBack},
		{"RecordJobConcurrentDeliveries", testRecordJobConcurrentDeliveries},
		{"RecordJobKeepsItsProject", testRecordJobKeepsItsProject},
		{"ListJobs", testListJobs},
		{"JobQueueTimeAndCost", testJobQueueTimeAndCost},
		{"Audit", testAudit},
		{"AuditFiltersAndPagination", testAuditFiltersAndPagination},
		{"AuditConcurrentAppends", testAuditConcurrentAppends},
		{"AuditExpiry", testAuditExpiry},
		{"Heartbeat", testHeartbeat},
		{"OutboxPrune", testOutboxPrune},
		{"AuditIdempotent", testAuditIdempotent},
		{"ConcurrentLoad", testConcurrentLoad},
		{"CountRunners", testCountRunners},
		{"Deliveries", testDeliveries},
		{"DeliveriesConcurrent", testDeliveriesConcurrent},
		{"Outbox", testOutbox},
		{"OutboxValidation", testOutboxValidation},
		{"OutboxConcurrentEnqueue", testOutboxConcurrentEnqueue},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close store: %v", err)
				}
			})
			tc.run(t, s)
		})
	}
}

// Reopen opens a store over the same data on every call. The suite closes
// each store before it calls Reopen again.
type Reopen func(t *testing.T) store.Store

// RunPersistence checks that everything written survives closing the store
// and opening it again, as a restarted server does. newData prepares fresh,
// empty data for one test and returns how to open it.
func RunPersistence(t *testing.T, newData func(t *testing.T) Reopen) {
	t.Run("SurvivesReopen", func(t *testing.T) {
		t.Parallel()
		testSurvivesReopen(t, newData(t))
	})
	t.Run("ReopenEmpty", func(t *testing.T) {
		t.Parallel()
		reopen := newData(t)
		for range 3 {
			s := reopen(t)
			runners, err := s.ListRunners(context.Background(), store.RunnerFilter{})
			mustNot(t, err)
			if len(runners) != 0 {
				t.Fatalf("fresh store lists %d runners", len(runners))
			}
			mustNot(t, s.Close())
		}
	})
}

func mustNot(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

// ms is a time with millisecond precision, which every engine keeps exactly.
func ms(t time.Time) time.Time { return t.Truncate(time.Millisecond) }

func newRunner(id string, state store.RunnerState) *store.Runner {
	return &store.Runner{
		ID:         id,
		Egg:        "egg-a",
		Cloud:      "aws",
		Kind:       "vm",
		State:      state,
		GitLabHost: "gitlab.example.com",
		Workspace:  "ws-" + id,
	}
}

func create(t *testing.T, s store.Store, r *store.Runner) *store.Runner {
	t.Helper()
	mustNot(t, s.CreateRunner(context.Background(), r))
	return r
}

// sameRunner compares runners field by field, times by instant.
func sameRunner(t *testing.T, got, want *store.Runner) {
	t.Helper()
	g, w := *got, *want
	if !sameTimePtr(g.LastHeartbeat, w.LastHeartbeat) || !sameTimePtr(g.LastJobAt, w.LastJobAt) ||
		!g.CreatedAt.Equal(w.CreatedAt) || !g.UpdatedAt.Equal(w.UpdatedAt) {
		t.Fatalf("runner times differ:\n got %+v\nwant %+v", g, w)
	}
	g.LastHeartbeat, w.LastHeartbeat, g.LastJobAt, w.LastJobAt = nil, nil, nil, nil
	g.CreatedAt, w.CreatedAt, g.UpdatedAt, w.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if g != w {
		t.Fatalf("runners differ:\n got %+v\nwant %+v", g, w)
	}
}

func sameTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func testCreateAndGetRunner(t *testing.T, s store.Store) {
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	r := newRunner("r-1", store.StateProvisioning)
	r.GitLabRunnerID, r.TokenRef, r.WorkflowID, r.JobID, r.Failures = 42, "vault:tok", "wf-1", 7, 2
	r.AgentRef = "vault://gosling/runners/r-1/agent"
	r.Version = 99 // ignored: a new runner starts at version 1
	create(t, s, r)
	if r.Version != 1 {
		t.Errorf("Version = %d after create, want 1", r.Version)
	}
	if r.CreatedAt.Before(before) || r.UpdatedAt.Before(before) {
		t.Errorf("CreatedAt/UpdatedAt not set to now: %v / %v", r.CreatedAt, r.UpdatedAt)
	}
	got, err := s.GetRunner(ctx, "r-1")
	mustNot(t, err)
	sameRunner(t, got, r)

	dup := newRunner("r-1", store.StateActive)
	err = s.CreateRunner(ctx, dup)
	wantErr(t, err, store.ErrExists)
	got, err = s.GetRunner(ctx, "r-1")
	mustNot(t, err)
	if got.State != store.StateProvisioning || got.Workspace != "ws-r-1" {
		t.Errorf("duplicate create changed the stored runner: %+v", got)
	}

	_, err = s.GetRunner(ctx, "missing")
	wantErr(t, err, store.ErrNotFound)

	// Given timestamps are kept.
	created := ms(time.Date(2024, 3, 1, 12, 30, 0, 123_000_000, time.UTC))
	old := newRunner("r-old", store.StateActive)
	old.CreatedAt, old.UpdatedAt = created, created.Add(time.Hour)
	create(t, s, old)
	got, err = s.GetRunner(ctx, "r-old")
	mustNot(t, err)
	if !got.CreatedAt.Equal(created) || !got.UpdatedAt.Equal(created.Add(time.Hour)) {
		t.Errorf("given times not kept: created %v updated %v", got.CreatedAt, got.UpdatedAt)
	}

	if err := s.CreateRunner(ctx, &store.Runner{ID: "bad", State: "sideways"}); err == nil {
		t.Error("CreateRunner accepted an unknown state")
	}
}

func testTimes(t *testing.T, s store.Store) {
	ctx := context.Background()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	heartbeat := time.Date(2025, 6, 7, 8, 9, 10, 987_654_321, zone)
	r := newRunner("r-times", store.StateActive)
	r.LastHeartbeat = &heartbeat
	create(t, s, r)

	got, err := s.GetRunner(ctx, r.ID)
	mustNot(t, err)
	if got.LastJobAt != nil {
		t.Errorf("nil LastJobAt came back as %v", got.LastJobAt)
	}
	if got.LastHeartbeat == nil {
		t.Fatal("LastHeartbeat came back nil")
	}
	for name, v := range map[string]time.Time{"LastHeartbeat": *got.LastHeartbeat, "CreatedAt": got.CreatedAt, "UpdatedAt": got.UpdatedAt} {
		if v.Location() != time.UTC {
			t.Errorf("%s in %v, want UTC", name, v.Location())
		}
	}
	if !ms(*got.LastHeartbeat).Equal(ms(heartbeat)) {
		t.Errorf("LastHeartbeat %v lost milliseconds of %v", got.LastHeartbeat, heartbeat)
	}
	// What CreateRunner left in r is what a read returns.
	sameRunner(t, got, r)
}

func testListRunnersFilters(t *testing.T, s store.Store) {
	ctx := context.Background()
	specs := []struct {
		id, egg, cloud string
		state          store.RunnerState
	}{
		{"a1", "alpha", "aws", store.StateActive},
		{"a2", "alpha", "gcp", store.StateDormant},
		{"a3", "alpha", "aws", store.StateDraining},
		{"b1", "beta", "aws", store.StateActive},
		{"b2", "beta", "gcp", store.StateTerminated},
		{"c1", "gamma", "azure", store.StateFailed},
	}
	for i, sp := range specs {
		r := newRunner(sp.id, sp.state)
		r.Egg, r.Cloud = sp.egg, sp.cloud
		r.GitLabHost, r.GitLabRunnerID = "gitlab.example.com", int64(100+i)
		if sp.id == "c1" {
			r.GitLabHost, r.GitLabRunnerID = "other.example.com", 100
		}
		create(t, s, r)
	}
	cases := []struct {
		name   string
		filter store.RunnerFilter
		want   []string
	}{
		{"all", store.RunnerFilter{}, []string{"a1", "a2", "a3", "b1", "b2", "c1"}},
		{"egg", store.RunnerFilter{Egg: "alpha"}, []string{"a1", "a2", "a3"}},
		{"cloud", store.RunnerFilter{Cloud: "aws"}, []string{"a1", "a3", "b1"}},
		{"one state", store.RunnerFilter{States: []store.RunnerState{store.StateActive}}, []string{"a1", "b1"}},
		{"any of states", store.RunnerFilter{States: []store.RunnerState{store.StateDormant, store.StateFailed, store.StateTerminated}}, []string{"a2", "b2", "c1"}},
		{"egg and cloud", store.RunnerFilter{Egg: "alpha", Cloud: "aws"}, []string{"a1", "a3"}},
		{"egg cloud states", store.RunnerFilter{Egg: "alpha", Cloud: "aws", States: []store.RunnerState{store.StateDraining}}, []string{"a3"}},
		{"no match", store.RunnerFilter{Egg: "nope"}, nil},
		{"after", store.RunnerFilter{After: "a3"}, []string{"b1", "b2", "c1"}},
		{"after with filter", store.RunnerFilter{After: "a1", Egg: "alpha"}, []string{"a2", "a3"}},
		{"limit", store.RunnerFilter{Limit: 2}, []string{"a1", "a2"}},
		{"GitLab runner", store.RunnerFilter{GitLabHost: "gitlab.example.com", GitLabRunnerID: 100}, []string{"a1"}},
		{"GitLab runner elsewhere", store.RunnerFilter{GitLabHost: "other.example.com", GitLabRunnerID: 100}, []string{"c1"}},
	}
	for _, tc := range cases {
		got, err := s.ListRunners(ctx, tc.filter)
		mustNot(t, err)
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, ids, tc.want)
		}
	}
}

func testListRunnersPagination(t *testing.T, s store.Store) {
	ctx := context.Background()
	var want []string
	// IDs that sort differently by byte and by a natural-language collation.
	for i := range 23 {
		id := fmt.Sprintf("run-%02d", i)
		if i%5 == 0 {
			id = fmt.Sprintf("Run-%02d", i)
		}
		if i%7 == 0 {
			id = fmt.Sprintf("run_%02d", i)
		}
		want = append(want, id)
		r := newRunner(id, store.StateActive)
		if i%2 == 0 {
			r.Egg = "even"
		}
		create(t, s, r)
	}
	slices.Sort(want)
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		page, err := s.ListRunners(ctx, store.RunnerFilter{After: after, Limit: 5})
		mustNot(t, err)
		if len(page) > 5 {
			t.Fatalf("page of %d runners, limit 5", len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			got = append(got, r.ID)
		}
		after = page[len(page)-1].ID
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged IDs:\n got %v\nwant %v", got, want)
	}
}

func testUpdateRunner(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := create(t, s, newRunner("r-up", store.StateActive))
	createdAt := r.CreatedAt
	heartbeat := ms(time.Now().Add(-time.Minute))

	r.Failures = 3
	r.LastHeartbeat = &heartbeat
	r.TokenRef = "vault:new"
	r.AgentRef = "vault://gosling/runners/r-up/agent"
	r.GitLabRunnerID = 1234
	r.State = store.StateTerminated // UpdateRunner never changes the state
	beforeUpdate := time.Now().Add(-time.Second)
	mustNot(t, s.UpdateRunner(ctx, r))
	if r.Version != 2 {
		t.Errorf("Version = %d after one update, want 2", r.Version)
	}
	if r.UpdatedAt.Before(beforeUpdate) {
		t.Errorf("UpdatedAt %v not moved to now", r.UpdatedAt)
	}
	got, err := s.GetRunner(ctx, r.ID)
	mustNot(t, err)
	if got.State != store.StateActive {
		t.Errorf("UpdateRunner changed the state to %s", got.State)
	}
	if got.Failures != 3 || got.TokenRef != "vault:new" || got.AgentRef != r.AgentRef || got.GitLabRunnerID != 1234 ||
		got.LastHeartbeat == nil || !got.LastHeartbeat.Equal(heartbeat) {
		t.Errorf("update not stored: %+v", got)
	}
	if !got.CreatedAt.Equal(createdAt) {
		t.Errorf("CreatedAt moved from %v to %v", createdAt, got.CreatedAt)
	}
	sameRunner(t, got, r)

	stale := *got
	stale.Version = 1
	stale.Failures = 9
	wantErr(t, s.UpdateRunner(ctx, &stale), store.ErrConflict)
	if stale.Version != 1 {
		t.Errorf("failed update changed Version to %d", stale.Version)
	}

	missing := newRunner("nobody", store.StateActive)
	missing.Version = 1
	wantErr(t, s.UpdateRunner(ctx, missing), store.ErrNotFound)

	got.LastHeartbeat = nil
	mustNot(t, s.UpdateRunner(ctx, got))
	again, err := s.GetRunner(ctx, r.ID)
	mustNot(t, err)
	if again.LastHeartbeat != nil || again.Version != 3 {
		t.Errorf("clearing LastHeartbeat: got %v, version %d", again.LastHeartbeat, again.Version)
	}
}

// race starts n goroutines that call fn together and collects their errors.
func race(n int, fn func(i int) error) []error {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func testUpdateRunnerConcurrentWriters(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := create(t, s, newRunner("r-cc", store.StateActive))
	const writers = 8
	errs := race(writers, func(i int) error {
		mine := *r
		mine.Failures = i + 1
		return s.UpdateRunner(ctx, &mine)
	})
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, store.ErrConflict):
		default:
			t.Errorf("writer failed with %v, want success or ErrConflict", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d writers won with the same version, want exactly 1", wins)
	}
	got, err := s.GetRunner(ctx, r.ID)
	mustNot(t, err)
	if got.Version != 2 {
		t.Errorf("Version = %d, want 2", got.Version)
	}
}

func testTransitionTable(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, from := range store.AllStates {
		for _, to := range store.AllStates {
			id := fmt.Sprintf("%s-to-%s", from, to)
			r := create(t, s, newRunner(id, from))
			got, err := s.Transition(ctx, store.TransitionRequest{
				RunnerID: id, Version: r.Version, To: to, Reason: "table", Actor: "storetest",
			})
			history, herr := s.RunnerHistory(ctx, id)
			mustNot(t, herr)
			stored, gerr := s.GetRunner(ctx, id)
			mustNot(t, gerr)
			switch {
			case from == to:
				if err != nil {
					t.Errorf("%s: staying put: %v", id, err)
					continue
				}
				if got.Version != 1 || got.State != from || len(history) != 0 || stored.Version != 1 {
					t.Errorf("%s: staying put changed something: version %d, state %s, %d history rows",
						id, got.Version, got.State, len(history))
				}
			case store.CanTransition(from, to):
				if err != nil {
					t.Errorf("%s: legal transition failed: %v", id, err)
					continue
				}
				if got.State != to || got.Version != 2 || got.Reason != "table" {
					t.Errorf("%s: got state %s version %d reason %q", id, got.State, got.Version, got.Reason)
				}
				sameRunner(t, stored, got)
				if len(history) != 1 || history[0].From != from || history[0].To != to ||
					history[0].Reason != "table" || history[0].Actor != "storetest" || history[0].RunnerID != id {
					t.Errorf("%s: history %+v", id, history)
				}
			default:
				if !errors.Is(err, store.ErrIllegalTransition) {
					t.Errorf("%s: got %v, want ErrIllegalTransition", id, err)
				}
				if got != nil {
					t.Errorf("%s: refused transition returned a runner", id)
				}
				if stored.State != from || stored.Version != 1 || len(history) != 0 {
					t.Errorf("%s: refused transition changed the runner: %+v, %d history rows", id, stored, len(history))
				}
			}
		}
	}
}

func testTransitionVersionAndUpdate(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := create(t, s, newRunner("r-tv", store.StateProvisioning))

	_, err := s.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, Version: 5, To: store.StateRegistering})
	wantErr(t, err, store.ErrConflict)

	_, err = s.Transition(ctx, store.TransitionRequest{RunnerID: "missing", To: store.StateRegistering})
	wantErr(t, err, store.ErrNotFound)

	// Version 0 skips the check but not the lifecycle.
	_, err = s.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, To: store.StateDormant})
	wantErr(t, err, store.ErrIllegalTransition)

	heartbeat := ms(time.Now())
	before := time.Now().Add(-time.Second)
	got, err := s.Transition(ctx, store.TransitionRequest{
		RunnerID: r.ID, To: store.StateRegistering, Reason: "applied", Actor: "mothergoose",
		Update: func(r *store.Runner) {
			r.GitLabRunnerID = 77
			r.LastHeartbeat = &heartbeat
			// The store keeps control of these.
			r.ID = "hijacked"
			r.State = store.StateTerminated
			r.Version = 1000
			r.Reason = "overridden"
			r.CreatedAt = time.Time{}
		},
	})
	mustNot(t, err)
	if got.ID != r.ID || got.State != store.StateRegistering || got.Version != 2 || got.Reason != "applied" ||
		got.GitLabRunnerID != 77 || !got.CreatedAt.Equal(r.CreatedAt) || got.UpdatedAt.Before(before) {
		t.Errorf("transition result %+v", got)
	}
	stored, err := s.GetRunner(ctx, r.ID)
	mustNot(t, err)
	sameRunner(t, stored, got)
	if _, err := s.GetRunner(ctx, "hijacked"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Update renamed the runner: %v", err)
	}

	// A failed transition rolls back its Update.
	_, err = s.Transition(ctx, store.TransitionRequest{
		RunnerID: r.ID, Version: 1, To: store.StateActive,
		Update: func(r *store.Runner) { r.Failures = 50 },
	})
	wantErr(t, err, store.ErrConflict)
	_, err = s.Transition(ctx, store.TransitionRequest{
		RunnerID: r.ID, To: store.StateProvisioning,
		Update: func(r *store.Runner) { r.Failures = 50 },
	})
	wantErr(t, err, store.ErrIllegalTransition)
	stored, err = s.GetRunner(ctx, r.ID)
	mustNot(t, err)
	if stored.Failures != 0 || stored.Version != 2 {
		t.Errorf("failed transitions changed the runner: %+v", stored)
	}

	// UpdateRunner after a transition must name the new version.
	r.Failures = 1
	wantErr(t, s.UpdateRunner(ctx, r), store.ErrConflict)
}

func testTransitionRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := create(t, s, newRunner("r-race", store.StateActive))
	targets := []store.RunnerState{store.StateDormant, store.StateDraining, store.StateTerminating, store.StateFailed}
	const racers = 16
	errs := race(racers, func(i int) error {
		_, err := s.Transition(ctx, store.TransitionRequest{
			RunnerID: r.ID, Version: r.Version, To: targets[i%len(targets)], Actor: fmt.Sprint("racer-", i),
		})
		return err
	})
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, store.ErrConflict):
		default:
			t.Errorf("racer failed with %v, want success or ErrConflict", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d transitions won from the same version, want exactly 1", wins)
	}
	history, err := s.RunnerHistory(ctx, r.ID)
	mustNot(t, err)
	got, err := s.GetRunner(ctx, r.ID)
	mustNot(t, err)
	if len(history) != 1 || got.Version != 2 || history[0].To != got.State {
		t.Errorf("after the race: %d history rows, version %d, state %s", len(history), got.Version, got.State)
	}
}

// testTransitionRaceWithoutVersion: callers that skip the version check still
// cannot both move the runner on the strength of the same stale state.
func testTransitionRaceWithoutVersion(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := create(t, s, newRunner("r-race0", store.StateProvisioning))
	const racers = 16
	errs := race(racers, func(i int) error {
		_, err := s.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, To: store.StateRegistering})
		return err
	})
	for _, err := range errs {
		if err != nil && !errors.Is(err, store.ErrConflict) {
			t.Errorf("racer failed with %v", err)
		}
	}
	history, err := s.RunnerHistory(ctx, r.ID)
	mustNot(t, err)
	if len(history) != 1 {
		t.Errorf("%d history rows for one move, want 1: %+v", len(history), history)
	}
}

func testRunnerHistory(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := create(t, s, newRunner("r-hist", store.StateProvisioning))
	path := []store.RunnerState{store.StateRegistering, store.StateActive, store.StateDormant, store.StateActive, store.StateDraining, store.StateTerminating, store.StateTerminated}
	start := time.Now().Add(-time.Second)
	for i, to := range path {
		_, err := s.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, Version: int64(i + 1), To: to, Reason: fmt.Sprint("step ", i), Actor: "uglyfox"})
		mustNot(t, err)
	}
	history, err := s.RunnerHistory(ctx, r.ID)
	mustNot(t, err)
	if len(history) != len(path) {
		t.Fatalf("%d history rows, want %d", len(history), len(path))
	}
	from := store.StateProvisioning
	var last time.Time
	for i, h := range history {
		if h.From != from || h.To != path[i] || h.Reason != fmt.Sprint("step ", i) || h.Actor != "uglyfox" || h.RunnerID != r.ID {
			t.Errorf("history[%d] = %+v", i, h)
		}
		if h.At.Before(start) || h.At.Before(last) || h.At.Location() != time.UTC {
			t.Errorf("history[%d].At = %v, not in order after %v", i, h.At, last)
		}
		from, last = h.To, h.At
	}

	_, err = s.RunnerHistory(ctx, "missing")
	wantErr(t, err, store.ErrNotFound)
	other := create(t, s, newRunner("r-quiet", store.StateActive))
	history, err = s.RunnerHistory(ctx, other.ID)
	mustNot(t, err)
	if len(history) != 0 {
		t.Errorf("runner without transitions has history %+v", history)
	}
}

// specJSON has odd spacing and key order so a byte-for-byte round trip shows.
const specJSON = `{"zeta": 1,  "alpha":{"nested":[3,2,1]}, "unicode":"ünï", "big":12345678901234567890}`

func testEggConfigs(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := ms(time.Date(2025, 1, 2, 3, 4, 5, 6_000_000, time.UTC))
	mustNot(t, s.PutEggConfig(ctx, store.EggConfig{Name: "zeta", Version: "v1", Spec: json.RawMessage(specJSON), UpdatedAt: at}))
	mustNot(t, s.PutEggConfig(ctx, store.EggConfig{Name: "alpha", Version: "v1", Spec: json.RawMessage(`{}`)}))
	mustNot(t, s.PutEggConfig(ctx, store.EggConfig{Name: "Beta", Version: "v1"}))

	got, err := s.GetEggConfig(ctx, "zeta")
	mustNot(t, err)
	if string(got.Spec) != specJSON || got.Version != "v1" || !got.UpdatedAt.Equal(at) {
		t.Errorf("egg config round trip: %+v (spec %s)", got, got.Spec)
	}
	nospec, err := s.GetEggConfig(ctx, "Beta")
	mustNot(t, err)
	if nospec.Spec != nil || nospec.UpdatedAt.IsZero() {
		t.Errorf("egg config without spec: spec %q, updated %v", nospec.Spec, nospec.UpdatedAt)
	}

	mustNot(t, s.PutEggConfig(ctx, store.EggConfig{Name: "zeta", Version: "v2", Spec: json.RawMessage(`{"v":2}`)}))
	got, err = s.GetEggConfig(ctx, "zeta")
	mustNot(t, err)
	if got.Version != "v2" || string(got.Spec) != `{"v":2}` || !got.UpdatedAt.After(at) {
		t.Errorf("egg config upsert: %+v", got)
	}

	list, err := s.ListEggConfigs(ctx)
	mustNot(t, err)
	var names []string
	for _, c := range list {
		names = append(names, c.Name)
	}
	if want := []string{"Beta", "alpha", "zeta"}; !slices.Equal(names, want) {
		t.Errorf("egg configs listed as %v, want %v", names, want)
	}

	_, err = s.GetEggConfig(ctx, "missing")
	wantErr(t, err, store.ErrNotFound)
	if err := s.PutEggConfig(ctx, store.EggConfig{Name: "broken", Spec: json.RawMessage(`{"unterminated"`)}); err == nil {
		t.Error("PutEggConfig accepted invalid JSON")
	}
}

func testPolicies(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustNot(t, s.PutPolicy(ctx, store.Policy{Name: "prune-idle", Version: "v1", Spec: json.RawMessage(specJSON)}))
	mustNot(t, s.PutPolicy(ctx, store.Policy{Name: "demote", Version: "v1", Spec: json.RawMessage(`[1, 2]`)}))
	mustNot(t, s.PutPolicy(ctx, store.Policy{Name: "prune-idle", Version: "v2", Spec: json.RawMessage(`{"after":"1h"}`)}))
	list, err := s.ListPolicies(ctx)
	mustNot(t, err)
	if len(list) != 2 || list[0].Name != "demote" || list[1].Name != "prune-idle" {
		t.Fatalf("policies %+v", list)
	}
	if string(list[0].Spec) != `[1, 2]` || list[1].Version != "v2" || string(list[1].Spec) != `{"after":"1h"}` {
		t.Errorf("policy contents %+v", list)
	}
	for _, p := range list {
		if p.UpdatedAt.IsZero() || p.UpdatedAt.Location() != time.UTC {
			t.Errorf("policy %s UpdatedAt %v", p.Name, p.UpdatedAt)
		}
	}
}

// testRecordJobKeepsItsProject: a job belongs to the project it was first
// recorded in; an event naming another project (another egg's secret
// claiming the job) changes nothing, however late its status.
func testRecordJobKeepsItsProject(t *testing.T, s store.Store) {
	ctx := context.Background()
	first := store.JobRecord{GitLabHost: "gitlab.example.com", JobID: 4100, ProjectID: 7, Egg: "egg-b", Name: "unit", Status: "pending"}
	record(t, s, first)
	finished := ms(time.Now())
	got, err := s.RecordJob(ctx, store.JobRecord{GitLabHost: first.GitLabHost, JobID: first.JobID, ProjectID: 8, Egg: "egg-a",
		Status: "success", FinishedAt: &finished, UpdatedAt: ms(time.Now().Add(time.Hour))})
	mustNot(t, err)
	if got.ProjectID != 7 || got.Egg != "egg-b" || got.Status != "pending" || got.FinishedAt != nil {
		t.Errorf("RecordJob from another project returned %+v", got)
	}
	stored, err := s.GetJob(ctx, first.GitLabHost, first.JobID)
	mustNot(t, err)
	if stored.ProjectID != 7 || stored.Egg != "egg-b" || stored.Status != "pending" || stored.FinishedAt != nil {
		t.Errorf("stored after an event from another project: %+v", stored)
	}
	// Its own project's event still moves it.
	got, err = s.RecordJob(ctx, store.JobRecord{GitLabHost: first.GitLabHost, JobID: first.JobID, ProjectID: 7, Status: "running"})
	mustNot(t, err)
	if got.Status != "running" || got.Egg != "egg-b" {
		t.Errorf("its own project's event: %+v", got)
	}
}

func testRecordJobKeepsFields(t *testing.T, s store.Store) {
	ctx := context.Background()
	queued := ms(time.Now().Add(-time.Hour))
	started := queued.Add(time.Minute)
	full := store.JobRecord{
		GitLabHost: "gitlab.example.com", JobID: 100, ProjectID: 5, Egg: "egg-a", Name: "build",
		Ref: "main", PipelineID: 9, Status: "running", RunnerID: "r-1",
		QueuedAt: &queued, StartedAt: &started,
	}
	record(t, s, full)
	got, err := s.GetJob(ctx, full.GitLabHost, full.JobID)
	mustNot(t, err)
	if got.UpdatedAt.IsZero() || got.FinishedAt != nil || !got.QueuedAt.Equal(queued) || !got.StartedAt.Equal(started) {
		t.Errorf("first record: %+v", got)
	}
	firstUpdate := got.UpdatedAt

	finished := started.Add(5 * time.Minute)
	later := ms(time.Now().Add(time.Hour))
	record(t, s, store.JobRecord{
		GitLabHost: full.GitLabHost, JobID: full.JobID, Status: "success", FinishedAt: &finished, UpdatedAt: later,
	})
	got, err = s.GetJob(ctx, full.GitLabHost, full.JobID)
	mustNot(t, err)
	want := full
	want.Status, want.FinishedAt, want.UpdatedAt = "success", &finished, later
	if !sameJob(*got, want) {
		t.Errorf("partial record:\n got %+v\nwant %+v", got, want)
	}
	if !got.UpdatedAt.After(firstUpdate) {
		t.Errorf("UpdatedAt not moved: %v", got.UpdatedAt)
	}

	// The same job ID on another host is another job.
	record(t, s, store.JobRecord{GitLabHost: "other.example.com", JobID: 100, Status: "pending"})
	other, err := s.GetJob(ctx, "other.example.com", 100)
	mustNot(t, err)
	if other.Status != "pending" || other.Egg != "" {
		t.Errorf("other host's job: %+v", other)
	}
	got, err = s.GetJob(ctx, full.GitLabHost, full.JobID)
	mustNot(t, err)
	if got.Status != "success" {
		t.Errorf("other host's job overwrote this one: %+v", got)
	}

	_, err = s.GetJob(ctx, full.GitLabHost, 999)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetJob(ctx, "nowhere", full.JobID)
	wantErr(t, err, store.ErrNotFound)
}

func sameJob(a, b store.JobRecord) bool {
	if !sameTimePtr(a.QueuedAt, b.QueuedAt) || !sameTimePtr(a.StartedAt, b.StartedAt) ||
		!sameTimePtr(a.FinishedAt, b.FinishedAt) || !sameTimePtr(a.RunnerStartedAt, b.RunnerStartedAt) || !a.UpdatedAt.Equal(b.UpdatedAt) {
		return false
	}
	a.QueuedAt, a.StartedAt, a.FinishedAt, a.RunnerStartedAt, a.UpdatedAt = nil, nil, nil, nil, time.Time{}
	b.QueuedAt, b.StartedAt, b.FinishedAt, b.RunnerStartedAt, b.UpdatedAt = nil, nil, nil, nil, time.Time{}
	return a == b
}

func testListJobs(t *testing.T, s store.Store) {
	ctx := context.Background()
	for id := int64(1); id <= 30; id++ {
		j := store.JobRecord{GitLabHost: "gitlab.example.com", JobID: id * 10, Egg: "egg-a", Status: "success"}
		if id%3 == 0 {
			j.Egg = "egg-b"
		}
		if id%4 == 0 {
			j.Status = "failed"
		}
		record(t, s, j)
	}
	ids := func(jobs []store.JobRecord) []int64 {
		var out []int64
		for _, j := range jobs {
			out = append(out, j.JobID)
		}
		return out
	}

	all, err := s.ListJobs(ctx, store.JobFilter{})
	mustNot(t, err)
	if len(all) != 30 || all[0].JobID != 300 || all[29].JobID != 10 {
		t.Fatalf("ListJobs newest first: %v", ids(all))
	}

	var paged []int64
	before := int64(0)
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("job pagination does not end")
		}
		page, err := s.ListJobs(ctx, store.JobFilter{BeforeJobID: before, Limit: 7})
		mustNot(t, err)
		if len(page) > 7 {
			t.Fatalf("page of %d jobs, limit 7", len(page))
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, ids(page)...)
		before = page[len(page)-1].JobID
	}
	if !slices.Equal(paged, ids(all)) {
		t.Errorf("paged jobs %v, want %v", paged, ids(all))
	}

	eggB, err := s.ListJobs(ctx, store.JobFilter{Egg: "egg-b"})
	mustNot(t, err)
	if want := []int64{300, 270, 240, 210, 180, 150, 120, 90, 60, 30}; !slices.Equal(ids(eggB), want) {
		t.Errorf("egg filter: %v, want %v", ids(eggB), want)
	}
	failedB, err := s.ListJobs(ctx, store.JobFilter{Egg: "egg-b", Status: "failed", BeforeJobID: 240, Limit: 1})
	mustNot(t, err)
	if want := []int64{120}; !slices.Equal(ids(failedB), want) {
		t.Errorf("egg+status+cursor filter: %v, want %v", ids(failedB), want)
	}
}

func testAudit(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := ms(time.Date(2025, 5, 6, 7, 8, 9, 10_000_000, time.FixedZone("CET", 3600)))
	first := store.AuditRecord{
		At: at, Actor: "uglyfox", Action: "demote", Egg: "egg-a", RunnerID: "r-1", Policy: "idle",
		Reason: "idle for 2h", Before: json.RawMessage(specJSON), After: json.RawMessage(`{"state": "dormant"}`),
	}
	id1, err := s.AppendAudit(ctx, first)
	mustNot(t, err)
	before := time.Now().Add(-time.Second)
	id2, err := s.AppendAudit(ctx, store.AuditRecord{Actor: "alice", Action: "provision"})
	mustNot(t, err)
	if id2 <= id1 || id1 <= 0 {
		t.Errorf("audit IDs %d then %d, want increasing and positive", id1, id2)
	}
	list, err := s.ListAudit(ctx, store.AuditFilter{})
	mustNot(t, err)
	if len(list) != 2 {
		t.Fatalf("%d audit records, want 2", len(list))
	}
	got := list[0]
	if got.ID != id1 || !got.At.Equal(at) || got.At.Location() != time.UTC || got.Actor != "uglyfox" ||
		got.Action != "demote" || got.Egg != "egg-a" || got.RunnerID != "r-1" || got.Policy != "idle" ||
		got.Reason != "idle for 2h" || string(got.Before) != specJSON || string(got.After) != `{"state": "dormant"}` {
		t.Errorf("audit round trip: %+v", got)
	}
	if list[1].ID != id2 || list[1].At.Before(before) || list[1].Before != nil || list[1].After != nil {
		t.Errorf("defaulted audit record: %+v", list[1])
	}

	// Appending never changes what is there.
	_, err = s.AppendAudit(ctx, store.AuditRecord{Actor: "bob", Action: "deprovision", RunnerID: "r-1"})
	mustNot(t, err)
	again, err := s.ListAudit(ctx, store.AuditFilter{})
	mustNot(t, err)
	if len(again) != 3 || again[0].Reason != got.Reason || string(again[0].Before) != specJSON || again[1].Actor != "alice" {
		t.Errorf("audit log after another append: %+v", again)
	}

	if _, err := s.AppendAudit(ctx, store.AuditRecord{Action: "anonymous"}); err == nil {
		t.Error("AppendAudit accepted a record without an actor")
	}
	if _, err := s.AppendAudit(ctx, store.AuditRecord{Actor: "x", Action: "y", After: json.RawMessage(`nope`)}); err == nil {
		t.Error("AppendAudit accepted invalid JSON")
	}
}

func testAuditFiltersAndPagination(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := ms(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	var ids []int64
	for i := range 20 {
		rec := store.AuditRecord{
			At:     base.Add(time.Duration(i) * time.Minute),
			Actor:  "mothergoose",
			Action: "provision",
			Egg:    []string{"egg-a", "egg-b"}[i%2],
		}
		if i%5 == 0 {
			rec.RunnerID = "r-5"
		}
		id, err := s.AppendAudit(ctx, rec)
		mustNot(t, err)
		ids = append(ids, id)
	}
	listIDs := func(f store.AuditFilter) []int64 {
		t.Helper()
		recs, err := s.ListAudit(ctx, f)
		mustNot(t, err)
		var out []int64
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	pick := func(keep func(i int) bool) []int64 {
		var out []int64
		for i, id := range ids {
			if keep(i) {
				out = append(out, id)
			}
		}
		return out
	}

	if got, want := listIDs(store.AuditFilter{Egg: "egg-a"}), pick(func(i int) bool { return i%2 == 0 }); !slices.Equal(got, want) {
		t.Errorf("egg filter %v, want %v", got, want)
	}
	if got, want := listIDs(store.AuditFilter{RunnerID: "r-5"}), pick(func(i int) bool { return i%5 == 0 }); !slices.Equal(got, want) {
		t.Errorf("runner filter %v, want %v", got, want)
	}
	// Since is inclusive, to the millisecond.
	since := base.Add(12 * time.Minute)
	if got, want := listIDs(store.AuditFilter{Since: since}), pick(func(i int) bool { return i >= 12 }); !slices.Equal(got, want) {
		t.Errorf("since filter %v, want %v", got, want)
	}
	if got, want := listIDs(store.AuditFilter{Since: since.Add(time.Millisecond)}), pick(func(i int) bool { return i >= 13 }); !slices.Equal(got, want) {
		t.Errorf("since filter just after a record %v, want %v", got, want)
	}
	if got, want := listIDs(store.AuditFilter{Since: since.In(time.FixedZone("PST", -8*3600))}), pick(func(i int) bool { return i >= 12 }); !slices.Equal(got, want) {
		t.Errorf("since filter in another zone %v, want %v", got, want)
	}
	if got, want := listIDs(store.AuditFilter{Egg: "egg-b", RunnerID: "r-5", Since: base}), pick(func(i int) bool { return i%2 == 1 && i%5 == 0 }); !slices.Equal(got, want) {
		t.Errorf("combined filter %v, want %v", got, want)
	}

	var paged []int64
	var after int64
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("audit pagination does not end")
		}
		page := listIDs(store.AuditFilter{AfterID: after, Limit: 6})
		if len(page) > 6 {
			t.Fatalf("page of %d records, limit 6", len(page))
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1]
	}
	if !slices.Equal(paged, ids) {
		t.Errorf("paged audit %v, want %v", paged, ids)
	}
}

func testAuditConcurrentAppends(t *testing.T, s store.Store) {
	ctx := context.Background()
	const writers = 24
	ids := make([]int64, writers)
	errs := race(writers, func(i int) error {
		var err error
		ids[i], err = s.AppendAudit(ctx, store.AuditRecord{Actor: fmt.Sprint("w", i), Action: "provision"})
		return err
	})
	for _, err := range errs {
		mustNot(t, err)
	}
	list, err := s.ListAudit(ctx, store.AuditFilter{})
	mustNot(t, err)
	if len(list) != writers {
		t.Fatalf("%d records, want %d", len(list), writers)
	}
	seen := map[int64]bool{}
	for i, rec := range list {
		if i > 0 && rec.ID <= list[i-1].ID {
			t.Errorf("audit not in ID order: %d after %d", rec.ID, list[i-1].ID)
		}
		seen[rec.ID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("returned ID %d not listed", id)
		}
	}
}

// testConcurrentLoad mixes writers and readers the way a busy server does;
// no operation may fail for lack of a lock.
func testConcurrentLoad(t *testing.T, s store.Store) {
	ctx := context.Background()
	const workers = 12
	const rounds = 15
	errs := race(workers, func(w int) error {
		for i := range rounds {
			id := fmt.Sprintf("load-%02d-%02d", w, i)
			r := newRunner(id, store.StateProvisioning)
			if err := s.CreateRunner(ctx, r); err != nil {
				return err
			}
			if _, err := s.Transition(ctx, store.TransitionRequest{RunnerID: id, Version: r.Version, To: store.StateRegistering, Actor: "load"}); err != nil {
				return err
			}
			if _, err := s.RecordJob(ctx, store.JobRecord{GitLabHost: "h", JobID: int64(w*1000 + i + 1), Status: "running", RunnerID: id}); err != nil {
				return err
			}
			if _, err := s.AppendAudit(ctx, store.AuditRecord{Actor: "load", Action: "provision", RunnerID: id}); err != nil {
				return err
			}
			if _, err := s.ListRunners(ctx, store.RunnerFilter{States: []store.RunnerState{store.StateRegistering}, Limit: 10}); err != nil {
				return err
			}
			if _, err := s.GetRunner(ctx, id); err != nil {
				return err
			}
		}
		return nil
	})
	for w, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", w, err)
		}
	}
	runners, err := s.ListRunners(ctx, store.RunnerFilter{States: []store.RunnerState{store.StateRegistering}})
	mustNot(t, err)
	if len(runners) != workers*rounds {
		t.Errorf("%d registering runners, want %d", len(runners), workers*rounds)
	}
}

func testPing(t *testing.T, s store.Store) {
	mustNot(t, s.Ping(context.Background()))
}

func testSurvivesReopen(t *testing.T, reopen Reopen) {
	ctx := context.Background()
	s := reopen(t)
	r := create(t, s, newRunner("r-persist", store.StateProvisioning))
	moved, err := s.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, Version: 1, To: store.StateRegistering, Reason: "applied", Actor: "mothergoose"})
	mustNot(t, err)
	mustNot(t, s.PutEggConfig(ctx, store.EggConfig{Name: "egg-a", Version: "v3", Spec: json.RawMessage(specJSON)}))
	mustNot(t, s.PutPolicy(ctx, store.Policy{Name: "idle", Version: "v1", Spec: json.RawMessage(`{"after":"2h"}`)}))
	record(t, s, store.JobRecord{GitLabHost: "h", JobID: 1, Egg: "egg-a", Status: "running"})
	auditID, err := s.AppendAudit(ctx, store.AuditRecord{Actor: "mothergoose", Action: "provision", RunnerID: r.ID})
	mustNot(t, err)
	if _, err := s.RecordDelivery(ctx, "delivery-persist", time.Now()); err != nil {
		t.Fatal(err)
	}
	outboxID, err := s.EnqueueOutbox(ctx, store.OutboxEntry{Kind: "signal", Key: "wf", Payload: json.RawMessage(`{"a":1}`)})
	mustNot(t, err)
	mustNot(t, s.Close())

	s = reopen(t)
	got, err := s.GetRunner(ctx, r.ID)
	mustNot(t, err)
	sameRunner(t, got, moved)
	history, err := s.RunnerHistory(ctx, r.ID)
	mustNot(t, err)
	if len(history) != 1 || history[0].To != store.StateRegistering {
		t.Errorf("history after reopen: %+v", history)
	}
	egg, err := s.GetEggConfig(ctx, "egg-a")
	mustNot(t, err)
	if egg.Version != "v3" || string(egg.Spec) != specJSON {
		t.Errorf("egg config after reopen: %+v", egg)
	}
	policies, err := s.ListPolicies(ctx)
	mustNot(t, err)
	if len(policies) != 1 || policies[0].Name != "idle" {
		t.Errorf("policies after reopen: %+v", policies)
	}
	job, err := s.GetJob(ctx, "h", 1)
	mustNot(t, err)
	if job.Status != "running" || job.Egg != "egg-a" {
		t.Errorf("job after reopen: %+v", job)
	}
	if first, err := s.RecordDelivery(ctx, "delivery-persist", time.Now()); err != nil || first {
		t.Errorf("delivery recorded before the reopen is new again (first %v, err %v)", first, err)
	}
	if due, err := s.DueOutbox(ctx, time.Now(), 0); err != nil || len(due) != 1 || due[0].ID != outboxID || string(due[0].Payload) != `{"a":1}` {
		t.Errorf("outbox after reopen: %+v, %v", due, err)
	}

	// Writing goes on where it left off.
	_, err = s.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, Version: moved.Version, To: store.StateActive})
	mustNot(t, err)
	nextAudit, err := s.AppendAudit(ctx, store.AuditRecord{Actor: "mothergoose", Action: "activate"})
	mustNot(t, err)
	if nextAudit <= auditID {
		t.Errorf("audit ID %d after reopen, want more than %d", nextAudit, auditID)
	}
	mustNot(t, s.Close())

	s = reopen(t)
	defer func() { mustNot(t, s.Close()) }()
	got, err = s.GetRunner(ctx, r.ID)
	mustNot(t, err)
	if got.State != store.StateActive || got.Version != 3 {
		t.Errorf("runner after second reopen: %+v", got)
	}
	audit, err := s.ListAudit(ctx, store.AuditFilter{})
	mustNot(t, err)
	if len(audit) != 2 {
		t.Errorf("%d audit records after reopen, want 2", len(audit))
	}
}

func testCountRunners(t *testing.T, s store.Store) {
	ctx := context.Background()
	empty, err := s.CountRunners(ctx)
	mustNot(t, err)
	if len(empty) != 0 {
		t.Fatalf("empty store counts %v", empty)
	}
	add := func(id, egg string, to ...store.RunnerState) {
		r := newRunner(id, store.StateProvisioning)
		r.Egg = egg
		create(t, s, r)
		for _, st := range to {
			_, err := s.Transition(ctx, store.TransitionRequest{RunnerID: id, To: st})
			mustNot(t, err)
		}
	}
	add("a-1", "egg-a")
	add("a-2", "egg-a")
	add("a-3", "egg-a", store.StateRegistering, store.StateActive)
	add("a-4", "egg-a", store.StateTerminating, store.StateTerminated)
	add("b-1", "egg-b", store.StateRegistering, store.StateDormant)
	got, err := s.CountRunners(ctx)
	mustNot(t, err)
	want := map[string]map[store.RunnerState]int{
		"egg-a": {store.StateProvisioning: 2, store.StateActive: 1, store.StateTerminated: 1},
		"egg-b": {store.StateDormant: 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("CountRunners = %v, want %v", got, want)
	}
}

func testDeliveries(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := ms(time.Now().Add(-time.Hour))
	first, err := s.RecordDelivery(ctx, "k-1", base)
	mustNot(t, err)
	if !first {
		t.Fatal("first delivery of k-1 is not first")
	}
	again, err := s.RecordDelivery(ctx, "k-1", base.Add(time.Minute))
	mustNot(t, err)
	if again {
		t.Fatal("second delivery of k-1 is first")
	}
	if _, err := s.RecordDelivery(ctx, "", base); err == nil {
		t.Error("empty key accepted")
	}

	// A forgotten delivery may come again.
	mustNot(t, s.ForgetDelivery(ctx, "k-1"))
	mustNot(t, s.ForgetDelivery(ctx, "never-seen"))
	first, err = s.RecordDelivery(ctx, "k-1", base.Add(2*time.Minute))
	mustNot(t, err)
	if !first {
		t.Fatal("delivery after ForgetDelivery is not first")
	}

	// Prune removes what is older than the bound, nothing else.
	for i := range 3 {
		_, err := s.RecordDelivery(ctx, fmt.Sprintf("old-%d", i), base.Add(-time.Duration(i+1)*time.Hour))
		mustNot(t, err)
	}
	n, err := s.PruneDeliveries(ctx, base)
	mustNot(t, err)
	if n != 3 {
		t.Errorf("pruned %d deliveries, want 3", n)
	}
	if first, err := s.RecordDelivery(ctx, "old-0", base); err != nil || !first {
		t.Errorf("pruned key not first again: %v %v", first, err)
	}
	if first, err := s.RecordDelivery(ctx, "k-1", base); err != nil || first {
		t.Errorf("unpruned key first again: %v %v", first, err)
	}
	n, err = s.PruneDeliveries(ctx, base.Add(-24*time.Hour))
	mustNot(t, err)
	if n != 0 {
		t.Errorf("pruned %d deliveries older than a day, want 0", n)
	}
}

func testDeliveriesConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const callers = 20
	for _, key := range []string{"same-a", "same-b"} {
		firsts := make([]bool, callers)
		errs := race(callers, func(i int) error {
			var err error
			firsts[i], err = s.RecordDelivery(ctx, key, time.Now())
			return err
		})
		n := 0
		for i := range callers {
			mustNot(t, errs[i])
			if firsts[i] {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d of %d concurrent deliveries of %s were first, want exactly 1", n, callers, key)
		}
	}
}

func testOutbox(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := ms(time.Now())
	depth, err := s.OutboxDepth(ctx)
	mustNot(t, err)
	if depth != 0 {
		t.Fatalf("empty outbox has depth %d", depth)
	}
	var ids []int64
	for i := range 4 {
		id, err := s.EnqueueOutbox(ctx, store.OutboxEntry{
			Kind: "signal", Key: fmt.Sprintf("wf-%d", i),
			Payload:   json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
			CreatedAt: now.Add(time.Duration(i) * time.Millisecond),
			// These are ignored on enqueue.
			ID: 999, Attempts: 7, LastError: "x",
		})
		mustNot(t, err)
		if len(ids) > 0 && id <= ids[len(ids)-1] {
			t.Fatalf("outbox IDs do not increase: %d after %v", id, ids)
		}
		ids = append(ids, id)
	}
	// An entry scheduled later is not due yet.
	later, err := s.EnqueueOutbox(ctx, store.OutboxEntry{Kind: "signal-with-start", Key: "wf-later", Payload: json.RawMessage(`{}`), CreatedAt: now, NextAttemptAt: now.Add(time.Hour)})
	mustNot(t, err)

	due, err := s.DueOutbox(ctx, now.Add(time.Second), 0)
	mustNot(t, err)
	if len(due) != 4 {
		t.Fatalf("%d due entries, want 4: %+v", len(due), due)
	}
	for i, e := range due {
		if e.ID != ids[i] || e.Kind != "signal" || e.Key != fmt.Sprintf("wf-%d", i) || string(e.Payload) != fmt.Sprintf(`{"n":%d}`, i) ||
			e.Attempts != 0 || e.LastError != "" || e.DeliveredAt != nil ||
			!e.CreatedAt.Equal(now.Add(time.Duration(i)*time.Millisecond)) || !e.NextAttemptAt.Equal(e.CreatedAt) {
			t.Errorf("due[%d] = %+v", i, e)
		}
	}
	limited, err := s.DueOutbox(ctx, now.Add(time.Second), 2)
	mustNot(t, err)
	if len(limited) != 2 || limited[0].ID != ids[0] || limited[1].ID != ids[1] {
		t.Errorf("limited due = %+v", limited)
	}
	// Entries created after now are not due at now.
	early, err := s.DueOutbox(ctx, now.Add(time.Millisecond), 0)
	mustNot(t, err)
	if len(early) != 2 {
		t.Errorf("%d entries due at now+1ms, want 2", len(early))
	}
	depth, err = s.OutboxDepth(ctx)
	mustNot(t, err)
	if depth != 5 {
		t.Errorf("depth %d, want 5", depth)
	}

	// A failed attempt counts and moves the entry back.
	mustNot(t, s.MarkOutboxFailed(ctx, ids[0], "temporal unavailable", now.Add(10*time.Second)))
	mustNot(t, s.MarkOutboxFailed(ctx, ids[0], "temporal still unavailable", now.Add(20*time.Second)))
	due, err = s.DueOutbox(ctx, now.Add(time.Second), 0)
	mustNot(t, err)
	if len(due) != 3 || due[0].ID != ids[1] {
		t.Errorf("after a failure, due = %+v", due)
	}
	due, err = s.DueOutbox(ctx, now.Add(20*time.Second), 0)
	mustNot(t, err)
	if len(due) != 4 || due[0].ID != ids[0] || due[0].Attempts != 2 || due[0].LastError != "temporal still unavailable" ||
		!due[0].NextAttemptAt.Equal(now.Add(20*time.Second)) {
		t.Errorf("failed entry when due again: %+v", due[0])
	}

	// Delivered entries leave the queue.
	deliveredAt := now.Add(21 * time.Second)
	mustNot(t, s.MarkOutboxDelivered(ctx, ids[0], deliveredAt))
	mustNot(t, s.MarkOutboxDelivered(ctx, ids[2], deliveredAt))
	due, err = s.DueOutbox(ctx, now.Add(2*time.Hour), 0)
	mustNot(t, err)
	var got []int64
	for _, e := range due {
		got = append(got, e.ID)
	}
	if want := []int64{ids[1], ids[3], later}; !slices.Equal(got, want) {
		t.Errorf("due after deliveries = %v, want %v", got, want)
	}
	depth, err = s.OutboxDepth(ctx)
	mustNot(t, err)
	if depth != 3 {
		t.Errorf("depth %d after two deliveries, want 3", depth)
	}

	for key, want := range map[string]bool{"wf-0": false, "wf-1": true, "wf-2": false, "wf-later": true, "wf-none": false} {
		if got, err := s.OutboxPending(ctx, key); err != nil || got != want {
			t.Errorf("OutboxPending(%s) = %v, %v; want %v", key, got, err, want)
		}
	}

	wantErr(t, s.MarkOutboxDelivered(ctx, 424242, now), store.ErrNotFound)
	wantErr(t, s.MarkOutboxFailed(ctx, 424242, "x", now), store.ErrNotFound)
}

func testOutboxValidation(t *testing.T, s store.Store) {
	ctx := context.Background()
	for name, e := range map[string]store.OutboxEntry{
		"no kind":      {Key: "k", Payload: json.RawMessage(`{}`)},
		"no payload":   {Kind: "signal", Key: "k"},
		"invalid JSON": {Kind: "signal", Key: "k", Payload: json.RawMessage(`{"a":`)},
	} {
		if _, err := s.EnqueueOutbox(ctx, e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	depth, err := s.OutboxDepth(ctx)
	mustNot(t, err)
	if depth != 0 {
		t.Errorf("rejected entries left depth %d", depth)
	}
}

func testOutboxConcurrentEnqueue(t *testing.T, s store.Store) {
	ctx := context.Background()
	const writers = 10
	ids := make([]int64, writers)
	errs := race(writers, func(i int) error {
		var err error
		ids[i], err = s.EnqueueOutbox(ctx, store.OutboxEntry{Kind: "signal", Key: fmt.Sprint(i), Payload: json.RawMessage(`{}`)})
		return err
	})
	for _, err := range errs {
		mustNot(t, err)
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != writers {
		t.Errorf("concurrent enqueues share IDs: %v", ids)
	}
	due, err := s.DueOutbox(ctx, time.Now().Add(time.Second), 0)
	mustNot(t, err)
	if len(due) != writers {
		t.Errorf("%d due, want %d", len(due), writers)
	}
}

func testAuditExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().UTC()
	for i, age := range []time.Duration{100 * 24 * time.Hour, 40 * 24 * time.Hour, time.Hour} {
		_, err := s.AppendAudit(ctx, store.AuditRecord{At: now.Add(-age), Actor: "uglyfox", Action: "demote", RunnerID: fmt.Sprint("r-", i)})
		mustNot(t, err)
	}
	n, err := s.ExpireAudit(ctx, now.Add(-30*24*time.Hour))
	mustNot(t, err)
	list, err := s.ListAudit(ctx, store.AuditFilter{})
	mustNot(t, err)
	if n != 2 || len(list) != 1 || list[0].RunnerID != "r-2" {
		t.Errorf("expired %d, left %+v", n, list)
	}
	if _, err := s.ExpireAudit(ctx, time.Time{}); err == nil {
		t.Error("ExpireAudit without a cut-off deleted everything")
	}
}

func testHeartbeat(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := newRunner("hb-1", store.StateActive)
	create(t, s, r)
	before, err := s.GetRunner(ctx, "hb-1")
	mustNot(t, err)
	at := ms(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	mustNot(t, s.RecordHeartbeat(ctx, "hb-1", at))
	after, err := s.GetRunner(ctx, "hb-1")
	mustNot(t, err)
	if after.LastHeartbeat == nil || !after.LastHeartbeat.Equal(at) {
		t.Errorf("last heartbeat = %v, want %v", after.LastHeartbeat, at)
	}
	if after.Version != before.Version || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("a heartbeat changed version %d->%d or update time", before.Version, after.Version)
	}
	if err := s.RecordHeartbeat(ctx, "nope", at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("heartbeat of an unknown runner: %v", err)
	}
}

func testOutboxPrune(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().UTC()
	var ids []int64
	for i := range 3 {
		id, err := s.EnqueueOutbox(ctx, store.OutboxEntry{Kind: "signal", Key: fmt.Sprint("wf-", i), Payload: json.RawMessage(`{}`), NextAttemptAt: now})
		mustNot(t, err)
		ids = append(ids, id)
	}
	mustNot(t, s.MarkOutboxDelivered(ctx, ids[0], now.Add(-10*24*time.Hour)))
	mustNot(t, s.MarkOutboxDelivered(ctx, ids[1], now.Add(-time.Hour)))
	n, err := s.PruneOutbox(ctx, now.Add(-7*24*time.Hour))
	mustNot(t, err)
	if n != 1 {
		t.Errorf("pruned %d, want 1 (the old delivered entry)", n)
	}
	due, err := s.DueOutbox(ctx, now.Add(time.Minute), 0)
	mustNot(t, err)
	if len(due) != 1 || due[0].ID != ids[2] {
		t.Errorf("pending entries after the prune: %+v", due)
	}
}

func testAuditIdempotent(t *testing.T, s store.Store) {
	ctx := context.Background()
	rec := store.AuditRecord{Actor: "uglyfox", Action: "terminate", RunnerID: "r-1", Reason: "silent", Key: "run-1/7/0"}
	id1, err := s.AppendAudit(ctx, rec)
	mustNot(t, err)
	rec.Reason = "a retry"
	id2, err := s.AppendAudit(ctx, rec)
	mustNot(t, err)
	_, err = s.AppendAudit(ctx, store.AuditRecord{Actor: "uglyfox", Action: "terminate", RunnerID: "r-2"})
	mustNot(t, err)
	_, err = s.AppendAudit(ctx, store.AuditRecord{Actor: "uglyfox", Action: "terminate", RunnerID: "r-3"})
	mustNot(t, err)
	list, err := s.ListAudit(ctx, store.AuditFilter{})
	mustNot(t, err)
	if id1 != id2 || len(list) != 3 || list[0].Reason != "silent" {
		t.Errorf("keyed append twice: ids %d, %d; records %+v", id1, id2, list)
	}
}
