// Package api is MotherGoose's HTTP server (Gin): GitLab webhooks, the REST
// API under /api/v1, /healthz, /readyz and /metrics.
//
// # Webhooks
//
// POST /webhooks/gitlab takes GitLab's project (and group) hooks. Checks run
// in this order; a delivery refused by one of them has no side effect:
//
//	413  the body is over 25 MB
//	422  X-Gitlab-Event is missing or names no GitLab event
//	400  the body is not JSON, lacks object_kind or the project ID, or its
//	     object_kind does not fit the event
//	401  X-Gitlab-Token is missing or matches no egg on that GitLab host
//	404  the token is some egg's, but no egg claims the project
//	401  the project's egg has another secret
//	503  the secret backend or the store cannot be reached
//
// The GitLab host is the host of X-Gitlab-Instance, or of project.web_url for
// instances that do not send it. Tokens are compared in constant time. The
// first token check (does it belong to any egg on the host?) runs before the
// project is matched, so an unauthenticated caller learns nothing about
// which projects exist. A push to the Nest repository itself (which need not
// be an egg) is authenticated by the first check alone.
//
// Events GitLab sends that Gosling does not act on (Merge Request Hook, Tag
// Push Hook, Issue Hook, ...) are answered 202 {"status":"ignored"} once
// authenticated, not 4xx: GitLab counts every non-2xx answer as a failure
// and disables a hook after four in a row, so refusing an event someone
// ticked by mistake would also stop the job events. A header that is no
// GitLab event at all is a broken client and gets 422.
//
// Accepted deliveries are deduplicated on Idempotency-Key, which GitLab
// keeps across retries and manual resends (without it, on a key derived from
// the event, its object, status and X-Gitlab-Event-UUID): a duplicate gets
// 200 {"status":"duplicate"} and does nothing. If processing then fails
// with a 5xx, the key is forgotten so a resend is processed.
//
// What a delivery does is MotherGoose's (mothergoose.Receive): a Job Hook
// is recorded in the job history; at build_status "pending" the job's
// egg's Pool workflow (VM eggs, ID contract.PoolWorkflowID) or the job's
// own ProvisionRunner (serverless eggs, ID contract.RunnerWorkflowID) is
// signalled-with-start; later statuses are signalled to the same workflow.
// Job hooks carry no tags: the workflow reads them from the Jobs API, so
// the request path calls GitLab only to look up a bucket's group, once per
// egg version. A Pipeline Hook records its builds; a Push Hook to the Nest
// repository's branch makes MotherGoose fetch, check and apply the Nest at
// the pushed commit.
//
// When Temporal cannot be reached in time, the call is written to the store's
// outbox and the answer is 202 {"status":"queued","outbox_id":N}: nothing
// accepted is lost; MotherGoose's outbox dispatcher replays it in order
// once Temporal answers again.
//
// # REST API
//
// Routes under /api/v1 need Authorization: Bearer <token>, compared in
// constant time with the configured tokens (resolved through the secret
// backends, cached briefly). Without configured tokens the REST API answers
// 503. GET /api/v1/openapi.json describes every route. Errors are
// {"error": "...", "detail": "..."}.
package api
