package gitlabtest

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
)

// A hook's own endpoints, as GitLab serves them (docs.gitlab.com/api/
// project_webhooks): GET and PUT /projects/:id/hooks/:hook_id, and POST
// /projects/:id/hooks/:hook_id/test/:trigger, which delivers a test event
// at once. Saving a hook (PUT) clears its failure record, and a test
// delivery that the endpoint accepts does too: both re-enable a hook that
// WebHooks::AutoDisabling disabled. A failed test delivery counts as a
// failure and is answered 422.
//
// Faults for tests of delivery health: DropDeliveriesAtRandom loses a share
// of the deliveries (seeded, so a run can be repeated), and
// FailNextDeliveries makes a hook's next deliveries fail as if the
// endpoint were down, so GitLab's rule disables the hook.

// errInjectedFailure is the error of a delivery failed by FailNextDeliveries.
var errInjectedFailure = errors.New("injected delivery failure (FailNextDeliveries)")

// deliveryFaults are the armed delivery faults.
type deliveryFaults struct {
	mu       sync.Mutex
	dropRate float64
	rng      *rand.Rand
	dropped  int
	failNext map[int64]int
}

// dropAtRandom says whether to lose the delivery at hand.
func (f *deliveryFaults) dropAtRandom() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng == nil || f.dropRate <= 0 || f.rng.Float64() >= f.dropRate {
		return false
	}
	f.dropped++
	return true
}

// DropDeliveriesAtRandom loses each later webhook delivery with probability
// rate (0 to 1), drawn from a generator seeded with seed, as deliveries
// vanish past a plan's web_hook_calls limit or on the way. A rate of 0
// stops it. Deliveries records the lost ones as Dropped.
func (s *Server) DropDeliveriesAtRandom(rate float64, seed uint64) {
	f := &s.faultyHooks
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropRate = rate
	f.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// DroppedAtRandom counts the deliveries DropDeliveriesAtRandom lost.
func (s *Server) DroppedAtRandom() int {
	f := &s.faultyHooks
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

// FailNextDeliveries makes the next times deliveries to a hook fail as if
// its endpoint did not answer: each counts against the hook, so 4 in a row
// disable it for a minute and 40 for good, as GitLab does.
func (s *Server) FailNextDeliveries(hookID int64, times int) {
	f := &s.faultyHooks
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext == nil {
		f.failNext = map[int64]int{}
	}
	f.failNext[hookID] += max(times, 0)
}

func (s *Server) takeDeliveryFailure(hookID int64) bool {
	f := &s.faultyHooks
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext[hookID] <= 0 {
		return false
	}
	f.failNext[hookID]--
	return true
}

// lookupHook finds the hook of the path's project; the caller holds s.mu.
func (s *Server) lookupHook(w http.ResponseWriter, r *http.Request) (*hook, bool) {
	p, ok := s.lookupProject(w, r)
	if !ok {
		return nil, false
	}
	id, ok := pathID(w, r, "hook_id")
	if !ok {
		return nil, false
	}
	h, found := s.hooks[id]
	if !found || h.ProjectID != p.ID {
		writeMessage(w, http.StatusNotFound, "404 Not found")
		return nil, false
	}
	return h, true
}

func (s *Server) getProjectHook(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.lookupHook(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.hookToJSON(h))
}

// testProjectHook is POST /projects/:id/hooks/:hook_id/test/:trigger: it
// delivers the project's latest job (job_events), pipeline
// (pipeline_events) or a push (push_events) to the hook now, whether the
// hook is disabled or not, and answers 201 when the endpoint accepted it.
func (s *Server) testProjectHook(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	h, ok := s.lookupHook(w, r)
	if !ok {
		s.mu.Unlock()
		return
	}
	var event string
	var body []byte
	switch trigger := r.PathValue("trigger"); trigger {
	case "job_events":
		jobs := s.projectJobs(h.ProjectID)
		if len(jobs) == 0 {
			s.mu.Unlock()
			writeMessage(w, http.StatusUnprocessableEntity, "Ensure the project has CI jobs.")
			return
		}
		event, body = EventJob, JobHookPayload(s.jobHookSpec(jobs[0]))
	case "pipeline_events":
		var latest *pipeline
		for _, p := range s.pipelines {
			if p.ProjectID == h.ProjectID && (latest == nil || p.ID > latest.ID) {
				latest = p
			}
		}
		if latest == nil {
			s.mu.Unlock()
			writeMessage(w, http.StatusUnprocessableEntity, "Ensure the project has CI pipelines.")
			return
		}
		event, body = EventPipeline, PipelineHookPayload(s.pipelineHookSpec(latest))
	case "push_events":
		pr := s.projects[h.ProjectID]
		event, body = EventPush, PushHookPayload(PushHookSpec{Project: HookProject{ID: pr.ID, PathWithNamespace: pr.PathWithNamespace, BaseURL: s.URL()}})
	default:
		s.mu.Unlock()
		writeParamError(w, "trigger does not have a valid value")
		return
	}
	hookID, hookURL, token := h.ID, h.URL, h.Token
	s.mu.Unlock()

	rec := s.execute(r.Context(), execution{hookID: hookID, url: hookURL, token: token, event: event, body: body})
	ok = rec.Status >= 200 && rec.Status < 400
	if ok {
		// GitLab's enable! clears a permanent disabling too.
		s.mu.Lock()
		if h := s.hooks[hookID]; h != nil {
			h.PermanentlyDisabled = false
		}
		s.mu.Unlock()
	}
	if !ok {
		writeMessage(w, http.StatusUnprocessableEntity, "Hook execution failed: "+cmp.Or(rec.Err, http.StatusText(rec.Status)))
		return
	}
	writeMessage(w, http.StatusCreated, "201 Created")
}

// projectJobs are a project's jobs, newest first. The caller holds s.mu.
func (s *Server) projectJobs(projectID int64) []*job {
	var out []*job
	for _, j := range s.jobs {
		if j.ProjectID == projectID {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b *job) int { return cmp.Compare(b.ID, a.ID) })
	return out
}
