package workflows

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"go.temporal.io/sdk/workflow"
)

// versionProvisionCloudFallback marks ProvisionRunner runs that, when a
// cloud refuses the machine for capacity or quota, destroy what the apply
// made there and try the egg's next cloud.
const versionProvisionCloudFallback = "provision-cloud-fallback"

// fallbackCloud is a cloud to try next, with its provider.
type fallbackCloud struct {
	cloud    string
	provider fly.Provider
}

// nextCloud is the first cloud of the egg's preference order not tried
// yet where the runner can be made as it is: the same kind (a serverless
// runner needs a serverless size there, fly's Runner.KindOn), a provider
// block in the Nest, and its token where the first cloud's machines read
// it (the local provider reads the local store, clouds the configured
// backend). skipped says which clouds did not fit, and why.
func nextCloud(in contract.ProvisionRunnerInput, tried []string, kind string) (next fallbackCloud, skipped []string, ok bool) {
	first := tried[0]
	for _, c := range in.Egg.Runner.Clouds {
		if slices.Contains(tried, c) {
			continue
		}
		p, known := in.Providers[c]
		k, _ := contract.ChooseKind(in.Egg, in.Kind, c, in.Dormant)
		switch {
		case !known:
			skipped = append(skipped, c+": no provider block in the Nest")
		case (c == fly.CloudLocal) != (first == fly.CloudLocal):
			skipped = append(skipped, c+": its machines read runner tokens from another store")
		case k != kind:
			skipped = append(skipped, fmt.Sprintf("%s: its runners would be %s, not %s", c, k, kind))
		case kind == fly.RunnerServerless && in.Egg.Runner.KindOn(c).Shape == nil:
			skipped = append(skipped, c+": no serverless size there fits the egg's cpu and memory")
		default:
			return fallbackCloud{cloud: c, provider: p}, skipped, true
		}
	}
	return fallbackCloud{}, skipped, false
}

// applyMachine applies the runner's machine on apply.Cloud. When that
// cloud refuses for capacity or quota (activities.ErrTypeCloudCapacity),
// it destroys what the apply left there (DestroyMachine is idempotent),
// records the move (store and audit) and applies on the egg's next cloud
// that fits (nextCloud), until one takes it or none is left. apply, res
// and status follow the cloud the machine is on; res.CloudReason says which
// clouds refused and why. applied is the result of the apply that took.
// The error is the last apply's.
func applyMachine(ctx workflow.Context, in contract.ProvisionRunnerInput, apply *activities.ApplyMachineInput,
	res *contract.ProvisionRunnerResult, status *contract.ProvisionStatus, applied *activities.ApplyMachineResult) error {
	var a *activities.Activities
	err := workflow.ExecuteActivity(tofuCtx(ctx), a.ApplyMachine, *apply).Get(ctx, applied)
	refusal, refused := activities.CloudRefusalOf(err)
	if !refused || workflow.GetVersion(ctx, versionProvisionCloudFallback, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return err
	}
	log := workflow.GetLogger(ctx)
	tried := []string{apply.Cloud}
	var reasons []string
	for refused {
		if refusal.Cloud == "" {
			refusal.Cloud = apply.Cloud
		}
		reasons = append(reasons, fmt.Sprintf("%s refused (%s): %s", refusal.Cloud, refusal.Class, refusal.Message))
		next, skipped, ok := nextCloud(in, tried, apply.Kind)
		why := strings.Join(reasons, "; ")
		if len(skipped) > 0 {
			why += " (skipped " + strings.Join(skipped, "; ") + ")"
		}
		res.CloudReason = why
		if !ok {
			log.Warn("no cloud left to fall back to", "runner", apply.RunnerID, "reason", why)
			return fmt.Errorf("%s; no other cloud of the egg fits: %w", why, err)
		}
		status.Step = "destroying the machine on " + apply.Cloud
		if derr := workflow.ExecuteActivity(tofuCtx(ctx), a.DestroyMachine, activities.DestroyMachineInput{
			RunnerID: apply.RunnerID, Workspace: apply.RunnerID,
		}).Get(ctx, nil); derr != nil {
			return fmt.Errorf("destroy what %s left before falling back: %w", apply.Cloud, derr)
		}
		why = fmt.Sprintf("%s; falling back to %s", why, next.cloud)
		log.Warn("cloud refused the machine; falling back", "runner", apply.RunnerID, "from", apply.Cloud, "to", next.cloud, "reason", why)
		if rerr := workflow.ExecuteLocalActivity(storeCtx(ctx), a.RecordCloudFallback, activities.CloudFallbackInput{
			RunnerID: apply.RunnerID, Egg: in.Egg.Name, From: apply.Cloud, To: next.cloud, Reason: why,
		}).Get(ctx, nil); rerr != nil {
			return fmt.Errorf("record the fall back to %s: %w", next.cloud, rerr)
		}
		tried = append(tried, next.cloud)
		apply.Cloud, apply.Provider = next.cloud, next.provider
		res.Cloud, status.Cloud, res.CloudReason = next.cloud, next.cloud, why
		status.Step = "applying machine on " + next.cloud
		err = workflow.ExecuteActivity(tofuCtx(ctx), a.ApplyMachine, *apply).Get(ctx, applied)
		refusal, refused = activities.CloudRefusalOf(err)
	}
	return err
}
