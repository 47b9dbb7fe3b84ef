package mothergoose

import (
	"context"
	"errors"
	"fmt"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
)

// A webhook's effects stay inside the egg whose secret authenticated it.
// The project is matched by ID (matchEgg); then every job a hook names must
// be that project's: a job the store holds belongs to the project it was
// first recorded in (store.MergeJob), and a job new to the store is first
// confirmed in the hook's project through GitLab's Jobs API with the egg's
// own token, before any status from the hook counts. GitLab never sends a
// hook that fails these checks, so refusing it cannot disable a real hook;
// each refusal is audited against the egg whose secret carried it.

// auditRefused is the audit action of a refused delivery.
const auditRefused = "webhook-refused"

// refuse audits a delivery refused by a scoping check and returns the
// error it is answered with: kind KindNotFound (404, result unknown_job)
// or KindConflict (409, foreign_job, a job of another project).
func (m *Ingest) refuse(ctx context.Context, d *delivery, kind Kind, result, detail string) error {
	m.auditRefusal(ctx, d, detail)
	msg := "unknown job"
	if kind == KindConflict {
		msg = "job of another project"
	}
	return &Error{Kind: kind, Msg: msg, Detail: detail, Result: result}
}

// auditRefusal logs and audits what a delivery was refused, against the
// egg whose secret carried it.
func (m *Ingest) auditRefusal(ctx context.Context, d *delivery, detail string) {
	m.log.WarnContext(ctx, "webhook refused", "egg", d.egg.Name, "event", d.hook.Event, "project", d.hook.ProjectID, "reason", detail)
	m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: auditRefused, Egg: d.egg.Name,
		Reason: truncate(fmt.Sprintf("%s of project %d: %s", d.hook.Event, d.hook.ProjectID, detail), 1000)})
}

// confirmJob checks that a job a Job Hook names is the hook's project's:
// a job in the store must have been recorded in that project; a job new to
// the store (or recorded from a runner's report alone, with no project) is
// looked up in that project with the egg's token (GET
// /projects/:id/jobs/:job_id), and one GitLab does not have there is
// refused, leaving no row behind. GitLab's answer is returned for a new
// job (nil for a known one).
func (m *Ingest) confirmJob(ctx context.Context, d *delivery, jobID int64) (*gitlab.Job, error) {
	stored, err := m.store.GetJob(ctx, d.Host, jobID)
	if err == nil && stored.ProjectID == 0 {
		// Recorded from a runner's report alone, which names no
		// project: GitLab confirms it as it does a new job.
		err = store.ErrNotFound
	}
	switch {
	case err == nil:
		if stored.ProjectID != d.hook.ProjectID {
			return nil, m.refuse(ctx, d, KindConflict, "foreign_job",
				fmt.Sprintf("job %d belongs to another project; a hook of project %d cannot change it", jobID, d.hook.ProjectID))
		}
		return nil, nil
	case err == nil:
		// Known only from a machine's report (RunnerJob), which names no
		// project: confirmed like a new job.
	case !errors.Is(err, store.ErrNotFound):
		return nil, unavailable("store unavailable", "the job could not be read; resend it", err)
	}
	if m.cfg.UnconfirmedJobs {
		return nil, nil
	}
	c, err := m.gitlabClient(ctx, d.egg)
	if err != nil {
		return nil, unavailable("gitlab unavailable", "the job could not be confirmed with GitLab; resend later", err)
	}
	lctx, cancel := context.WithTimeout(ctx, groupLookupTimeout)
	defer cancel()
	job, err := c.GetJob(lctx, d.hook.ProjectID, jobID)
	switch {
	case gitlab.IsNotFound(err) || gitlab.IsForbidden(err):
		return nil, m.refuse(ctx, d, KindNotFound, "unknown_job",
			fmt.Sprintf("GitLab has no job %d in project %d that egg %s's token can see", jobID, d.hook.ProjectID, d.egg.Name))
	case err != nil:
		return nil, unavailable("gitlab unavailable", "the job could not be confirmed with GitLab; resend later", err)
	}
	return job, nil
}

// confirmBuilds keeps the builds of a Pipeline Hook that are the hook's
// project's: those the store holds in that project, and, when some are new
// to the store, those GitLab lists in the pipeline of that project (one
// call: GET /projects/:id/pipelines/:pipeline_id/jobs). A pipeline GitLab
// does not have in the project refuses the whole hook. dropped counts the
// builds left out.
func (m *Ingest) confirmBuilds(ctx context.Context, d *delivery) (kept []PipelineBuild, dropped int, err error) {
	p := d.hook.Pipeline
	var unknown []PipelineBuild
	for _, b := range p.Builds {
		stored, err := m.store.GetJob(ctx, d.Host, b.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			unknown = append(unknown, b)
		case err != nil:
			return nil, 0, unavailable("store unavailable", "the pipeline's jobs could not be read; resend it", err)
		case stored.ProjectID != 0 && stored.ProjectID != d.hook.ProjectID:
			dropped++
		default:
			kept = append(kept, b)
		}
	}
	if len(unknown) == 0 {
		return kept, dropped, nil
	}
	c, err := m.gitlabClient(ctx, d.egg)
	if err != nil {
		return nil, 0, unavailable("gitlab unavailable", "the pipeline's jobs could not be confirmed with GitLab; resend later", err)
	}
	lctx, cancel := context.WithTimeout(ctx, groupLookupTimeout)
	defer cancel()
	jobs, err := c.ListPipelineJobs(lctx, d.hook.ProjectID, p.ID)
	switch {
	case gitlab.IsNotFound(err) || gitlab.IsForbidden(err):
		return nil, 0, m.refuse(ctx, d, KindNotFound, "unknown_job",
			fmt.Sprintf("GitLab has no pipeline %d in project %d that egg %s's token can see", p.ID, d.hook.ProjectID, d.egg.Name))
	case err != nil:
		return nil, 0, unavailable("gitlab unavailable", "the pipeline's jobs could not be confirmed with GitLab; resend later", err)
	}
	known := make(map[int64]bool, len(jobs))
	for _, j := range jobs {
		known[j.ID] = true
	}
	for _, b := range unknown {
		if known[b.ID] {
			kept = append(kept, b)
		} else {
			dropped++
		}
	}
	if dropped > 0 {
		m.auditRefusal(ctx, d, fmt.Sprintf("%d builds of pipeline %d are not the project's jobs; they were not recorded", dropped, p.ID))
	}
	return kept, dropped, nil
}

// failureBlamesRunner tells whether a runner_system_failure a Job Hook
// reports may count against Gosling's runner r: r must be the hook's egg's,
// and GitLab must say that the job ran on the runner the hook names (the
// job read from the hook's project with the egg's token, so neither the
// job nor the runner can be another egg's).
func (m *Ingest) failureBlamesRunner(ctx context.Context, d *delivery, r *store.Runner, jobID, gitlabRunnerID int64) (bool, string, error) {
	if r.Egg != d.egg.Name {
		return false, fmt.Sprintf("runner %s is another egg's", r.ID), nil
	}
	c, err := m.gitlabClient(ctx, d.egg)
	if err != nil {
		return false, "", err
	}
	lctx, cancel := context.WithTimeout(ctx, groupLookupTimeout)
	defer cancel()
	job, err := c.GetJob(lctx, d.hook.ProjectID, jobID)
	switch {
	case gitlab.IsNotFound(err) || gitlab.IsForbidden(err):
		return false, fmt.Sprintf("GitLab has no job %d in project %d", jobID, d.hook.ProjectID), nil
	case err != nil:
		return false, "", err
	case job.RunnerID != gitlabRunnerID:
		return false, fmt.Sprintf("GitLab says job %d ran on runner %d, not %d", jobID, job.RunnerID, gitlabRunnerID), nil
	case job.Status != "failed":
		return false, fmt.Sprintf("GitLab says job %d is %s, not failed", jobID, job.Status), nil
	}
	return true, "", nil
}
