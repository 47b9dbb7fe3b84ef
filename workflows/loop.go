package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"
)

// maxPoolHistory and maxPoolEvents make a long-lived workflow (Pool, Gate)
// continue as new well before the server would suggest it, so replaying
// its history stays fast: after that many history events, or that many
// signals, timers and results handled in one run. Tests lower them.
var (
	maxPoolHistory = 4000
	maxPoolEvents  = 1000
)

// runLoop is the run loop that the long-lived workflows of an egg (Pool
// and Gate) share: signals, timers and the outcomes of what they started
// all come through one selector; before each wait the workflow settles
// (decides on what came), after each batch it may publish, and at a quiet
// moment (nothing in flight, nothing pending, every update handler done)
// it continues as new once its history is long enough.
type runLoop struct {
	ctx  workflow.Context
	sel  workflow.Selector
	tick time.Duration
	// inFlight counts activities and child starts whose outcome this run
	// must see before it may continue as new.
	inFlight int
	// handled counts what this run has handled (see maxPoolEvents).
	handled int
	ticking bool
}

// loopHooks are what a workflow on runLoop does at each point of the loop.
type loopHooks struct {
	// settle runs before each wait.
	settle func()
	// tickWanted says whether to start the timer (if it is not running);
	// onTick runs when it fires.
	tickWanted func() bool
	onTick     func()
	// batchDone, when set, runs after each batch of events.
	batchDone func()
	// cancelled runs when the workflow is cancelled, before it returns.
	cancelled func()
	// continueAsNew returns the workflow's continue-as-new error.
	continueAsNew func() error
}

func newRunLoop(ctx workflow.Context, tick time.Duration) *runLoop {
	return &runLoop{ctx: ctx, sel: workflow.NewSelector(ctx), tick: tick}
}

// onSignal calls handle with each signal of that name.
func onSignal[T any](l *runLoop, name string, handle func(T)) {
	l.sel.AddReceive(workflow.GetSignalChannel(l.ctx, name), func(c workflow.ReceiveChannel, _ bool) {
		var v T
		c.Receive(l.ctx, &v)
		handle(v)
	})
}

// await calls done with f once it is ready; the run does not continue as
// new before.
func (l *runLoop) await(f workflow.Future, done func(workflow.Future)) {
	l.inFlight++
	l.sel.AddFuture(f, func(f workflow.Future) {
		l.inFlight--
		done(f)
	})
}

func (l *runLoop) run(h loopHooks) error {
	ctx := l.ctx
	for {
		if !l.ticking && h.tickWanted() {
			l.ticking = true
			l.sel.AddFuture(workflow.NewTimer(ctx, l.tick), func(workflow.Future) {
				l.ticking = false
				h.onTick()
			})
		}
		h.settle()
		l.sel.Select(ctx)
		l.handled++
		// Take whatever else is already there before deciding anything.
		for l.sel.HasPending() && ctx.Err() == nil {
			l.sel.Select(ctx)
			l.handled++
		}
		if h.batchDone != nil {
			h.batchDone()
		}
		if err := ctx.Err(); err != nil {
			h.cancelled()
			return err
		}
		if l.shouldContinueAsNew() {
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			if l.inFlight == 0 && !l.sel.HasPending() {
				return h.continueAsNew()
			}
		}
	}
}

func (l *runLoop) shouldContinueAsNew() bool {
	info := workflow.GetInfo(l.ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > maxPoolHistory || l.handled > maxPoolEvents
}
