package activities

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/activity"
)

// AuditSecretAccess is the audit action of a secret backend call.
const AuditSecretAccess = "secret-access"

// DefaultSecretAuditWindow is how long repeated successful reads of one
// URI by one actor are folded into the record of the first.
const DefaultSecretAuditWindow = time.Minute

// SecretAudit appends the secret backend calls a resolver reports (see
// secretstore.Resolver.Observe) to the audit log: who, which URI, when, and
// whether it worked; never the value. Writes, deletes and failures are
// always recorded; a successful read is recorded at most once per Window
// for each actor and URI, the next record counting the reads left out, so
// a scheme with its cache turned off cannot flood the log.
type SecretAudit struct {
	Store store.Store
	// Actor is recorded when the call's context names none
	// (secretstore.WithActor).
	Actor string
	// Window folds repeated reads (DefaultSecretAuditWindow when zero).
	Window time.Duration
	Logger *slog.Logger

	mu    sync.Mutex
	reads map[string]*readMark // actor + URI -> last recorded read
}

type readMark struct {
	at      time.Time
	skipped int
}

// maxReadMarks bounds the remembered reads; older marks are dropped first.
const maxReadMarks = 4096

// NewSecretAudit returns an observer appending to st as actor.
func NewSecretAudit(st store.Store, actor string, log *slog.Logger) *SecretAudit {
	return &SecretAudit{Store: st, Actor: actor, Logger: log}
}

// SecretAccessed records e unless it is a read folded into an earlier one.
func (a *SecretAudit) SecretAccessed(ctx context.Context, e secretstore.AccessEvent) {
	actor := e.Actor
	if actor == "" {
		actor = a.Actor
	}
	reason := e.Op + " " + e.URI + ": "
	if e.OK() {
		reason += "ok"
	} else {
		reason += "failed: " + e.Err.Error()
	}
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		reason += fmt.Sprintf(" (activity %s of workflow %s)", info.ActivityType.Name, info.WorkflowExecution.ID)
	}
	if e.Op == "get" && e.OK() {
		skipped, record := a.foldRead(actor+"\x00"+e.URI, e.At)
		if !record {
			return
		}
		if skipped > 0 {
			reason += fmt.Sprintf("; %d more reads since the last record", skipped)
		}
	}
	// The caller may be cancelled right after its call; its record is
	// still written.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := a.Store.AppendAudit(wctx, store.AuditRecord{At: e.At, Actor: actor, Action: AuditSecretAccess, Reason: reason}); err != nil && a.Logger != nil {
		a.Logger.Warn("record secret access", "uri", e.URI, "op", e.Op, "error", err)
	}
}

// foldRead tells whether a successful read at `at` is recorded, and how
// many reads were left out before it.
func (a *SecretAudit) foldRead(key string, at time.Time) (skipped int, record bool) {
	window := a.Window
	if window <= 0 {
		window = DefaultSecretAuditWindow
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reads == nil {
		a.reads = map[string]*readMark{}
	}
	if m, ok := a.reads[key]; ok {
		if at.Sub(m.at) < window {
			m.skipped++
			return 0, false
		}
		skipped = m.skipped
	}
	if len(a.reads) >= maxReadMarks {
		for k, m := range a.reads {
			if at.Sub(m.at) >= window {
				delete(a.reads, k)
			}
		}
	}
	a.reads[key] = &readMark{at: at}
	return skipped, true
}
