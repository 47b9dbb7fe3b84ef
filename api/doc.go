// Package api is MotherGoose's HTTP server (Gin): GitLab webhooks, the REST
// API under /api/v1, /healthz, /readyz and /metrics.
//
// # Webhooks
//
// POST /webhooks/gitlab takes GitLab's project, group and system hooks.
// Checks run in this order; a delivery refused by one of them has no side
// effect:
//
//	401  X-Gitlab-Token is missing, or is neither the webhook secret of an
//	     egg on the host X-Gitlab-Instance names (of any egg without it)
//	     nor the Nest repository's: decided from the headers alone, before
//	     a byte of the body is read
//	413  the body is over the limit (Config.MaxWebhookBody, 1 MiB by
//	     default; gosling server --webhook-body-limit)
//	422  X-Gitlab-Event is missing or names no GitLab event
//	400  the body is not JSON, lacks object_kind or the project ID, or its
//	     object_kind does not fit the event; or a job or pipeline event
//	     names no GitLab instance at all
//	401  a push to the Nest repository without the Nest's own secret, or
//	     another event whose token matches no egg on its GitLab host
//	202  ignored: an event Gosling does not act on, on any project
//	404  a job or pipeline event of a project no egg serves (matched by
//	     the project's ID, never by the path the payload claims)
//	401  the project's egg has another secret
//	404  unknown_job: a job new to Gosling that GitLab does not have in
//	     the project (asked with the egg's token), or a pipeline it does
//	     not have there; audited as webhook-refused
//	409  foreign_job: a job recorded in another project; audited
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
// host, or on any host when the delivery names none, or to the Nest
// repository?) runs before the body is read, so an unauthenticated caller
// costs the server its headers only and learns nothing about which
// projects exist. A push to the Nest repository itself (which need not be
// an egg) must carry the Nest's own webhook secret
// (mothergoose.nest.webhook_secret); it makes MotherGoose apply the head
// of the Nest's branch as GitLab's API reads it, never a commit the
// payload names.
//
// Every effect of a delivery stays inside the egg whose secret
// authenticated it: a job belongs to the project it was first recorded in,
// a job new to Gosling is confirmed in the hook's project through the Jobs
// API with the egg's token before its status counts, a pipeline's builds
// are recorded only when GitLab lists them in that pipeline, and a runner
// failure counts only against the egg's own runner, on a job GitLab says
// ran on it (mothergoose/scope.go). GitLab never sends a hook that fails
// these checks, so refusing one cannot disable a real hook.
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
// carries starts the AddProjectHook workflow, which gives the new project
// the bucket's project hook (job and pipeline events, to the URL the
// delivery came to), audited; the answer is 202 with the workflow's ID.
//
// Projects an egg lists by path are matched by the project ID GitLab
// resolves the path to (when the Nest is applied, or when a hook first
// needs it), so a renamed or transferred project is still served. A
// bucket's group serves a project GitLab places in the group, asked by ID
// with the bucket's token when a hook first names it.
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
// the workflow reads them from the Jobs API; the request path calls GitLab
// to look up a bucket's group and an egg's listed projects (once per egg
// version) and to confirm a job or pipeline new to Gosling (once per job
// or pipeline). A Pipeline Hook records its builds; a Push Hook to the
// Nest repository's branch makes MotherGoose fetch, check and apply the
// Nest at the branch's head. On a served project, a Merge Request Hook is
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
