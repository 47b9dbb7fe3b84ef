package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// rollBatchTimeout bounds the wait for one batch of a roll: a pool that
// cannot replace its runners within it is reported, not waited for
// forever.
const rollBatchTimeout = 30 * time.Minute

// RunnerImageUpdate resolves an image's tag to its digest in the registry
// and compares it with the digest recorded at the last run. The first run
// only records it. When it moved, the pools of the eggs that use the image
// are rolled: each pool's runners of the time are recycled a batch at a
// time (RollPercent of them, at least one), replace-first
// (contract.ActionRecycle: the pool makes the replacement, then retires
// the old runner once it has no job, so no running job is interrupted and
// capacity never drops), and the next batch starts once the pool no longer
// has the batch's runners. The new digest is recorded only when every pool
// rolled, so a failed roll is tried again by the next run. An egg without
// a running pool has nothing to roll: its next runners use the new image.
func RunnerImageUpdate(ctx workflow.Context, in contract.RunnerImageUpdateInput) (contract.RunnerImageUpdateResult, error) {
	var a *activities.Activities
	res := contract.RunnerImageUpdateResult{Image: in.Image}
	if err := workflow.ExecuteActivity(registryCtx(ctx), a.ResolveImage, activities.ResolveImageInput{
		Image: in.Image, Username: in.Username, Password: in.Password,
	}).Get(ctx, &res.Digest); err != nil {
		return res, fmt.Errorf("resolve %s: %w", in.Image, err)
	}
	if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.ImageDigest, in.Image).Get(ctx, &res.Previous); err != nil {
		return res, fmt.Errorf("read the recorded digest of %s: %w", in.Image, err)
	}
	record := func() error {
		return workflow.ExecuteLocalActivity(storeCtx(ctx), a.RecordImageDigest, activities.ImageDigestRecord{
			Image: in.Image, Digest: res.Digest, Job: in.Job,
		}).Get(ctx, nil)
	}
	if res.Previous == "" || res.Previous == res.Digest {
		if res.Previous == "" {
			return res, record()
		}
		return res, nil
	}
	res.Changed = true
	res.Rolled = map[string]int{}
	var errs []error
	for _, egg := range in.Eggs {
		n, err := rollPool(ctx, in, egg, res.Digest)
		res.Rolled[egg] = n
		if err != nil {
			errs = append(errs, fmt.Errorf("egg %s: %w", egg, err))
		}
	}
	if len(errs) > 0 {
		return res, temporal.NewNonRetryableApplicationError(errors.Join(errs...).Error(), contract.ErrTypeJobFailed, nil)
	}
	return res, record()
}

// rollPool recycles the runners an egg's pool has now, a batch at a time.
func rollPool(ctx workflow.Context, in contract.RunnerImageUpdateInput, egg, digest string) (int, error) {
	var a *activities.Activities
	status := func() (activities.PoolRunners, error) {
		var pr activities.PoolRunners
		err := workflow.ExecuteActivity(gitlabCtx(ctx), a.PoolStatus, egg).Get(ctx, &pr)
		return pr, err
	}
	pr, err := status()
	if err != nil {
		return 0, err
	}
	if !pr.Running {
		return 0, nil
	}
	var targets []string
	for _, r := range pr.Status.Runners {
		if r.Recycle == "" && (r.State == contract.PoolApex || r.State == contract.PoolNadir) {
			targets = append(targets, r.ID)
		}
	}
	slices.Sort(targets)
	pct := in.RollPercent
	if pct <= 0 {
		pct = contract.DefaultRollPercent
	}
	batch := max(1, len(targets)*pct/100)
	poll := in.Poll
	if poll <= 0 {
		poll = 10 * time.Second
	}
	rolled := 0
	for start := 0; start < len(targets); start += batch {
		ids := targets[start:min(start+batch, len(targets))]
		for _, id := range ids {
			err := workflow.SignalExternalWorkflow(ctx, contract.PoolWorkflowID(egg), "", contract.SignalRunnerAction, contract.RunnerAction{
				RunnerID: id, Action: contract.ActionRecycle, Policy: "runner_image_update", Actor: contract.JobActor(in.Job),
				Reason: fmt.Sprintf("image %s moved to %s", in.Image, digest),
			}).Get(ctx, nil)
			if err != nil {
				return rolled, fmt.Errorf("ask the pool to recycle %s: %w", id, err)
			}
		}
		deadline := workflow.Now(ctx).Add(rollBatchTimeout)
		for {
			if err := workflow.Sleep(ctx, poll); err != nil {
				return rolled, err
			}
			pr, err := status()
			if err != nil {
				return rolled, err
			}
			left := 0
			for _, r := range pr.Status.Runners {
				if slices.Contains(ids, r.ID) {
					left++
				}
			}
			if left == 0 || !pr.Running {
				break
			}
			if workflow.Now(ctx).After(deadline) {
				return rolled + len(ids) - left, fmt.Errorf("%d of %v still in the pool after %s", left, ids, rollBatchTimeout)
			}
		}
		rolled += len(ids)
	}
	return rolled, nil
}
