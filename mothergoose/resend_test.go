package mothergoose

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/testbin"
)

// testClock is a settable clock shared by MotherGoose and GitLab.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Deliveries that failed while the endpoint was down come back from
// GitLab's log with their own Idempotency-Keys, pending jobs' first, at
// most five a minute per project; the pending-job sweep is not needed.
func TestSweepResendsFailedDeliveries(t *testing.T) {
	clk := &testClock{t: time.Now().UTC()}
	e := newSweepEnvWith(t, clk.now, gitlabtest.WithoutWebhookAutoDisabling())
	ctx := context.Background()
	p := e.gl.AddProject("acme/web", e.gl.AddGroup("acme", 0).ID)
	egg := e.egg("web")
	egg.Projects = []fly.ProjectRef{{Path: p.PathWithNamespace}}
	sweep := func() contract.SweepResult {
		t.Helper()
		res, err := e.mg.ops.SweepEgg(ctx, contract.SweepInput{
			Egg: egg, Providers: map[string]fly.Provider{fly.CloudLocal: {Name: fly.CloudLocal}},
			WebhookURL: e.endpoint.URL + "/webhooks/gitlab", Interval: time.Minute, SkipPendingJobs: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := sweep(); res.HooksCreated != 1 || res.Pending != 0 {
		t.Fatalf("first pass %+v", res)
	}
	hookID := e.gl.Hooks(p.ID)[0].ID

	e.up.Store(false)
	jobs := make([]gitlabtest.JobSpec, 7)
	for i := range jobs {
		jobs[i] = gitlabtest.JobSpec{Name: fmt.Sprintf("job-%d", i), Stage: "test", Tags: []string{"docker"}}
	}
	pl, err := e.gl.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "eight failed deliveries", func() bool { return len(e.gl.HookEvents(hookID)) == 8 })
	logged := e.gl.HookEvents(hookID)
	keyOf := map[string]string{} // build name or "pipeline" -> Idempotency-Key
	for _, ev := range logged {
		var d struct {
			Kind string `json:"object_kind"`
			Name string `json:"build_name"`
		}
		_ = json.Unmarshal(ev.RequestData, &d)
		name := d.Name
		if d.Kind == "pipeline" {
			name = "pipeline"
		}
		keyOf[name] = ev.RequestHeaders["Idempotency-Key"]
	}
	if len(keyOf) != 8 {
		t.Fatalf("logged deliveries: %v", keyOf)
	}

	e.up.Store(true)
	res := sweep()
	if res.Redelivered != 5 || res.RedeliveryWaiting != 3 || res.Pending != 0 || len(res.Errors) != 0 {
		t.Fatalf("pass after the outage %+v", res)
	}
	want := []string{keyOf["job-0"], keyOf["job-1"], keyOf["job-2"], keyOf["job-3"], keyOf["job-4"]}
	if got := e.takeReceived(); !slices.Equal(got, want) {
		t.Errorf("resent %v, want the five oldest pending jobs' %v", got, want)
	}
	if res := sweep(); res.Redelivered != 0 || res.RedeliveryWaiting != 3 {
		t.Errorf("pass in the same minute %+v: GitLab allows five a minute", res)
	}
	clk.add(61 * time.Second)
	if res := sweep(); res.Redelivered != 3 || res.RedeliveryWaiting != 0 {
		t.Errorf("pass a minute later %+v", res)
	}
	if got := e.takeReceived(); !slices.Equal(got, []string{keyOf["job-5"], keyOf["job-6"], keyOf["pipeline"]}) {
		t.Errorf("resent %v", got)
	}
	clk.add(61 * time.Second)
	if res := sweep(); res.Redelivered != 0 || res.RedeliveryWaiting != 0 || res.RedeliveryFailed != 0 {
		t.Errorf("nothing left to resend, got %+v", res)
	}
	if n := metricValue(t, e.metrics, "gosling_webhook_redeliveries_total", "egg", "web", "result", "accepted"); n != 8 {
		t.Errorf("accepted redeliveries = %v, want 8", n)
	}
	if recs := e.audits(contract.AuditRedelivered); len(recs) != 2 || !strings.Contains(recs[0].Reason, "5 accepted") {
		t.Errorf("webhook-redelivered audits: %+v", recs)
	}
	_ = pl
}

func (e *sweepEnv) takeReceived() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.received
	e.received = nil
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbin.WaitFor(t, 20*time.Second, what, cond)
}

func logged(id int64, key, payload, status string) gitlab.HookEvent {
	return gitlab.HookEvent{ID: id, RequestHeaders: map[string]string{"Idempotency-Key": key}, RequestData: json.RawMessage(payload), ResponseStatus: status}
}

// Of one job's failed deliveries only the latest status is resent; pending
// jobs go first; a delivery the API failed maxResendAttempts times is
// given up.
func TestResendBacklog(t *testing.T) {
	var r resendMemory
	const hook = "gitlab.example.com/7"
	// Newest first, as GitLab lists them.
	events := []gitlab.HookEvent{
		logged(16, "k6", `{"object_kind":"push"}`, "internal error"),
		logged(15, "k5", `{"object_kind":"build","build_id":3,"build_status":"pending"}`, "502"),
		logged(14, "k4", `{"object_kind":"pipeline","object_attributes":{"id":9,"status":"running"}}`, "502"),
		logged(13, "k3", `{"object_kind":"build","build_id":1,"build_status":"success"}`, "502"),
		logged(12, "k2", `{"object_kind":"build","build_id":2,"build_status":"pending"}`, "502"),
		logged(11, "k1", `{"object_kind":"build","build_id":1,"build_status":"pending"}`, "502"),
	}
	if gaveUp := r.add(hook, events); len(gaveUp) != 0 {
		t.Fatal(gaveUp)
	}
	if c := r.cursor(hook); c != 16 {
		t.Errorf("cursor %d", c)
	}
	var order []int64
	for _, d := range r.queue(hook) {
		order = append(order, d.event.ID)
	}
	if want := []int64{12, 15, 13, 14, 16}; !slices.Equal(order, want) {
		t.Errorf("resend order %v, want %v (pending jobs, other jobs' latest status, pipelines, the rest)", order, want)
	}
	// A pending hook that failed after the job's success changes nothing.
	r.add(hook, []gitlab.HookEvent{logged(17, "k7", `{"object_kind":"build","build_id":1,"build_status":"pending"}`, "502")})
	if q := r.queue(hook); len(q) != 5 {
		t.Errorf("queue %d", len(q))
	}
	// Job 2's delivery fails on every resend: a new event each time, then
	// given up.
	d := r.queue(hook)[0]
	for i := range maxResendAttempts {
		r.done(hook, d, true)
		next := logged(int64(20+i), "k2", `{"object_kind":"build","build_id":2,"build_status":"pending"}`, "500")
		gaveUp := r.add(hook, []gitlab.HookEvent{next})
		if (i == maxResendAttempts-1) != (len(gaveUp) == 1) {
			t.Fatalf("attempt %d: gave up on %v", i+1, gaveUp)
		}
		for _, q := range r.queue(hook) {
			if q.subject.key == "job/2" {
				d = q
			}
		}
	}
	if q := r.queue(hook); len(q) != 4 || q[0].event.ID != 15 {
		t.Errorf("queue after giving up: %+v", q)
	}

	// Five a minute per project; a 429 waits a window out.
	now := time.Now()
	for i := range resendPerWindow {
		if !r.spend("p", now.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("resend %d refused", i+1)
		}
	}
	if r.spend("p", now.Add(10*time.Second)) || !r.spend("q", now) {
		t.Error("the window is per project")
	}
	if !r.spend("p", now.Add(resendWindow)) {
		t.Error("a new window")
	}
	r.block("p", now.Add(3*resendWindow))
	if r.spend("p", now.Add(2*resendWindow+time.Second)) {
		t.Error("blocked after a 429")
	}
}
