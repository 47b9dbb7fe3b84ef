package agent_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// imdsStandIn is a STAND-IN for the EC2 instance metadata service with
// IMDSv2 required (http_tokens = "required", as the aws/vm module sets):
// PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1 to
// 21600) gives a session token; a metadata GET without a valid token is
// 401; spot/instance-action is 404 until the notice, then 200 with
// {"action", "time"}.
type imdsStandIn struct {
	srv    *httptest.Server
	mu     sync.Mutex
	tokens []string
	notice string
}

func newIMDS(t *testing.T) *imdsStandIn {
	m := &imdsStandIn{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			ttl := r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds")
			if ttl == "" || ttl == "0" || len(ttl) > 5 {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			tok := "AQAEA-" + time.Now().Format("150405.000000000")
			m.tokens = append(m.tokens, tok)
			_, _ = w.Write([]byte(tok))
		case r.Method == http.MethodGet && r.URL.Path == "/latest/meta-data/spot/instance-action":
			if !slices.Contains(m.tokens, r.Header.Get("X-aws-ec2-metadata-token")) {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			if m.notice == "" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte(m.notice))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *imdsStandIn) give(notice string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notice = notice
}

func (f *fakeMG) interrupted() []agentapi.Interruption {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.interruptions)
}

// An EC2 Spot instance's agent polls the interruption notice (IMDSv2);
// when it comes, gitlab-runner takes no new job, and MotherGoose is told
// with the job that was running, AWS's action and deadline.
func TestAgentReportsSpotNotice(t *testing.T) {
	r := newRig(t)
	imds := newIMDS(t)
	r.cfg.Interrupt = &agentapi.InterruptConfig{Capacity: "spot", MetadataURL: imds.srv.URL, PollSeconds: 1}
	r.launch(agent.LaunchOptions{})
	waitFor(t, "ready", time.Minute, func() bool { ready, _, _ := r.mg.snapshot(); return len(ready) > 0 })
	p := r.pipeline(gitlabtest.JobSpec{Name: "long", Script: []string{"sleep 600"}})
	jobID := r.gl.PipelineJobs(p.ID)[0].ID
	waitFor(t, "the job reported running", time.Minute, func() bool { return len(r.mg.jobStatuses(jobID)) > 0 })
	if n := r.mg.interrupted(); len(n) != 0 {
		t.Fatalf("interruption reported before the notice: %+v", n)
	}
	imds.give(`{"action": "terminate", "time": "2026-12-08T01:22:00Z"}`)
	waitFor(t, "the interruption reported", time.Minute, func() bool { return len(r.mg.interrupted()) > 0 })
	n := r.mg.interrupted()[0]
	if n.Source != agentapi.InterruptAWSSpot || n.Action != "terminate" || !n.Deadline.Equal(time.Date(2026, 12, 8, 1, 22, 0, 0, time.UTC)) ||
		!slices.Equal(n.Jobs, []int64{jobID}) {
		t.Errorf("interruption = %+v, want aws-spot terminate with job %d", n, jobID)
	}
	// No new job is taken: a second pipeline's job stays pending.
	p2 := r.pipeline(gitlabtest.JobSpec{Name: "next", Script: []string{"true"}})
	next := r.gl.PipelineJobs(p2.ID)[0].ID
	time.Sleep(3 * time.Second)
	if j, _ := r.gl.Job(next); j.Status != "pending" {
		t.Errorf("a job after the notice is %s, want pending (no runner takes it)", j.Status)
	}
	if n := r.mg.interrupted(); len(n) != 1 {
		t.Errorf("%d interruptions reported, want 1", len(n))
	}
}

// A preemptible machine shut down while serving without being asked
// (SIGTERM: Compute Cloud's ACPI shutdown, a Fargate Spot task's stop;
// agent.Interrupt plays it locally) reports an interruption with its
// running job, and is gone after the grace; a shutdown Gosling asks for
// (Stop) reports none, and an on-demand machine cannot be interrupted.
func TestAgentReportsUnaskedShutdown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		capacity  string
		interrupt bool
	}{
		{"preemptible interrupted", "preemptible", true},
		{"preemptible stopped by Gosling", "preemptible", false},
		{"on demand", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			if tc.capacity != "" {
				r.cfg.Interrupt = &agentapi.InterruptConfig{Capacity: tc.capacity}
			}
			r.launch(agent.LaunchOptions{})
			waitFor(t, "ready", time.Minute, func() bool { ready, _, _ := r.mg.snapshot(); return len(ready) > 0 })
			p := r.pipeline(gitlabtest.JobSpec{Name: "long", Script: []string{"sleep 600"}})
			jobID := r.gl.PipelineJobs(p.ID)[0].ID
			waitFor(t, "the job reported running", time.Minute, func() bool { return len(r.mg.jobStatuses(jobID)) > 0 })
			var err error
			if tc.interrupt {
				err = agent.Interrupt(r.dir, 2*time.Second)
			} else {
				err = agent.Stop(r.dir, 2*time.Second)
			}
			got := r.mg.interrupted()
			switch {
			case tc.capacity == "":
				if !errors.Is(err, agent.ErrNotInterruptible) || len(got) != 0 {
					t.Errorf("on demand: %v, reported %+v", err, got)
				}
			case !tc.interrupt:
				if err != nil || len(got) != 0 {
					t.Errorf("Gosling's stop: %v, reported %+v", err, got)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 1 || got[0].Source != agentapi.InterruptShutdown || !slices.Equal(got[0].Jobs, []int64{jobID}) {
					t.Errorf("interruptions = %+v, want one shutdown with job %d", got, jobID)
				}
				if s := agent.Inspect(r.dir); s.Alive {
					t.Errorf("the machine lives on after its interruption: %+v", s)
				}
			}
		})
	}
}
