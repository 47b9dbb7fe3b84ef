package contract

import (
	"time"

	"github.com/gosling-ci/gosling/fly"
)

// SweepInput is one sweep of one egg (see mothergoose.SweepEgg). Applying
// the Nest writes the egg's spec into its sweep Schedule, so a sweep never
// reads a Nest that may be older than the one in force.
type SweepInput struct {
	Egg fly.Egg `json:"egg"`
	// Providers are the MG block's runner providers, for dispatch.
	Providers map[string]fly.Provider `json:"providers"`
	// WebhookURL is where the egg's project hooks post; empty leaves
	// hooks alone.
	WebhookURL string `json:"webhook_url,omitempty"`
	// Interval is the sweep's period; a job recorded as pending longer
	// than StaleAfter (default three intervals) whose runner GitLab still
	// has not seen is sent again.
	Interval   time.Duration `json:"interval"`
	StaleAfter time.Duration `json:"stale_after,omitempty"`
	// Concurrency bounds the projects looked at in parallel (default 4).
	Concurrency int `json:"concurrency,omitempty"`
	// SkipResend leaves GitLab's log of failed deliveries alone, and
	// SkipPendingJobs the Jobs API's pending jobs (MG/config.fly sweep
	// block: resend_failed, pending_jobs).
	SkipResend      bool `json:"skip_resend,omitempty"`
	SkipPendingJobs bool `json:"skip_pending_jobs,omitempty"`
}

// SweepResult is what one sweep saw and did.
type SweepResult struct {
	Egg      string `json:"egg"`
	Projects int    `json:"projects"`
	// Pending counts the pending jobs listed; Found those served because no
	// hook had brought them, Resent those whose demand was stale and was
	// sent again, Foreign those whose tags the egg's runners do not carry.
	Pending int `json:"pending"`
	Found   int `json:"found"`
	Resent  int `json:"resent"`
	Foreign int `json:"foreign"`
	// Hooks made, re-enabled, repaired, and still disabled.
	HooksCreated  int `json:"hooks_created,omitempty"`
	HooksEnabled  int `json:"hooks_enabled,omitempty"`
	HooksRepaired int `json:"hooks_repaired,omitempty"`
	HooksDisabled int `json:"hooks_disabled,omitempty"`
	// Redelivered counts failed deliveries resent from GitLab's delivery
	// log that the API accepted, RedeliveryFailed those that failed again
	// (or that it refused), RedeliveryWaiting those left for the next
	// pass (GitLab's rate limit), RedeliveryGaveUp those given up.
	Redelivered       int           `json:"redelivered,omitempty"`
	RedeliveryFailed  int           `json:"redelivery_failed,omitempty"`
	RedeliveryWaiting int           `json:"redelivery_waiting,omitempty"`
	RedeliveryGaveUp  int           `json:"redelivery_gave_up,omitempty"`
	APICalls          int           `json:"api_calls"`
	OldestPending     time.Duration `json:"oldest_pending,omitempty"`
	Errors            []string      `json:"errors,omitempty"`
}
