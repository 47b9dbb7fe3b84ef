package gitlabtest

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Webhooks go out by themselves at every change the runner API or the
// pipeline engine makes (not at the test-control setters AddJob and
// SetJobStatus): a Job Hook to each project hook with job_events, a
// Pipeline Hook to each with pipeline_events. The payload is rendered at
// the change, so it tells the state of that moment. Each hook has its own
// queue, delivered in order of the changes; GitLab promises no order, but
// an ordered stand-in makes tests readable, and Deliver still serves tests
// of disorder.
//
// Failures count as GitLab's WebHooks::AutoDisabling counts them: after 4
// consecutive failures the hook is disabled for 1 minute, doubling up to a
// day, and after 40 for good; a disabled hook gets nothing and its GET says
// alert_status temporarily_disabled or disabled. WithoutWebhookAutoDisabling
// turns the rule off, as self-managed instances have it by default.
// DropNextDeliveries drops deliveries as GitLab does past a plan's
// web_hook_calls limit. Every delivery made is logged (hookevents.go).

// maxHookBackoff caps the temporary disabling of a failing hook.
const maxHookBackoff = 24 * time.Hour

// DeliveryRecord is one webhook the server sent, or dropped.
type DeliveryRecord struct {
	HookID int64
	URL    string
	// Event is the X-Gitlab-Event: Job Hook or Pipeline Hook.
	Event          string
	IdempotencyKey string
	// Status is the answer's status code; 0 when there was none (Err says
	// why) or the delivery was dropped.
	Status int
	Err    string
	// Dropped: never sent (the hook was disabled, or DropNextDeliveries).
	Dropped bool
	At      time.Time
}

// Deliveries returns every webhook sent or dropped so far, in the order they
// ended.
func (s *Server) Deliveries() []DeliveryRecord {
	d := s.deliveries
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.records)
}

type delivery struct {
	hookID int64
	url    string
	token  string
	event  string
	body   []byte
}

// deliverer holds one queue of deliveries per hook and at most one
// goroutine per non-empty queue.
type deliverer struct {
	s       *Server
	mu      sync.Mutex
	queues  map[int64][]delivery
	busy    map[int64]bool
	records []DeliveryRecord
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	closed  bool
	client  *http.Client
}

func newDeliverer(s *Server) *deliverer {
	ctx, stop := context.WithCancel(context.Background())
	return &deliverer{
		s: s, queues: map[int64][]delivery{}, busy: map[int64]bool{}, ctx: ctx, stop: stop,
		// GitLab waits 10 seconds and does not follow redirects: a 3xx is
		// a success.
		client: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

func (d *deliverer) enqueue(dl delivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.queues[dl.hookID] = append(d.queues[dl.hookID], dl)
	if !d.busy[dl.hookID] {
		d.busy[dl.hookID] = true
		d.wg.Add(1)
		go d.drain(dl.hookID)
	}
}

func (d *deliverer) record(r DeliveryRecord) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records = append(d.records, r)
}

func (d *deliverer) drain(hookID int64) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		q := d.queues[hookID]
		if len(q) == 0 || d.closed {
			delete(d.busy, hookID)
			delete(d.queues, hookID)
			d.mu.Unlock()
			return
		}
		dl := q[0]
		d.queues[hookID] = q[1:]
		d.mu.Unlock()
		d.send(dl)
	}
}

func (d *deliverer) send(dl delivery) {
	// GitLab checks again when the delivery runs: failures of earlier
	// deliveries may have disabled the hook meanwhile.
	if !d.s.hookExecutable(dl.hookID) {
		d.record(DeliveryRecord{HookID: dl.hookID, URL: dl.url, Event: dl.event, Dropped: true, At: time.Now().UTC()})
		return
	}
	d.s.execute(d.ctx, execution{hookID: dl.hookID, url: dl.url, token: dl.token, event: dl.event, body: dl.body})
}

// close abandons queued deliveries, cancels those under way and waits for
// the goroutines.
func (d *deliverer) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.stop()
	d.wg.Wait()
}

// executable is WebHook#executable?. The caller holds s.mu.
func (s *Server) executable(h *hook) bool {
	return !s.autoDisable || (!h.PermanentlyDisabled && (h.DisabledUntil == nil || !h.DisabledUntil.After(s.now())))
}

func (s *Server) hookExecutable(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hooks[id]
	return ok && s.executable(h)
}

// hookOutcome counts a delivery's success or failure against its hook.
func (s *Server) hookOutcome(hookID int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, found := s.hooks[hookID]
	if !found {
		return
	}
	if ok {
		h.RecentFailures, h.BackoffCount, h.DisabledUntil = 0, 0, nil
		return
	}
	h.RecentFailures++
	switch {
	case h.RecentFailures >= 40:
		h.PermanentlyDisabled = true
		h.DisabledUntil = nil
	case h.RecentFailures >= 4:
		backoff := maxHookBackoff
		if h.BackoffCount < 11 {
			backoff = min(time.Minute<<h.BackoffCount, maxHookBackoff)
		}
		until := s.now().UTC().Add(backoff)
		h.DisabledUntil = &until
		h.BackoffCount++
	}
}

// sendHooks queues a webhook to every hook of the project that wants the
// event. The caller holds s.mu.
func (s *Server) sendHooks(projectID int64, event string, wants func(*hook) bool, body []byte) {
	for _, h := range s.sortedHooks(projectID) {
		if !wants(h) {
			continue
		}
		switch {
		case !s.executable(h):
		case s.dropDeliveries > 0:
			s.dropDeliveries--
		case s.faultyHooks.dropAtRandom():
		default:
			s.deliveries.enqueue(delivery{hookID: h.ID, url: h.URL, token: h.Token, event: event, body: body})
			continue
		}
		s.deliveries.record(DeliveryRecord{HookID: h.ID, URL: h.URL, Event: event, Dropped: true, At: s.now().UTC()})
	}
}

// jobChanged sends the Job Hook of a job's new status. The caller holds
// s.mu.
func (s *Server) jobChanged(j *job) {
	if !slices.ContainsFunc(s.sortedHooks(j.ProjectID), func(h *hook) bool { return h.JobEvents }) {
		return
	}
	body := JobHookPayload(s.jobHookSpec(j))
	s.sendHooks(j.ProjectID, EventJob, func(h *hook) bool { return h.JobEvents }, body)
}

// pipelineChanged sends the Pipeline Hook of a pipeline's new status. The
// caller holds s.mu.
func (s *Server) pipelineChanged(p *pipeline) {
	if !slices.ContainsFunc(s.sortedHooks(p.ProjectID), func(h *hook) bool { return h.PipelineEvents }) {
		return
	}
	body := PipelineHookPayload(s.pipelineHookSpec(p))
	s.sendHooks(p.ProjectID, EventPipeline, func(h *hook) bool { return h.PipelineEvents }, body)
}
