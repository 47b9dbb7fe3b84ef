package mothergoose

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
)

// Events that announce jobs before they are pending: a push to a branch
// and a merge request opened, reopened or given new commits mean a
// pipeline is coming (contract.Warm with Key "commit/<sha>", one job); a
// Pipeline Hook names its created jobs, which later stages will need
// (Key "pipeline/<id>", their IDs; none left, or the pipeline over,
// withdraws it). They go to the pool of the egg that serves the project
// when the egg's apex.warm_for is set (SignalPoolWarm): the pool promotes
// Nadir runners ahead of them, within its limits, and puts them back
// after warm_for if no job came. The jobs' tags are not in these hooks,
// and reading them from the Jobs API for every announcement would spend
// the project's rate limit on a guess: the pool warms by count, and an
// announcement costs at most warm_for of a runner it already has.

// announcingEgg finds the egg that serves the project of a push or a
// merge request (not the Nest repository's): none, or a project GitLab
// could not be asked about, means the event is not acted on (ok false,
// with why); the token must then be that egg's (KindUnauthorized).
func (m *Ingest) announcingEgg(ctx context.Context, d *delivery, eggs []*fly.Egg) (ok bool, why string, err error) {
	egg, lerr := m.matchEgg(ctx, d, eggs)
	if egg == nil {
		if lerr != nil {
			m.log.WarnContext(ctx, "announcement not acted on: its project could not be looked up", "event", d.hook.Event, "project", d.hook.ProjectID, "error", lerr)
			return false, "the project could not be looked up in GitLab; " + d.hook.Event + " events only announce jobs", nil
		}
		return false, "not the Nest repository nor a project an egg serves", nil
	}
	match, err := m.cache.Match(ctx, egg.GitLab.WebhookSecret, d.Token)
	if err != nil {
		return false, "", unavailable("secrets unavailable", "the webhook secret of egg "+egg.Name+" could not be resolved; see the server log", err)
	}
	if !match {
		return false, "", unauthorized("the token is not the webhook secret of the project's egg")
	}
	d.egg = egg
	return true, "", nil
}

// warms says whether an egg's pool acts on announcements.
func warms(egg *fly.Egg) bool {
	return egg.Apex.WarmFor > 0 && contract.UsesPool(*egg)
}

// announce sends an announcement to the egg's pool (a signal: a pool that
// is not running has nothing to warm) and says what was done.
func (m *Ingest) announce(ctx context.Context, egg *fly.Egg, w contract.Warm) (*Result, error) {
	w.At = m.now()
	in, err := SignalIntent(contract.PoolWorkflowID(egg.Name), contract.SignalPoolWarm, w)
	if err != nil {
		return nil, err
	}
	res, err := m.deliver(ctx, in)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("announced %d jobs (%s) to the pool of %s", w.Jobs, w.Key, egg.Name)
	if w.Jobs == 0 {
		what = fmt.Sprintf("withdrew the announcement %s from the pool of %s", w.Key, egg.Name)
	}
	if res.Reason != "" {
		what += "; " + res.Reason
	}
	res.Reason = what
	return res, nil
}

// zeroSHA tells a SHA of all zeros (a created or deleted branch's side).
func zeroSHA(s string) bool { return strings.Trim(s, "0") == "" }

// skipCIPattern is GitLab's own test of a commit message
// (Gitlab::Ci::Pipeline::Chain::Skip): [ci skip] or [skip ci], any case,
// with a space, an underscore or a dash.
var skipCIPattern = regexp.MustCompile(`(?i)\[(ci[ _-]skip|skip[ _-]ci)\]`)

// skipsCI says why GitLab makes no pipeline for a push, or "".
func skipsCI(push *PushHook) string {
	switch {
	case push.SkipCIOption:
		return "the push sent the ci.skip push option"
	case skipCIPattern.MatchString(push.HeadMessage):
		return "the head commit says " + skipCIPattern.FindString(push.HeadMessage)
	}
	return ""
}

// processPushAnnouncement: a push of commits to a branch of a served
// project announces its pipeline.
func (m *Ingest) processPushAnnouncement(ctx context.Context, d *delivery) (*Result, error) {
	push, egg := d.hook.Push, d.egg
	switch {
	case !strings.HasPrefix(push.Ref, "refs/heads/"):
		return &Result{Status: StatusIgnored, Reason: "not a push to a branch"}, nil
	case zeroSHA(push.After):
		return &Result{Status: StatusIgnored, Reason: "the push deleted the branch: no pipeline comes"}, nil
	case skipsCI(push) != "":
		return &Result{Status: StatusIgnored, Reason: skipsCI(push) + ": GitLab makes no pipeline, so none comes"}, nil
	case !warms(egg):
		return &Result{Status: StatusIgnored, Reason: "egg " + egg.Name + " does not warm runners ahead of pipelines (apex.warm_for)"}, nil
	}
	return m.announce(ctx, egg, contract.Warm{
		Key: "commit/" + push.After, Jobs: 1,
		Reason: fmt.Sprintf("push of %s to %s", shortSHA(push.After), strings.TrimPrefix(push.Ref, "refs/heads/")),
	})
}

// mergeRequestPipelineActions are the merge request actions after which
// a merge request pipeline comes (an update only with new commits).
var mergeRequestPipelineActions = map[string]bool{"open": true, "reopen": true}

// processMergeRequest records a merge request event in the audit log,
// with its head pipeline, and announces the pipeline that follows when
// the merge request was opened, reopened or given new commits.
func (m *Ingest) processMergeRequest(ctx context.Context, d *delivery) (*Result, error) {
	mr, egg := d.hook.MergeRequest, d.egg
	after, err := json.Marshal(struct {
		ProjectID      int64  `json:"project_id"`
		ID             int64  `json:"id"`
		IID            int64  `json:"iid"`
		Action         string `json:"action,omitempty"`
		State          string `json:"state,omitempty"`
		SourceBranch   string `json:"source_branch,omitempty"`
		TargetBranch   string `json:"target_branch,omitempty"`
		LastCommit     string `json:"last_commit,omitempty"`
		HeadPipelineID int64  `json:"head_pipeline_id,omitempty"`
		URL            string `json:"url,omitempty"`
	}{d.hook.ProjectID, mr.ID, mr.IID, mr.Action, mr.State, mr.SourceBranch, mr.TargetBranch, mr.LastCommit, mr.HeadPipelineID, mr.URL})
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("merge request !%d of project %d %s: %s into %s at %s", mr.IID, d.hook.ProjectID, cmp.Or(mr.Action, mr.State),
		truncate(mr.SourceBranch, 100), truncate(mr.TargetBranch, 100), shortSHA(mr.LastCommit))
	if mr.HeadPipelineID != 0 {
		what += fmt.Sprintf(" (head pipeline %d)", mr.HeadPipelineID)
	}
	if _, err := m.store.AppendAudit(ctx, store.AuditRecord{
		At: m.now(), Actor: contract.ActorMotherGoose, Action: "merge-request", Egg: egg.Name, Reason: what, After: after,
		// Once per delivery, however often its processing is retried.
		Key: "merge-request/" + d.key,
	}); err != nil {
		return nil, unavailable("store unavailable", "the merge request could not be recorded; resend it", err)
	}
	pipeline := mergeRequestPipelineActions[mr.Action] || (mr.Action == "update" && mr.OldRev != "" && !zeroSHA(mr.OldRev))
	switch {
	case !pipeline || mr.LastCommit == "":
		return &Result{Status: StatusAccepted, Reason: "recorded; " + cmp.Or(mr.Action, "this event") + " brings no pipeline"}, nil
	case !warms(egg):
		return &Result{Status: StatusAccepted, Reason: "recorded; egg " + egg.Name + " does not warm runners ahead of pipelines (apex.warm_for)"}, nil
	}
	res, err := m.announce(ctx, egg, contract.Warm{
		Key: "commit/" + mr.LastCommit, Jobs: 1, Reason: fmt.Sprintf("merge request !%d %s", mr.IID, mr.Action),
	})
	if err == nil {
		res.Reason = "recorded; " + res.Reason
	}
	return res, err
}

// pipelineOver says whether a pipeline status is final.
func pipelineOver(status string) bool {
	switch status {
	case "success", "failed", "canceled", "skipped":
		return true
	}
	return false
}

// announcePipeline records which merge request a pipeline runs for, and
// tells a warming egg's pool which of the pipeline's jobs are created
// (and will be pending once their stage comes), or that it is over.
// It returns what it did, for the delivery's answer.
func (m *Ingest) announcePipeline(ctx context.Context, d *delivery) (string, error) {
	p, egg := d.hook.Pipeline, d.egg
	var done []string
	if mr := p.MergeRequest; mr != nil {
		after, _ := json.Marshal(map[string]any{"pipeline_id": p.ID, "merge_request_id": mr.ID, "merge_request_iid": mr.IID, "sha": p.SHA, "project_id": d.hook.ProjectID})
		if _, err := m.store.AppendAudit(ctx, store.AuditRecord{
			At: m.now(), Actor: contract.ActorMotherGoose, Action: "merge-request-pipeline", Egg: egg.Name,
			Reason: fmt.Sprintf("pipeline %d of project %d runs for merge request !%d at %s", p.ID, d.hook.ProjectID, mr.IID, shortSHA(p.SHA)),
			After:  after, Key: fmt.Sprintf("%s/pipeline/%d/merge-request", d.Host, p.ID),
		}); err != nil {
			return "", unavailable("store unavailable", "the pipeline's merge request could not be recorded; resend it", err)
		}
		done = append(done, fmt.Sprintf("runs for merge request !%d", mr.IID))
	}
	if !warms(egg) {
		return strings.Join(done, "; "), nil
	}
	w := contract.Warm{Key: fmt.Sprintf("pipeline/%d", p.ID), Commit: p.SHA, Reason: fmt.Sprintf("pipeline %d is %s", p.ID, p.Status)}
	if !pipelineOver(p.Status) {
		for _, b := range p.Builds {
			if b.Status == "created" {
				w.JobIDs = append(w.JobIDs, b.ID)
			}
		}
		w.Jobs = len(w.JobIDs)
	}
	res, err := m.announce(ctx, egg, w)
	if err != nil {
		return "", err
	}
	return strings.Join(append(done, res.Reason), "; "), nil
}
