package gitlabtest

import (
	"fmt"
	"time"
)

// HookMergeRequest is the merge request a Merge Request Hook (or a merge
// request pipeline's Pipeline Hook) names.
type HookMergeRequest struct {
	ID           int64
	IID          int64
	Title        string
	SourceBranch string
	TargetBranch string // main when empty
	State        string // opened when empty
}

func (mr HookMergeRequest) url(p HookProject) string {
	return fmt.Sprintf("%s/%s/-/merge_requests/%d", p.base(), p.PathWithNamespace, mr.IID)
}

// pipelineJSON is the merge_request object of a Pipeline Hook, as
// GitLab's pipeline hook builder writes it.
func (mr HookMergeRequest) pipelineJSON(p HookProject) map[string]any {
	return map[string]any{
		"id": mr.ID, "iid": mr.IID, "title": mr.Title, "source_branch": mr.SourceBranch, "source_project_id": p.ID,
		"target_branch": mr.target(), "target_project_id": p.ID, "state": mr.state(), "merge_status": "can_be_merged",
		"detailed_merge_status": "mergeable", "url": mr.url(p),
	}
}

func (mr HookMergeRequest) target() string {
	if mr.TargetBranch == "" {
		return "main"
	}
	return mr.TargetBranch
}

func (mr HookMergeRequest) state() string {
	if mr.State == "" {
		return "opened"
	}
	return mr.State
}

// MergeRequestHookSpec describes a Merge Request Hook.
type MergeRequestHookSpec struct {
	Project      HookProject
	MergeRequest HookMergeRequest
	// Action is open, reopen, update, close, merge, approved, ...
	Action string
	// LastCommit is the source branch's head SHA; OldRev, on an update
	// that brought commits, the previous head ("" leaves it out, as
	// GitLab does for other updates).
	LastCommit string
	OldRev     string
	// HeadPipelineID 0 sends null (no pipeline yet).
	HeadPipelineID int64
	User           HookUser
}

// MergeRequestHookPayload renders a Merge Request Hook body (object_kind
// "merge_request") in the shape of GitLab's merge request hook builder:
// user, project, object_attributes (with last_commit, oldrev only when
// set, head_pipeline_id), labels, changes and repository.
func MergeRequestHookPayload(spec MergeRequestHookSpec) []byte {
	mr := spec.MergeRequest
	base := spec.Project.base()
	user := spec.User.json(base)
	if spec.LastCommit == "" {
		spec.LastCommit = commitSHA(mr.ID)
	}
	now := time.Now().UTC().Format(HookTimeLayout)
	web := base + "/" + spec.Project.PathWithNamespace
	var head any
	if spec.HeadPipelineID != 0 {
		head = spec.HeadPipelineID
	}
	attrs := map[string]any{
		"id": mr.ID, "iid": mr.IID, "title": mr.Title, "description": "", "state": mr.state(), "action": spec.Action,
		"source_branch": mr.SourceBranch, "target_branch": mr.target(), "source_project_id": spec.Project.ID,
		"target_project_id": spec.Project.ID, "author_id": user.ID, "created_at": now, "updated_at": now,
		"merge_status": "unchecked", "detailed_merge_status": "checking", "draft": false, "work_in_progress": false,
		"head_pipeline_id": head, "url": mr.url(spec.Project),
		"source": spec.Project.json(), "target": spec.Project.json(),
		"last_commit": map[string]any{
			"id": spec.LastCommit, "message": mr.Title + "\n", "title": mr.Title, "timestamp": now,
			"url":    web + "/-/commit/" + spec.LastCommit,
			"author": map[string]string{"name": user.Name, "email": user.Email},
		},
		"labels": []any{},
	}
	if spec.OldRev != "" {
		attrs["oldrev"] = spec.OldRev
	}
	return mustJSON(map[string]any{
		"object_kind": "merge_request", "event_type": "merge_request", "user": user,
		"project": spec.Project.json(), "object_attributes": attrs, "labels": []any{},
		"changes":    map[string]any{},
		"repository": map[string]any{"name": spec.Project.slug(), "url": spec.Project.json().GitSSHURL, "description": "", "homepage": web},
	})
}
