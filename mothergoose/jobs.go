package mothergoose

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

// Schedule policies of the Schedules made from the Nest.
const (
	// jobCatchupWindow: a run Temporal missed (it was down) is still taken
	// when it is at most this late; older ones are dropped, and the next
	// scheduled run comes.
	jobCatchupWindow = time.Hour
	// noteDisabled marks a job schedule paused because its file says
	// enabled = false; only such a pause is lifted when the file says
	// enabled again, so an operator's pause (`gosling jobs schedule
	// pause`) survives Nest applications.
	noteDisabled = "disabled in the Nest (enabled = false)"
)

// NestSchedules are the Temporal Schedules that follow a Nest: one per job
// of Jobs/ (a SelfManagementJob run of the job, on its cron, in its time
// zone) and, when the MG block's sweep is enabled, one sweep per egg.
// Warnings name jobs that cannot run as written (their schedule is still
// made, so `gosling jobs schedule list` shows them, and each run fails
// with the reason).
func NestSchedules(nest *fly.Nest, cfg Config) (scheds []client.ScheduleOptions, warnings []string) {
	memo := map[string]any{contract.MemoScheduleOwner: contract.ScheduleOwnerNest}
	for _, job := range nest.Jobs {
		in, err := JobRunInput(nest, job)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("job %s: %v", job.Name, err))
		}
		spec := client.ScheduleSpec{CronExpressions: []string{job.Schedule}}
		if !strings.HasPrefix(job.Schedule, "CRON_TZ=") && !strings.HasPrefix(job.Schedule, "TZ=") {
			spec.TimeZoneName = job.Timezone
		}
		scheds = append(scheds, client.ScheduleOptions{
			ID:   contract.JobScheduleID(job.Name),
			Spec: spec,
			Action: &client.ScheduleWorkflowAction{
				ID: contract.JobWorkflowID(job.Name), Workflow: contract.WorkflowSelfManagementJob, Args: []any{in},
				TaskQueue: contract.TaskQueueMotherGoose,
				// The run's own bound, with room for its cleanup.
				WorkflowExecutionTimeout: job.Timeout.D() + 10*time.Minute,
			},
			// A run that outlives its interval is not doubled.
			Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
			CatchupWindow: jobCatchupWindow,
			Paused:        !job.Enabled,
			Note:          jobNote(job),
			Memo:          memo,
		})
	}
	sw := nest.MotherGoose.Sweep
	if cfg.SweepInterval > 0 {
		sw.Interval = fly.Duration(cfg.SweepInterval)
	}
	if sw.Interval <= 0 {
		sw.Interval = fly.DefaultSweepInterval
	}
	if !sw.Enabled && cfg.SweepInterval <= 0 {
		return scheds, warnings
	}
	hookURL := sw.WebhookURL
	if cfg.WebhookURL != "" {
		hookURL = cfg.WebhookURL
	}
	for _, egg := range nest.Eggs {
		scheds = append(scheds, client.ScheduleOptions{
			ID:   contract.SweepScheduleID(egg.Name),
			Spec: client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: sw.Interval.D()}}},
			Action: &client.ScheduleWorkflowAction{
				ID: contract.SweepWorkflowID(egg.Name), Workflow: contract.WorkflowSweep,
				Args: []any{contract.SweepInput{
					Egg: egg, Providers: nest.MotherGoose.Providers, WebhookURL: hookURL,
					Interval: sw.Interval.D(), StaleAfter: cfg.SweepStaleAfter,
					SkipResend: sw.NoResend, SkipPendingJobs: sw.NoPendingJobs,
				}},
				TaskQueue:                contract.TaskQueueMotherGoose,
				WorkflowExecutionTimeout: max(10*time.Minute, 5*sw.Interval.D()),
			},
			Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
			// A missed sweep is not worth taking late: the next one comes.
			CatchupWindow: max(sw.Interval.D(), 10*time.Second),
			// The first sweep runs at once: the egg's hooks are made on
			// the Nest's application, not a minute later.
			TriggerImmediately: true,
			Note:               "made by Gosling: the pending-job sweep of egg " + egg.Name,
			Memo:               memo,
		})
	}
	return scheds, warnings
}

func jobNote(job fly.Job) string {
	if !job.Enabled {
		return noteDisabled
	}
	return "made by Gosling from " + job.File
}

// JobRunInput resolves what a job's kind needs from the rest of the Nest.
// An error says why the job cannot run; the input is still usable to make
// its schedule.
func JobRunInput(nest *fly.Nest, job fly.Job) (contract.JobRunInput, error) {
	in := contract.JobRunInput{Job: job}
	actor := contract.JobActor(job.Name)
	switch job.Kind {
	case fly.JobSecretRotation:
		r := &contract.RotateRunnerTokensInput{Eggs: paramStrings(job.Params, "eggs"), Actor: actor, Reason: "scheduled by " + job.File}
		if s, ok := job.Params["grace_period"].(string); ok {
			d, err := fly.ParseDuration(s)
			if err != nil {
				in.Rotation = r
				return in, fmt.Errorf("params.grace_period: %w", err)
			}
			r.ConfirmTimeout = d.D()
		}
		in.Rotation = r
	case fly.JobNestUpdate:
		ref, _ := job.Params["ref"].(string)
		if ref == "" {
			ref = nestRef(nest)
		}
		in.NestUpdate = &contract.NestUpdateInput{Ref: ref, Actor: actor}
		if nest.MotherGoose.Nest.Project == "" {
			return in, errors.New("mothergoose.nest names no project: there is no Nest repository to update from")
		}
	case fly.JobRunnerImageUpdate:
		u := &contract.RunnerImageUpdateInput{Job: job.Name, Eggs: paramStrings(job.Params, "eggs"), RollPercent: contract.DefaultRollPercent}
		u.Image, _ = job.Params["image"].(string)
		u.Username, _ = job.Params["username"].(string)
		if p, ok := job.Params["password"].(string); ok {
			u.Password = fly.SecretRef(p)
		}
		if n, ok := job.Params["roll_percent"].(float64); ok && n >= 1 {
			u.RollPercent = int(n)
		}
		if len(u.Eggs) == 0 {
			for _, e := range nest.Eggs {
				if e.Runner.Image == u.Image {
					u.Eggs = append(u.Eggs, e.Name)
				}
			}
		}
		in.ImageUpdate = u
	case fly.JobCustom:
		c, err := customJobInput(nest, job)
		in.Custom = c
		return in, err
	default:
		return in, fmt.Errorf("unknown job kind %q", job.Kind)
	}
	return in, nil
}

func nestRef(nest *fly.Nest) string {
	if r := nest.MotherGoose.Nest.Ref; r != "" {
		return r
	}
	return "main"
}

func paramStrings(p map[string]any, key string) []string {
	list, _ := p[key].([]any)
	var out []string
	for _, v := range list {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// customJobInput makes the spec of a custom job's dedicated runner: the
// runner of the egg the job names (or of the first egg, by name, whose
// runners carry every tag the job asks for), with the job's tags and
// image, registered for the Nest project only, and holding the Nest
// repository's API token (the elevated token) as GOSLING_ELEVATED_TOKEN
// when the job is elevated.
func customJobInput(nest *fly.Nest, job fly.Job) (*contract.CustomJobInput, error) {
	in := &contract.CustomJobInput{
		Job: job.Name, Ref: nestRef(nest), Timeout: job.Timeout.D(),
		Variables: map[string]string{contract.VarJob: job.Name},
	}
	script, ok := job.Params["script"].(string)
	if !ok {
		script = shellJoin(paramStrings(job.Params, "command"))
	}
	// gitlab-runner expands $VAR in pipeline variables before the job
	// runs, and "$$" is its escape for "$"
	// (https://docs.gitlab.com/ci/variables/#prevent-cicd-variable-expansion
	// covers only file and project variables): the shell's eval sees the
	// script as written, $HOME, $1 and $(date) included.
	in.Variables[contract.VarJobScript] = strings.ReplaceAll(script, "$", "$$")
	if vars, ok := job.Params["variables"].(map[string]any); ok {
		for k, v := range vars {
			in.Variables[k] = fmt.Sprint(v)
		}
	}
	var base *fly.Egg
	if job.Runner.Egg != "" {
		base, _ = nest.Egg(job.Runner.Egg)
	} else {
		for i := range nest.Eggs {
			if ok, _ := contract.TagsMatch(nest.Eggs[i].Runner, job.Runner.Tags); ok && len(job.Runner.Tags) > 0 {
				base = &nest.Eggs[i]
				break
			}
		}
	}
	if base == nil {
		return in, fmt.Errorf("no egg's runners fit the job's runner block (egg %q, tags %v)", job.Runner.Egg, job.Runner.Tags)
	}
	g, err := nestGitLab(nest)
	if err != nil {
		return in, err
	}
	if nest.MotherGoose.Nest.Project == "" {
		return in, errors.New("mothergoose.nest names no project: a custom job's pipeline runs in the Nest repository")
	}
	r := *base
	r.Name = contract.CustomRunnerEggOf + job.Name
	r.Kind, r.Group, r.Rift, r.Apex, r.Nadir = fly.KindEgg, nil, nil, fly.Pool{}, fly.Pool{}
	r.GitLab = fly.GitLab{Host: g.Host, Flavor: base.GitLab.Flavor, Insecure: g.Insecure, Token: g.Token, WebhookSecret: base.GitLab.WebhookSecret}
	ref := fly.ProjectRef{Path: nest.MotherGoose.Nest.Project}
	if id, err := strconv.ParseInt(ref.Path, 10, 64); err == nil {
		ref = fly.ProjectRef{ID: id}
	}
	r.Projects = []fly.ProjectRef{ref}
	r.Runner.Type = fly.RunnerVM
	r.Runner.RunUntagged = false
	r.Runner.MaxConcurrent, r.Runner.JobsPerRunner = 1, 1
	if len(job.Runner.Tags) > 0 {
		r.Runner.Tags = slices.Clone(job.Runner.Tags)
	}
	if job.Runner.Image != "" {
		r.Runner.Image = job.Runner.Image
	}
	env := map[string]fly.EnvValue{}
	for k, v := range base.Runner.Env {
		env[k] = v
	}
	if job.Runner.Elevated {
		env[contract.VarElevatedToken] = fly.EnvValue{Secret: g.Token}
	}
	r.Runner.Env = env
	in.Runner = r
	if len(r.Runner.Clouds) > 0 {
		in.Cloud = r.Runner.Clouds[0]
		in.Provider = nest.MotherGoose.Providers[in.Cloud]
	}
	return in, nil
}

// shellJoin quotes arguments for a POSIX shell.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// ScheduleSyncResult says what EnsureNestSchedules changed.
type ScheduleSyncResult struct {
	Created, Updated, Deleted []string
}

// EnsureNestSchedules makes Temporal's Schedules match want: it creates the
// missing ones, updates the others (spec, action, overlap, catch-up window;
// a job's enabled flag pauses or resumes it, an operator's pause is kept)
// and deletes the schedules Gosling made from an earlier Nest (ID prefix
// and memo, see contract.ScheduleIDJobPrefix) that want no longer has.
// Schedules of anyone else are never touched. Listing is eventually
// consistent: a schedule deleted meanwhile is not an error.
func EnsureNestSchedules(ctx context.Context, sc client.ScheduleClient, want []client.ScheduleOptions) (ScheduleSyncResult, error) {
	var res ScheduleSyncResult
	var errs []error
	wanted := map[string]bool{}
	for _, opts := range want {
		wanted[opts.ID] = true
		created, err := ensureSchedule(ctx, sc, opts)
		switch {
		case err != nil:
			errs = append(errs, err)
		case created:
			res.Created = append(res.Created, opts.ID)
		default:
			res.Updated = append(res.Updated, opts.ID)
		}
	}
	owned, err := ownedSchedules(ctx, sc)
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range owned {
		if wanted[id] {
			continue
		}
		err := sc.GetHandle(ctx, id).Delete(ctx)
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
		case err != nil:
			errs = append(errs, fmt.Errorf("delete schedule %s: %w", id, err))
		default:
			res.Deleted = append(res.Deleted, id)
		}
	}
	return res, errors.Join(errs...)
}

// ensureSchedule creates a schedule, or updates the one with its ID.
func ensureSchedule(ctx context.Context, sc client.ScheduleClient, opts client.ScheduleOptions) (created bool, err error) {
	_, err = sc.Create(ctx, opts)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return false, fmt.Errorf("create schedule %s: %w", opts.ID, err)
	}
	want := opts
	err = sc.GetHandle(ctx, opts.ID).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			s.Spec = &want.Spec
			s.Action = want.Action
			if s.Policy == nil {
				s.Policy = &client.SchedulePolicies{}
			}
			s.Policy.Overlap = want.Overlap
			if want.CatchupWindow > 0 {
				s.Policy.CatchupWindow = want.CatchupWindow
			}
			if s.State == nil {
				s.State = &client.ScheduleState{}
			}
			switch {
			case want.Paused && !s.State.Paused:
				s.State.Paused, s.State.Note = true, want.Note
			case !want.Paused && s.State.Paused && s.State.Note == noteDisabled:
				s.State.Paused, s.State.Note = false, want.Note
			case !s.State.Paused:
				s.State.Note = want.Note
			}
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
	if err != nil {
		return false, fmt.Errorf("update schedule %s: %w", opts.ID, err)
	}
	return false, nil
}

// ownedSchedules lists the IDs of the schedules Gosling made from a Nest.
func ownedSchedules(ctx context.Context, sc client.ScheduleClient) ([]string, error) {
	it, err := sc.List(ctx, client.ScheduleListOptions{PageSize: 1000})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	dc := converter.GetDefaultDataConverter()
	var out []string
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return out, fmt.Errorf("list schedules: %w", err)
		}
		if !strings.HasPrefix(e.ID, contract.ScheduleIDJobPrefix) && !strings.HasPrefix(e.ID, contract.ScheduleIDSweepPrefix) {
			continue
		}
		p, ok := e.Memo.GetFields()[contract.MemoScheduleOwner]
		var owner string
		if !ok || dc.FromPayload(p, &owner) != nil || owner != contract.ScheduleOwnerNest {
			continue
		}
		out = append(out, e.ID)
	}
	return out, nil
}

// applySchedules brings the Nest's schedules and UglyFox's up to date, for
// ApplyNest; what fails is a warning.
func (m *NestSync) applySchedules(ctx context.Context, nest *fly.Nest) (warnings []string) {
	tc := m.Temporal()
	if tc == nil {
		return []string{"schedules: " + errNoTemporal.Error()}
	}
	sctx, cancel := context.WithTimeout(ctx, 3*m.cfg.TemporalTimeout+time.Duration(len(nest.Jobs)+len(nest.Eggs))*m.cfg.TemporalTimeout/4)
	defer cancel()
	if nest.UglyFox.Schedule != "" {
		if err := EnsureUglyFoxSchedules(sctx, tc.ScheduleClient(), nest.UglyFox); err != nil {
			warnings = append(warnings, fmt.Sprintf("UglyFox schedules: %v", err))
		}
	}
	want, warn := NestSchedules(nest, m.cfg)
	warnings = append(warnings, warn...)
	res, err := EnsureNestSchedules(sctx, tc.ScheduleClient(), want)
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("job and sweep schedules: %v", err))
	}
	if len(res.Created)+len(res.Deleted) > 0 {
		m.log.InfoContext(ctx, "schedules follow the Nest", "created", res.Created, "deleted", res.Deleted)
	}
	return warnings
}

// PoolStatusIfRunning is PoolStatus for the self-management jobs: an egg
// without a running pool (serverless, or not started yet) is running false,
// not an error.
func (m *Operations) PoolStatusIfRunning(ctx context.Context, egg string) (contract.PoolStatus, bool, error) {
	st, err := m.PoolStatus(ctx, egg)
	var e *Error
	if errors.As(err, &e) && e.Kind == KindNotFound {
		return st, false, nil
	}
	return st, err == nil, err
}
