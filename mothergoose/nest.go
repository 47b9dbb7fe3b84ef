package mothergoose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

// NestFetcher loads the Nest at a ref (a branch or a commit SHA) of the
// Nest repository. It returns the Nest and the commit it was read at, or
// an *InvalidNestError when the Nest there does not validate.
type NestFetcher func(ctx context.Context, ref string) (*fly.Nest, string, error)

// InvalidNestError is a Nest that does not validate, with its diagnostics
// as gosling validate prints them.
type InvalidNestError struct {
	Commit      string
	Diagnostics string
}

func (e *InvalidNestError) Error() string {
	return fmt.Sprintf("the Nest at %s is invalid:\n%s", shortSHA(e.Commit), e.Diagnostics)
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// ApplyResult says what applying a Nest changed.
type ApplyResult struct {
	// Commit is the Nest repository commit applied, when known.
	Commit string `json:"commit,omitempty"`
	// Eggs counts the egg configurations written; Pools the pools started
	// or given their new spec (queued in the outbox while Temporal is
	// down); Drained the pools of eggs the Nest no longer has.
	Eggs    int `json:"eggs"`
	Pools   int `json:"pools"`
	Drained int `json:"drained"`
	// Warnings are steps that failed without failing the application
	// (a schedule that could not be updated, a pool Temporal refused, a
	// listed project GitLab does not resolve or knows under a new path).
	Warnings []string `json:"warnings,omitempty"`
}

// ApplyNest puts a Nest in force: the egg configurations go to the store
// (runners and workflows read the configuration they were made with), the
// pool of every pooled egg is started or given the egg's new spec (it
// applies to future runners), the pools of eggs that left the Nest are
// drained, UglyFox's schedules follow UF/config.fly, and the Schedules of
// the jobs of Jobs/ and of the eggs' sweeps are created, updated and
// deleted to match the Nest (see NestSchedules). Calls Temporal
// cannot take now wait in the outbox. The application is audited. Errors
// are returned only when the store cannot take the eggs; the rest are
// warnings in the result. commit is the Nest repository commit it was read
// at ("" when not read from the repository); reason says why it is applied,
// for the audit log.
func (m *NestSync) ApplyNest(ctx context.Context, nest *fly.Nest, commit, reason string) (ApplyResult, error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	res := ApplyResult{Commit: commit}
	old := m.Nest()
	if err := m.storeEggConfigs(ctx, nest); err != nil {
		return res, err
	}
	res.Eggs = len(nest.Eggs)
	m.nest.Store(nest)
	// Listed projects are matched by ID: ask GitLab what the paths and
	// IDs of the Nest name now.
	res.Warnings = append(res.Warnings, m.indexProjects(ctx, nest)...)

	for i := range nest.Eggs {
		egg := &nest.Eggs[i]
		if len(egg.Runner.Clouds) == 0 {
			continue
		}
		if !contract.UsesPool(*egg) {
			// A running gate takes the egg's new max_concurrent; the
			// first pending job starts one.
			res.Warnings = append(res.Warnings, m.syncGate(ctx, egg)...)
			continue
		}
		if err := m.syncPool(ctx, nest, egg); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("pool of %s: %v", egg.Name, err))
			continue
		}
		res.Pools++
	}
	for _, egg := range old.Eggs {
		if _, still := nest.Egg(egg.Name); still || !contract.UsesPool(egg) {
			continue
		}
		if err := m.drainPool(ctx, egg.Name); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("drain the pool of removed egg %s: %v", egg.Name, err))
			continue
		}
		res.Drained++
	}
	// UglyFox's schedules follow UF/config.fly; the jobs' and the sweeps'
	// follow Jobs/ and the eggs (see applySchedules).
	res.Warnings = append(res.Warnings, m.applySchedules(ctx, nest)...)
	what := fmt.Sprintf("%d eggs, %d pools", res.Eggs, res.Pools)
	if commit != "" {
		what = "commit " + shortSHA(commit) + ": " + what
	}
	if reason != "" {
		what = reason + "; " + what
	}
	if res.Drained > 0 {
		what += fmt.Sprintf(", %d pools of removed eggs drained", res.Drained)
	}
	if len(res.Warnings) > 0 {
		what += "; warnings: " + truncate(strings.Join(res.Warnings, "; "), 500)
		m.log.WarnContext(ctx, "Nest applied with warnings", "commit", commit, "warnings", res.Warnings)
	}
	if _, err := m.store.AppendAudit(ctx, store.AuditRecord{At: m.now(), Actor: contract.ActorMotherGoose, Action: "nest-apply", Reason: what}); err != nil {
		m.log.ErrorContext(ctx, "audit the Nest application", "error", err)
	}
	m.nestCommit.Store(&commit)
	return res, nil
}

// NestCommit is the commit of the Nest in force, "" when it was not read
// from the Nest repository.
func (m *NestSync) NestCommit() string {
	if p := m.nestCommit.Load(); p != nil {
		return *p
	}
	return ""
}

// storeEggConfigs writes a Nest's eggs to the store, so runners and
// workflows can read the configuration they were made with.
func (m *NestSync) storeEggConfigs(ctx context.Context, nest *fly.Nest) error {
	for _, egg := range nest.Eggs {
		spec, err := json.Marshal(egg)
		if err != nil {
			return fmt.Errorf("encode egg %s: %w", egg.Name, err)
		}
		if err := m.store.PutEggConfig(ctx, store.EggConfig{Name: egg.Name, Version: egg.Version, Spec: spec, UpdatedAt: m.now()}); err != nil {
			return fmt.Errorf("store egg %s: %w", egg.Name, err)
		}
	}
	return nil
}

// syncPool starts an egg's pool or gives the running one the egg's spec.
func (m *NestSync) syncPool(ctx context.Context, nest *fly.Nest, egg *fly.Egg) error {
	cloud := egg.Runner.Clouds[0]
	in, err := SignalWithStartIntent(contract.PoolWorkflowID(egg.Name), contract.SignalPoolSpec, *egg, contract.WorkflowPool, contract.PoolInput{
		Egg: *egg, Cloud: cloud, Provider: nest.MotherGoose.Providers[cloud], Providers: eggProviders(nest, egg),
	})
	if err == nil {
		_, err = m.deliver(ctx, in)
	}
	return err
}

// syncGate gives a serverless egg's running gate the egg's spec.
func (m *NestSync) syncGate(ctx context.Context, egg *fly.Egg) []string {
	in, err := SignalIntent(contract.GateWorkflowID(egg.Name), contract.SignalGateSpec, *egg)
	if err == nil {
		_, err = m.deliver(ctx, in)
	}
	if err != nil {
		return []string{fmt.Sprintf("gate of %s: %v", egg.Name, err)}
	}
	return nil
}

// drainPool retires every runner of a pool whose egg left the Nest.
func (m *NestSync) drainPool(ctx context.Context, egg string) error {
	tc := m.Temporal()
	if tc == nil {
		return errNoTemporal
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.TemporalTimeout)
	defer cancel()
	h, err := tc.UpdateWorkflow(cctx, client.UpdateWorkflowOptions{
		WorkflowID: contract.PoolWorkflowID(egg), UpdateName: contract.UpdatePoolDrain, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		var retired int
		err = h.Get(cctx, &retired)
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil // never started: nothing to drain
	}
	return err
}

// ReloadNest fetches the Nest at ref and applies it when it validates. An
// invalid Nest is audited with its diagnostics and returned as an
// *InvalidNestError; the Nest in force stays. reason says what asked
// (a push, a poll).
func (m *NestSync) ReloadNest(ctx context.Context, ref, reason string) (ApplyResult, error) {
	nest, commit, err := m.fetch(ctx, ref)
	var invalid *InvalidNestError
	if errors.As(err, &invalid) {
		rec := store.AuditRecord{At: m.now(), Actor: contract.ActorMotherGoose, Action: "nest-invalid",
			Reason: reason + ": the Nest at " + shortSHA(invalid.Commit) + " is invalid; the Nest in force stays:\n" + truncate(invalid.Diagnostics, 4000)}
		if _, aerr := m.store.AppendAudit(ctx, rec); aerr != nil {
			m.log.ErrorContext(ctx, "audit an invalid Nest", "error", aerr)
		}
		m.log.WarnContext(ctx, "invalid Nest not applied", "commit", invalid.Commit, "reason", reason)
		return ApplyResult{Commit: invalid.Commit}, err
	}
	if err != nil {
		return ApplyResult{}, unavailable("nest unavailable", "the Nest could not be fetched at "+truncate(ref, 80), err)
	}
	return m.ApplyNest(ctx, nest, commit, reason)
}

// RunNestSync reloads the Nest whenever the head of the Nest repository's
// ref moves, checking every interval until ctx ends, so every server
// replica follows a push that reached another one, or that GitLab failed
// to deliver. When a nest_update job rules the Nest, it follows the commit
// the job accepted instead (see NestCommitRecord). It does nothing when
// the Nest names no repository.
func (m *NestSync) RunNestSync(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		src := m.Nest().MotherGoose.Nest
		if src.Project == "" {
			continue
		}
		if job, ok := ScheduledNestUpdate(m.Nest()); ok {
			// The job rules the Nest: follow what it accepted, not the head.
			m.followRecordedNest(ctx, job)
			continue
		}
		head, err := m.nestHead(ctx)
		if err != nil {
			m.log.WarnContext(ctx, "read the Nest repository's head", "error", err)
			continue
		}
		if head == "" || head == m.NestCommit() || head == m.rejectedCommit() {
			continue
		}
		if _, err := m.ReloadNest(ctx, head, "the head of "+src.Ref+" moved to "+shortSHA(head)); err != nil {
			var invalid *InvalidNestError
			if errors.As(err, &invalid) {
				m.rejected.Store(&head)
				continue
			}
			m.log.WarnContext(ctx, "reload the Nest", "error", err)
		}
	}
}

func (m *NestSync) rejectedCommit() string {
	if p := m.rejected.Load(); p != nil {
		return *p
	}
	return ""
}
