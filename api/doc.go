// Package api is MotherGoose's HTTP server (Gin): GitLab webhooks, the REST
// API under /api/v1, /healthz, /readyz and /metrics.
//
// # Webhooks
//
// POST /webhooks/gitlab takes GitLab's project, group and system hooks.
// Checks run in this order; a delivery refused by one of them has no side
// effect:
//
//	413  the body is over 25 MB
//	422  X-Gitlab-Event is missing or names no GitLab event
//	400  the body is not JSON, lacks object_kind or the project ID, or its
//	     object_kind does not fit the event; or a job or pipeline event
//	     names no GitLab instance at all
//	401  X-Gitlab-Token is missing or matches no egg on that GitLab host
//	202  ignored: an event Gosling does not act on, on any project
//	404  a job or pipeline event of a project no egg serves
//	401  the project's egg has another secret
//	503  the secret backend, the store or a GitLab lookup cannot be reached
//
// DecodeDelivery reads the project and the instance from every field
// GitLab has used: project.path_with_namespace, the top-level
// path_with_namespace of project events, the path of project.web_url,
// repository.homepage or git_http_url below the instance's base URL, and
// project_name where it is a path rather than a display name. The GitLab
// host is the host of X-Gitlab-Instance, or of those URLs for instances that
// do not send it (old ones send Build Hook without it). Tokens are compared
// in constant time. The first token check (does it belong to any egg on the
// host, or on any host when the delivery names none?) runs before anything
// else is looked at, so an unauthenticated caller learns nothing about
// which projects exist. A push to the Nest repository itself (which need
// not be an egg) is authenticated by the first check alone.
//
// Events GitLab sends that Gosling does not act on (Tag Push Hook, Issue
// Hook, pushes and merge requests of projects no egg serves, group and
// system events, ...) are answered 202 {"status":"ignored"} once the
// first token check passed, whatever the project: GitLab counts every
// non-2xx answer as a failure and disables a hook after four in a row, so
// refusing an event someone ticked by mistake would also stop the job
// events. A header that is no GitLab event at all is a broken client and
// gets 422. One of them is acted on: a project_create (group or system
// hook) for a project in the group of a bucket whose secret the delivery
// carries gives the new project the bucket's project hook (job and
// pipeline events, to the URL the delivery came to), audited, and 202.
//
// Projects an egg lists by path are matched by the project ID GitLab
// resolves the path to (when the Nest is applied, or when a hook first
// needs it), so a renamed or transferred project is still served.
//
// Accepted deliveries are deduplicated on Idempotency-Key, which GitLab
// keeps across retries and manual resends (without it, on a key derived from
// the event, its object, status and X-Gitlab-Event-UUID): a duplicate gets
// 200 {"status":"duplicate"} and does nothing. If processing then fails
// with a 5xx, the key is forgotten so a resend is processed.
//
// What a delivery does is MotherGoose's (mothergoose.Receive): a Job Hook
// is recorded in the job history, which never goes back (GitLab delivers
// out of order, and a status behind the one the job reached, such as a
// running after its success, changes nothing and reaches no workflow); at
// build_status "pending" the job's egg's Pool workflow (VM eggs, ID
// contract.PoolWorkflowID) or Gate workflow (serverless eggs, ID
// contract.GateWorkflowID, which starts the job's own ProvisionRunner,
// ID contract.RunnerWorkflowID, within max_concurrent) is
// signalled-with-start; later statuses are signalled to the same
// workflow. Job hooks carry no tags:
// the workflow reads them from the Jobs API, so the request path calls
// GitLab only to look up a bucket's group and an egg's listed projects,
// once per egg version. A Pipeline Hook records its builds; a Push Hook to
// the Nest repository's branch makes MotherGoose fetch, check and apply the
// Nest at the pushed commit. On a served project, a Merge Request Hook is
// recorded in the audit log (with its head pipeline; a Pipeline Hook of a
// merge request pipeline records which one it runs for), and a push, a
// merge request opened or given commits and a pipeline's created jobs are
// announced to the egg's pool when its apex.warm_for is set
// (contract.SignalPoolWarm), so it promotes Nadir runners ahead of them.
// A push or merge request must carry the project's egg's token.
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
