package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/store"
)

// record records a job event and checks that what RecordJob returns is
// what a read returns.
func record(t *testing.T, s store.Store, j store.JobRecord) store.JobRecord {
	t.Helper()
	got, err := s.RecordJob(context.Background(), j)
	mustNot(t, err)
	read, err := s.GetJob(context.Background(), j.GitLabHost, j.JobID)
	mustNot(t, err)
	if !sameJob(got, *read) {
		t.Errorf("RecordJob returned\n %+v\nbut the store holds\n %+v", got, *read)
	}
	return got
}

// lifecycle is one job's events as GitLab sends them: pending, running,
// success, with the times each carries.
type lifecycle struct {
	queued, started, finished time.Time
}

func newLifecycle() lifecycle {
	q := ms(time.Now().Add(-time.Hour))
	return lifecycle{queued: q, started: q.Add(time.Minute), finished: q.Add(5 * time.Minute)}
}

func (l lifecycle) event(host string, jobID int64, status string) store.JobRecord {
	j := store.JobRecord{GitLabHost: host, JobID: jobID, ProjectID: 7, Egg: "egg-a", Name: "unit", Status: status}
	switch status {
	case "pending":
		j.QueuedAt = &l.queued
	case "running":
		j.StartedAt, j.RunnerID = &l.started, "r-1"
	case "success":
		j.StartedAt, j.FinishedAt, j.RunnerID = &l.started, &l.finished, "r-1"
	}
	return j
}

func (l lifecycle) check(t *testing.T, what string, got store.JobRecord) {
	t.Helper()
	if got.Status != "success" || got.RunnerID != "r-1" || got.ProjectID != 7 ||
		!sameTimePtr(got.QueuedAt, &l.queued) || !sameTimePtr(got.StartedAt, &l.started) || !sameTimePtr(got.FinishedAt, &l.finished) {
		t.Errorf("%s: job went back or lost a time: %+v", what, got)
	}
}

func permutations(xs []string) [][]string {
	if len(xs) <= 1 {
		return [][]string{append([]string(nil), xs...)}
	}
	var out [][]string
	for i := range xs {
		rest := append(append([]string(nil), xs[:i]...), xs[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{xs[i]}, p...))
		}
	}
	return out
}

// testRecordJobNeverGoesBack: GitLab delivers hooks out of order; a job's
// record follows GitLab's order of statuses, not the order of arrival.
func testRecordJobNeverGoesBack(t *testing.T, s store.Store) {
	ctx := context.Background()
	const host = "gitlab.example.com"
	l := newLifecycle()
	for i, order := range permutations([]string{"pending", "running", "success"}) {
		id := int64(1000 + i)
		var last store.JobRecord
		for _, status := range order {
			last = record(t, s, l.event(host, id, status))
		}
		l.check(t, fmt.Sprint(order), last)
	}

	// The handed case: success, then a late running with no finished_at.
	l.check(t, "late running", record(t, s, l.event(host, 1000, "running")))
	// Repeated deliveries change nothing.
	l.check(t, "repeated success", record(t, s, l.event(host, 1000, "success")))

	type step struct {
		status     string
		finishedAt *time.Time
	}
	early, late := ms(time.Now().Add(-2*time.Minute)), ms(time.Now().Add(-time.Minute))
	for i, tc := range []struct {
		name  string
		steps []step
		want  string
		at    *time.Time
	}{
		{"before pending", []step{{"pending", nil}, {"created", nil}, {"waiting_for_resource", nil}, {"preparing", nil}}, "pending", nil},
		{"forward through waits", []step{{"created", nil}, {"waiting_for_resource", nil}, {"preparing", nil}, {"pending", nil}}, "pending", nil},
		{"canceling then canceled", []step{{"running", nil}, {"canceled", &late}, {"canceling", nil}, {"running", nil}}, "canceled", &late},
		{"canceling after running", []step{{"canceling", nil}, {"running", nil}, {"pending", nil}}, "canceling", nil},
		{"terminal tie: the later finish wins", []step{{"failed", &late}, {"success", &early}}, "failed", &late},
		{"terminal tie: a later finish replaces", []step{{"failed", &early}, {"success", &late}}, "success", &late},
		{"unknown status never overrides", []step{{"running", nil}, {"new_status_of_gitlab_99", nil}}, "running", nil},
		{"manual played", []step{{"manual", nil}, {"pending", nil}, {"manual", nil}}, "pending", nil},
		{"skipped job reset to created", []step{{"skipped", nil}, {"created", nil}}, "created", nil},
	} {
		id := int64(2000 + i)
		var last store.JobRecord
		for _, st := range tc.steps {
			last = record(t, s, store.JobRecord{GitLabHost: host, JobID: id, Status: st.status, FinishedAt: st.finishedAt})
		}
		if last.Status != tc.want || !sameTimePtr(last.FinishedAt, tc.at) {
			t.Errorf("%s: status %s finished %v, want %s %v", tc.name, last.Status, last.FinishedAt, tc.want, tc.at)
		}
	}

	// A retried job is a new job: its pending does not touch the old one.
	record(t, s, store.JobRecord{GitLabHost: host, JobID: 1001 + 100, Status: "pending"})
	got, err := s.GetJob(ctx, host, 1000)
	mustNot(t, err)
	l.check(t, "after a retry", *got)
	// Fields other than the status still fill in from a late event.
	record(t, s, store.JobRecord{GitLabHost: host, JobID: 3000, Status: "success", FinishedAt: &l.finished})
	filled := record(t, s, store.JobRecord{GitLabHost: host, JobID: 3000, Status: "running", Ref: "main", PipelineID: 9, StartedAt: &l.started})
	if filled.Status != "success" || filled.Ref != "main" || filled.PipelineID != 9 || !sameTimePtr(filled.StartedAt, &l.started) {
		t.Errorf("late running did not fill what was unknown: %+v", filled)
	}
}

// testRecordJobConcurrentDeliveries: every event of several jobs, each sent
// several times, all at once: each job ends where GitLab's order says.
func testRecordJobConcurrentDeliveries(t *testing.T, s store.Store) {
	ctx := context.Background()
	const (
		host    = "gitlab.example.com"
		jobs    = 6
		repeats = 3
	)
	l := newLifecycle()
	var events []store.JobRecord
	for id := int64(1); id <= jobs; id++ {
		for range repeats {
			for _, status := range []string{"pending", "running", "success"} {
				events = append(events, l.event(host, id, status))
			}
		}
	}
	rand.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	var wg sync.WaitGroup
	errs := make([]error, len(events))
	start := make(chan struct{})
	for i, ev := range events {
		wg.Go(func() {
			<-start
			_, errs[i] = s.RecordJob(ctx, ev)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("delivery %d: %v", i, err)
		}
	}
	for id := int64(1); id <= jobs; id++ {
		got, err := s.GetJob(ctx, host, id)
		mustNot(t, err)
		l.check(t, fmt.Sprintf("job %d", id), *got)
	}
}

// A job's queue time and cost are recorded as its runner measured them:
// the first report of the runner's start and the job's direct cost stay,
// a later settlement corrects the idle share; jobs are listed by runner
// and by when they finished.
func testJobQueueTimeAndCost(t *testing.T, s store.Store) {
	ctx := context.Background()
	l := newLifecycle()
	const host = "gitlab.example.com"
	pending := l.event(host, 500, "pending")
	pending.ProjectPath = "acme/web"
	record(t, s, pending)
	runnerStart := l.started.Add(2 * time.Second)
	got := record(t, s, store.JobRecord{GitLabHost: host, JobID: 500, RunnerID: "r-9", RunnerStartedAt: &runnerStart, QueueSeconds: 62.5})
	if got.Status != "pending" || got.ProjectPath != "acme/web" || !sameTimePtr(got.RunnerStartedAt, &runnerStart) || got.QueueSeconds != 62.5 || got.RunnerID != "r-9" {
		t.Errorf("runner's start: %+v", got)
	}
	// A repeated report changes nothing of the first measure.
	late := runnerStart.Add(time.Minute)
	got = record(t, s, store.JobRecord{GitLabHost: host, JobID: 500, RunnerStartedAt: &late, QueueSeconds: 99})
	if !sameTimePtr(got.RunnerStartedAt, &runnerStart) || got.QueueSeconds != 62.5 {
		t.Errorf("repeated start report: %+v", got)
	}
	done := l.event(host, 500, "success")
	done.RunnerID, done.MachineSeconds, done.Cost = "r-9", 240.25, 0.0123456789
	got = record(t, s, done)
	if got.Status != "success" || got.MachineSeconds != 240.25 || got.Cost != 0.0123456789 || got.IdleCost != 0 {
		t.Errorf("finished: %+v", got)
	}
	for _, idle := range []float64{0.5, 0.000125} {
		got = record(t, s, store.JobRecord{GitLabHost: host, JobID: 500, IdleCost: idle})
		if got.IdleCost != idle || got.Cost != 0.0123456789 || got.Status != "success" {
			t.Errorf("settled %v: %+v", idle, got)
		}
	}

	// By runner and by finish time.
	base := ms(time.Now().Add(-24 * time.Hour))
	for i := int64(1); i <= 6; i++ {
		fin := base.Add(time.Duration(i) * time.Hour)
		j := store.JobRecord{GitLabHost: host, JobID: 600 + i, Egg: "egg-a", Status: "success", RunnerID: fmt.Sprintf("r-%d", i%2), FinishedAt: &fin}
		record(t, s, j)
	}
	record(t, s, store.JobRecord{GitLabHost: host, JobID: 700, Egg: "egg-a", Status: "running", RunnerID: "r-1"})
	ids := func(f store.JobFilter) []int64 {
		jobs, err := s.ListJobs(ctx, f)
		mustNot(t, err)
		var out []int64
		for _, j := range jobs {
			out = append(out, j.JobID)
		}
		return out
	}
	if got, want := ids(store.JobFilter{RunnerID: "r-1"}), []int64{700, 605, 603, 601}; !slices.Equal(got, want) {
		t.Errorf("jobs of r-1: %v, want %v", got, want)
	}
	if got, want := ids(store.JobFilter{FinishedSince: base.Add(4 * time.Hour)}), []int64{606, 605, 604, 500}; !slices.Equal(got, want) {
		t.Errorf("finished since: %v, want %v", got, want)
	}
	if got, want := ids(store.JobFilter{RunnerID: "r-0", FinishedSince: base.Add(4 * time.Hour), Limit: 1}), []int64{606}; !slices.Equal(got, want) {
		t.Errorf("both filters: %v, want %v", got, want)
	}
}
