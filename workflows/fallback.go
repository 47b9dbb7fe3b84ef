package workflows

import (
	"cmp"
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

// fallbackPlacement is a placement to try next, with its cloud's provider.
type fallbackPlacement struct {
	fly.Placement
	provider fly.Provider
}

// placementOrder is the order the runner's machine is asked for in: the
// egg's placements (fly.Runner.Placements) from its first cloud, the one
// ProvisionRunnerInput names or the egg's first.
func placementOrder(in contract.ProvisionRunnerInput) []fly.Placement {
	first := in.Cloud
	if first == "" && len(in.Egg.Runner.Clouds) > 0 {
		first = in.Egg.Runner.Clouds[0]
	}
	return in.Egg.Runner.Placements(first)
}

// firstPlacement is where the machine is asked for first: the first of
// the order that the pool does not avoid (ProvisionRunnerInput.Avoid) on
// a cloud with a provider, else the order's first. The provider is the
// input's for the input's cloud, else the Nest's for that cloud.
func firstPlacement(in contract.ProvisionRunnerInput) fallbackPlacement {
	order := placementOrder(in)
	head := fallbackPlacement{Placement: order[0], provider: in.Provider}
	if len(in.Avoid) == 0 {
		return head
	}
	for _, p := range order {
		if slices.Contains(in.Avoid, p) {
			continue
		}
		if p.Cloud == head.Cloud {
			return fallbackPlacement{Placement: p, provider: in.Provider}
		}
		if prov, ok := in.Providers[p.Cloud]; ok {
			return fallbackPlacement{Placement: p, provider: prov}
		}
	}
	return head
}

// nextPlacement is the first placement of the egg's order not tried yet
// where the runner can be made as it is: not one the pool avoids after a
// recent refusal, the same kind (a serverless runner needs a serverless
// size there, fly's Runner.KindOn), a provider block in the Nest, and its
// token where the first cloud's machines read it (the local provider
// reads the local store, clouds the configured backend). skipped says
// which placements did not fit, and why.
func nextPlacement(in contract.ProvisionRunnerInput, tried []fly.Placement, kind string) (next fallbackPlacement, skipped []string, ok bool) {
	first := tried[0].Cloud
	for _, pl := range placementOrder(in) {
		if slices.Contains(tried, pl) {
			continue
		}
		c := pl.Cloud
		p, known := in.Providers[c]
		k, _ := contract.ChooseKind(in.Egg, in.Kind, c, in.Dormant)
		switch {
		case slices.Contains(in.Avoid, pl):
			skipped = append(skipped, pl.String()+": refused lately; the pool leaves it alone for its cool-down")
		case !known:
			skipped = append(skipped, c+": no provider block in the Nest")
		case (c == fly.CloudLocal) != (first == fly.CloudLocal):
			skipped = append(skipped, c+": its machines read runner tokens from another store")
		case k != kind:
			skipped = append(skipped, fmt.Sprintf("%s: its runners would be %s, not %s", c, k, kind))
		case kind == fly.RunnerServerless && in.Egg.Runner.KindOn(c).Shape == nil:
			skipped = append(skipped, c+": no serverless size there fits the egg's cpu and memory")
		default:
			return fallbackPlacement{Placement: pl, provider: p}, skipped, true
		}
	}
	return fallbackPlacement{}, skipped, false
}

// placementOf is the placement an apply asks for.
func placementOf(apply *activities.ApplyMachineInput) fly.Placement {
	return fly.Placement{Cloud: apply.Cloud, Capacity: cmp.Or(apply.Capacity, fly.CapacityOnDemand), Zone: apply.Zone}
}

// applyMachine applies the runner's machine at apply's placement (cloud,
// capacity type, zone). When that placement is refused for capacity or
// quota (activities.ErrTypeCloudCapacity), it destroys what the apply
// left there (DestroyMachine is idempotent), records the move (store and
// audit) and applies at the egg's next placement that fits
// (nextPlacement), until one takes it or none is left. apply, res and
// status follow the placement the machine is at; res.CloudReason says
// which placements refused and why, res.Refusals lists them. applied is
// the result of the apply that took. The error is the last apply's.
func applyMachine(ctx workflow.Context, in contract.ProvisionRunnerInput, apply *activities.ApplyMachineInput,
	res *contract.ProvisionRunnerResult, status *contract.ProvisionStatus, applied *activities.ApplyMachineResult) error {
	var a *activities.Activities
	err := workflow.ExecuteActivity(tofuCtx(ctx), a.ApplyMachine, *apply).Get(ctx, applied)
	refusal, refused := activities.CloudRefusalOf(err)
	if !refused || workflow.GetVersion(ctx, versionProvisionCloudFallback, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		if refused {
			res.Refusals = append(res.Refusals, contract.CapacityRefusal{Placement: placementOf(apply), Class: refusal.Class, Message: refusal.Message})
		}
		return err
	}
	log := workflow.GetLogger(ctx)
	tried := []fly.Placement{placementOf(apply)}
	var reasons []string
	for refused {
		if refusal.Cloud == "" {
			refusal.Cloud = apply.Cloud
		}
		from := placementOf(apply)
		res.Refusals = append(res.Refusals, contract.CapacityRefusal{Placement: from, Class: refusal.Class, Message: refusal.Message})
		reasons = append(reasons, fmt.Sprintf("%s refused (%s): %s", placementName(from), refusal.Class, refusal.Message))
		next, skipped, ok := nextPlacement(in, tried, apply.Kind)
		why := strings.Join(reasons, "; ")
		if len(skipped) > 0 {
			why += " (skipped " + strings.Join(skipped, "; ") + ")"
		}
		res.CloudReason = why
		if !ok {
			log.Warn("no placement left to fall back to", "runner", apply.RunnerID, "reason", why)
			return fmt.Errorf("%s; no other cloud of the egg fits: %w", why, err)
		}
		status.Step = "destroying the machine on " + apply.Cloud
		if derr := workflow.ExecuteActivity(tofuCtx(ctx), a.DestroyMachine, activities.DestroyMachineInput{
			RunnerID: apply.RunnerID, Workspace: apply.RunnerID,
		}).Get(ctx, nil); derr != nil {
			return fmt.Errorf("destroy what %s left before falling back: %w", apply.Cloud, derr)
		}
		why = fmt.Sprintf("%s; falling back to %s", why, placementName(next.Placement))
		log.Warn("cloud refused the machine; falling back", "runner", apply.RunnerID, "from", from.String(), "to", next.String(), "reason", why)
		fb := activities.CloudFallbackInput{RunnerID: apply.RunnerID, Egg: in.Egg.Name, From: apply.Cloud, To: next.Cloud, Reason: why}
		if from.Capacity != fly.CapacityOnDemand || next.CapacityType() != fly.CapacityOnDemand || from.Zone != "" || next.Zone != "" || from.Cloud == next.Cloud {
			fb.FromPlacement, fb.ToPlacement = from.String(), next.String()
		}
		if rerr := workflow.ExecuteLocalActivity(storeCtx(ctx), a.RecordCloudFallback, fb).Get(ctx, nil); rerr != nil {
			return fmt.Errorf("record the fall back to %s: %w", next.Cloud, rerr)
		}
		tried = append(tried, next.Placement)
		apply.Cloud, apply.Provider, apply.Capacity, apply.Zone = next.Cloud, next.provider, next.CapacityType(), next.Zone
		res.Cloud, status.Cloud, res.CloudReason = next.Cloud, next.Cloud, why
		res.Capacity, res.Zone = apply.Capacity, apply.Zone
		status.Step = "applying machine on " + next.Cloud
		err = workflow.ExecuteActivity(tofuCtx(ctx), a.ApplyMachine, *apply).Get(ctx, applied)
		refusal, refused = activities.CloudRefusalOf(err)
	}
	return err
}

// placementName is how a reason names a placement: its cloud alone when
// it is on demand in the provider's zone, as reasons always did.
func placementName(p fly.Placement) string {
	if p.CapacityType() == fly.CapacityOnDemand && p.Zone == "" {
		return p.Cloud
	}
	return p.String()
}
