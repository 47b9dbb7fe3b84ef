package mothergoose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/internal/store"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

// Intent kinds.
const (
	IntentSignalWithStart = "signal-with-start"
	IntentSignal          = "signal"
	IntentStart           = "start"
)

// Intent is one call to Temporal in a form the outbox can keep: the
// arguments are JSON, exactly the payloads Temporal's default converter
// would make of the typed values. Workflows start with
// contract.StartOptions(WorkflowID).
type Intent struct {
	Kind       string          `json:"kind"`
	WorkflowID string          `json:"workflow_id"`
	Signal     string          `json:"signal"`
	SignalArg  json.RawMessage `json:"signal_arg"`
	// Workflow and Input are the workflow type and its input, for
	// start and signal-with-start.
	Workflow string          `json:"workflow,omitempty"`
	Input    json.RawMessage `json:"input,omitempty"`
}

// SignalIntent is a signal to a running workflow.
func SignalIntent(workflowID, signal string, arg any) (Intent, error) {
	b, err := json.Marshal(arg)
	if err != nil {
		return Intent{}, fmt.Errorf("encode signal %s: %w", signal, err)
	}
	return Intent{Kind: IntentSignal, WorkflowID: workflowID, Signal: signal, SignalArg: b}, nil
}

// StartIntent starts a workflow unless one with its ID runs, or ran and
// did not fail (contract.StartOptions, with failed runs started again).
func StartIntent(workflowID, workflow string, input any) (Intent, error) {
	b, err := json.Marshal(input)
	if err != nil {
		return Intent{}, fmt.Errorf("encode input of %s: %w", workflow, err)
	}
	return Intent{Kind: IntentStart, WorkflowID: workflowID, Workflow: workflow, Input: b}, nil
}

// SignalWithStartIntent signals a workflow, starting it with input first if
// it is not running. workflow is the workflow's type name (contract.Workflow...).
func SignalWithStartIntent(workflowID, signal string, arg any, workflow string, input any) (Intent, error) {
	in, err := SignalIntent(workflowID, signal, arg)
	if err != nil {
		return Intent{}, err
	}
	name := workflow
	if in.Input, err = json.Marshal(input); err != nil {
		return Intent{}, fmt.Errorf("encode input of %s: %w", name, err)
	}
	in.Kind, in.Workflow = IntentSignalWithStart, name
	return in, nil
}

// outcome is how a Temporal call ended, when it did not fail.
type outcome string

const (
	outcomeDone outcome = "done"
	// outcomeNoWorkflow: a signal found no running workflow (not ours, or
	// finished): there is nothing to tell.
	outcomeNoWorkflow outcome = "no-workflow"
	// outcomeFinished: signal-with-start found the workflow closed; its ID
	// is not reused, so the job's runner was made before.
	outcomeFinished outcome = "finished"
)

// call makes the Temporal call an intent describes.
func call(ctx context.Context, c client.Client, in Intent) (outcome, error) {
	if c == nil {
		return "", errNoTemporal
	}
	var err error
	switch in.Kind {
	case IntentSignal:
		err = c.SignalWorkflow(ctx, in.WorkflowID, "", in.Signal, in.SignalArg)
	case IntentSignalWithStart:
		_, err = c.SignalWithStartWorkflow(ctx, in.WorkflowID, in.Signal, in.SignalArg,
			contract.StartOptions(in.WorkflowID), in.Workflow, in.Input)
	case IntentStart:
		opts := contract.StartOptions(in.WorkflowID)
		opts.WorkflowIDReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY
		opts.WorkflowExecutionErrorWhenAlreadyStarted = true
		_, err = c.ExecuteWorkflow(ctx, opts, in.Workflow, in.Input)
	default:
		return "", fmt.Errorf("unknown intent kind %q", in.Kind)
	}
	var notFound *serviceerror.NotFound
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case err == nil:
		return outcomeDone, nil
	case in.Kind == IntentSignal && errors.As(err, &notFound):
		return outcomeNoWorkflow, nil
	case in.Kind != IntentSignal && errors.As(err, &started):
		return outcomeFinished, nil
	}
	return "", fmt.Errorf("%s %s: %w", in.Kind, in.WorkflowID, err)
}

// Outbox backoff: the first retry after about a second, doubling up to
// Config.OutboxMaxBackoff.
const outboxFirstBackoff = time.Second

func (m *deps) outboxBackoff(attempts int) time.Duration {
	d := outboxFirstBackoff
	for i := 1; i < attempts && d < m.cfg.OutboxMaxBackoff; i++ {
		d *= 2
	}
	return min(d, m.cfg.OutboxMaxBackoff)
}

// enqueue writes an intent to the outbox.
func (m *deps) enqueue(ctx context.Context, in Intent, cause error) (int64, error) {
	payload, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	id, err := m.store.EnqueueOutbox(ctx, store.OutboxEntry{Kind: in.Kind, Key: in.WorkflowID, Payload: payload, CreatedAt: m.now()})
	if err != nil {
		return 0, err
	}
	attrs := []any{"outbox_id", id, "kind", in.Kind, "workflow_id", in.WorkflowID}
	if cause != nil {
		attrs = append(attrs, "cause", cause.Error())
	}
	m.log.WarnContext(ctx, "temporal call queued in the outbox", attrs...)
	return id, nil
}

// outboxBatch bounds the entries one store read returns.
const outboxBatch = 100

// pruneEvery is how often RunOutbox prunes old delivery keys.
const pruneEvery = time.Hour

// RunOutbox delivers the outbox's due entries, oldest first, until ctx
// ends. An entry that fails because Temporal is unreachable is retried
// with exponential backoff, and nothing after it is tried before it, so
// entries are delivered in the order they were accepted. Run it in one
// goroutine per process; with several processes an entry may be delivered
// twice, which signal-with-start and job-status signals tolerate. It also
// prunes webhook delivery keys and delivered entries older than
// Config.DeliveryRetention, hourly.
func (m *deps) RunOutbox(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var pruned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if now := m.now(); now.Sub(pruned) >= pruneEvery {
			pruned = now
			if n, err := m.store.PruneDeliveries(ctx, now.Add(-m.cfg.DeliveryRetention)); err != nil {
				if ctx.Err() == nil {
					m.log.ErrorContext(ctx, "prune webhook deliveries", "error", err)
				}
			} else if n > 0 {
				m.log.InfoContext(ctx, "pruned webhook deliveries", "count", n)
			}
			if n, err := m.store.PruneOutbox(ctx, now.Add(-m.cfg.DeliveryRetention)); err != nil {
				if ctx.Err() == nil {
					m.log.ErrorContext(ctx, "prune delivered outbox entries", "error", err)
				}
			} else if n > 0 {
				m.log.InfoContext(ctx, "pruned delivered outbox entries", "count", n)
			}
		}
		timer.Reset(m.drainOutbox(ctx))
	}
}

// drainOutbox delivers what is due and returns how long to wait before
// looking again.
func (m *deps) drainOutbox(ctx context.Context) time.Duration {
	for ctx.Err() == nil {
		entries, err := m.store.DueOutbox(ctx, m.now(), outboxBatch)
		if err != nil {
			if ctx.Err() == nil {
				m.log.ErrorContext(ctx, "outbox: read due entries", "error", err)
			}
			return m.cfg.OutboxInterval
		}
		if len(entries) == 0 {
			return m.cfg.OutboxInterval
		}
		for _, e := range entries {
			if ctx.Err() != nil {
				return 0
			}
			if wait, stop := m.deliverEntry(ctx, e); stop {
				return wait
			}
		}
		if len(entries) < outboxBatch {
			return m.cfg.OutboxInterval
		}
	}
	return 0
}

// deliverEntry replays one entry. stop says the round must end (Temporal
// is unreachable) and wait how long until the entry is due again.
func (m *deps) deliverEntry(ctx context.Context, e store.OutboxEntry) (wait time.Duration, stop bool) {
	var in Intent
	err := json.Unmarshal(e.Payload, &in)
	var res outcome
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, m.cfg.TemporalTimeout)
		res, err = call(cctx, m.Temporal(), in)
		cancel()
	}
	if ctx.Err() != nil {
		return 0, true
	}
	if err == nil {
		m.metrics.ObserveOutbox("delivered")
		if merr := m.store.MarkOutboxDelivered(ctx, e.ID, m.now()); merr != nil {
			// The call was made; replaying it once more is harmless.
			m.log.ErrorContext(ctx, "outbox: mark delivered", "outbox_id", e.ID, "error", merr)
			return m.cfg.OutboxInterval, true
		}
		m.log.InfoContext(ctx, "outbox entry delivered", "outbox_id", e.ID, "kind", e.Kind, "workflow_id", e.Key, "outcome", string(res), "attempts", e.Attempts+1)
		return 0, false
	}
	m.metrics.ObserveOutbox("retry")
	backoff := m.outboxBackoff(e.Attempts + 1)
	if merr := m.store.MarkOutboxFailed(ctx, e.ID, truncate(err.Error(), 1000), m.now().Add(backoff)); merr != nil {
		m.log.ErrorContext(ctx, "outbox: mark failed", "outbox_id", e.ID, "error", merr)
		return m.cfg.OutboxInterval, true
	}
	if Unreachable(err) {
		m.log.WarnContext(ctx, "outbox: temporal unreachable, retrying later", "outbox_id", e.ID, "retry_in", backoff.String(), "error", err)
		return backoff, true
	}
	// Temporal refused this entry; the others may still go through.
	m.log.ErrorContext(ctx, "outbox: temporal refused an entry, retrying later", "outbox_id", e.ID, "workflow_id", e.Key, "retry_in", backoff.String(), "error", err)
	return 0, false
}

// deliver makes an intent's Temporal call, or queues it in the outbox when
// Temporal cannot be reached in time, or when earlier calls about the same
// workflow wait there (they go first).
func (m *deps) deliver(ctx context.Context, in Intent) (*Result, error) {
	queue := func(cause error) (*Result, error) {
		id, err := m.enqueue(ctx, in, cause)
		if err != nil {
			return nil, unavailable("temporal and store unavailable", "the event could be neither delivered nor queued; resend it", err)
		}
		return &Result{Status: StatusQueued, WorkflowID: in.WorkflowID, OutboxID: id}, nil
	}
	pending, err := m.store.OutboxPending(ctx, in.WorkflowID)
	if err != nil {
		return nil, unavailable("store unavailable", "resend the event", err)
	}
	if pending {
		return queue(nil)
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.TemporalTimeout)
	defer cancel()
	res, err := call(cctx, m.Temporal(), in)
	switch {
	case err != nil && Unreachable(err):
		return queue(err)
	case err != nil:
		return nil, err
	}
	resp := &Result{Status: StatusAccepted, WorkflowID: in.WorkflowID}
	switch res {
	case outcomeNoWorkflow:
		resp.Reason = "no workflow is waiting for this job"
	case outcomeFinished:
		resp.Reason = "its workflow has finished already"
	}
	return resp, nil
}
