package contract

import (
	"fmt"
	"strings"

	"github.com/gosling-ci/gosling/fly"
)

// WorkflowAddProjectHook gives a project created in a bucket's group the
// bucket's project hook. A project_create delivery starts it, so that the
// webhook path itself writes nothing to GitLab.
const WorkflowAddProjectHook = "AddProjectHook"

// ProjectHookWorkflowID is the ID of the AddProjectHook workflow of a
// project of a GitLab host: a resent project_create joins the one that
// runs, and one that ran already adds nothing.
func ProjectHookWorkflowID(host string, projectID int64) string {
	return fmt.Sprintf("project-hook/%s/%d", strings.ToLower(host), projectID)
}

// ProjectHookInput names the project and where its hook posts. The bucket's
// spec carries its secrets' URIs, never their values: the activity
// resolves the webhook secret and the API token.
type ProjectHookInput struct {
	// Egg is the bucket whose group holds the project, as the Nest in
	// force when the event came had it.
	Egg fly.Egg `json:"egg"`
	// ProjectID and Path are GitLab's, as the project_create event gave
	// them.
	ProjectID int64  `json:"project_id"`
	Path      string `json:"path"`
	// URL is the webhook endpoint the project_create came to.
	URL string `json:"url"`
}

// ProjectHookResult is the project's hook: the one added, or the one to URL
// that it had already (Existed).
type ProjectHookResult struct {
	HookID  int64 `json:"hook_id"`
	Existed bool  `json:"existed,omitempty"`
}

// Audit actions of AddProjectHook.
const (
	AuditProjectHookAdd    = "project-hook-add"
	AuditProjectHookFailed = "project-hook-failed"
)
