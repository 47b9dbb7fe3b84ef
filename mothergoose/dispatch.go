package mothergoose

import (
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/fly"
)

// JobEvent is what a Dispatch function learns of a Job Hook.
type JobEvent struct {
	Host        string
	ProjectID   int64
	ProjectPath string
	JobID       int64
	Name        string
	Status      string
	At          time.Time
}

// Dispatch maps a job event of an egg to the Temporal call that acts on it,
// or ok false when the event needs none. It runs in the webhook's request
// path and must not call anything: the call it returns is made by the
// server, or queued in the outbox when Temporal is unreachable.
type Dispatch func(nest *fly.Nest, egg *fly.Egg, ev JobEvent) (in Intent, ok bool, err error)

// ByRunnerKind is the default Dispatch. Eggs of VM runners (and auto eggs
// whose runners resolve to VMs) are served by the egg's Pool workflow, which
// keeps Apex and Nadir runners and reuses them (PoolDemand); serverless eggs
// get a runner per job, at most max_concurrent at once, through the egg's
// Gate workflow (GateDemand).
func ByRunnerKind(nest *fly.Nest, egg *fly.Egg, ev JobEvent) (Intent, bool, error) {
	if !contract.UsesPool(*egg) {
		return GateDemand(nest, egg, ev)
	}
	return PoolDemand(nest, egg, ev)
}

// GateDemand sends a serverless egg's pending job to the egg's Gate
// workflow as demand (signal-with-start: the first job starts it), and
// later statuses to the same gate. The gate starts the job's
// ProvisionRunner (ID contract.RunnerWorkflowID(host, job), so GitLab's
// retries join it) when fewer than max_concurrent of the egg's runners
// run, frees the slot when it ends, and passes the job's final status on.
func GateDemand(nest *fly.Nest, egg *fly.Egg, ev JobEvent) (Intent, bool, error) {
	return demand(nest, egg, ev, contract.GateWorkflowID(egg.Name), contract.WorkflowGate, func(cloud string) any {
		return contract.GateInput{Egg: *egg, Cloud: cloud, Provider: nest.MotherGoose.Providers[cloud], Providers: eggProviders(nest, egg)}
	})
}

// demand is what GateDemand and PoolDemand share: nothing before pending;
// a pending job signals-with-start the egg's workflow wfID (its input made
// by start for the job's cloud); a later status is signalled to it.
func demand(nest *fly.Nest, egg *fly.Egg, ev JobEvent, wfID, workflow string, start func(cloud string) any) (Intent, bool, error) {
	switch {
	case beforePending(ev.Status):
		return Intent{}, false, nil
	case ev.Status == "pending":
		cloud, err := jobCloud(egg)
		if err != nil {
			return Intent{}, false, err
		}
		in, err := SignalWithStartIntent(wfID, contract.SignalDemand, contract.Demand{Job: ev.jobRef(), At: ev.At}, workflow, start(cloud))
		return in, err == nil, err
	default:
		in, err := SignalIntent(wfID, contract.SignalJobStatus, contract.JobStatus{JobID: ev.JobID, Status: ev.Status, At: ev.At})
		return in, err == nil, err
	}
}

// eggProviders are the Nest's providers of an egg's clouds, for a runner
// to fall back on when a cloud refuses it; nil when the egg has one cloud
// and no fallback entries.
func eggProviders(nest *fly.Nest, egg *fly.Egg) map[string]fly.Provider {
	// One cloud and no fallback entries: nowhere else to ask.
	if len(egg.Runner.Clouds) < 2 && len(egg.Runner.Fallback) == 0 {
		return nil
	}
	out := map[string]fly.Provider{}
	for _, c := range egg.Runner.Clouds {
		if p, ok := nest.MotherGoose.Providers[c]; ok {
			out[c] = p
		}
	}
	return out
}

// PoolDemand sends a pending job to its egg's Pool workflow as demand
// (signal-with-start: the first job starts the pool), and later statuses to
// the same pool, which frees the job's slot when it ends.
func PoolDemand(nest *fly.Nest, egg *fly.Egg, ev JobEvent) (Intent, bool, error) {
	return demand(nest, egg, ev, contract.PoolWorkflowID(egg.Name), contract.WorkflowPool, func(cloud string) any {
		return contract.PoolInput{Egg: *egg, Cloud: cloud, Provider: nest.MotherGoose.Providers[cloud], Providers: eggProviders(nest, egg)}
	})
}

// PerJobRunner is a Dispatch that gives a pending job its own
// ProvisionRunner workflow directly (signal-with-start, so GitLab's
// retries join it), with no bound on how many run at once (GateDemand
// keeps max_concurrent), and signals every later status to that workflow.
// Statuses before pending need no runner yet and are only recorded.
func PerJobRunner(nest *fly.Nest, egg *fly.Egg, ev JobEvent) (Intent, bool, error) {
	wfID := contract.RunnerWorkflowID(ev.Host, ev.JobID)
	status := contract.JobStatus{JobID: ev.JobID, Status: ev.Status, At: ev.At}
	switch {
	case beforePending(ev.Status):
		return Intent{}, false, nil
	case ev.Status == "pending":
		cloud, err := jobCloud(egg)
		if err != nil {
			return Intent{}, false, err
		}
		job := ev.jobRef()
		in, err := SignalWithStartIntent(wfID, contract.SignalJobStatus, status, contract.WorkflowProvisionRunner, contract.ProvisionRunnerInput{
			RunnerID:  contract.RunnerIDFor(egg.Name, wfID),
			Egg:       *egg,
			Job:       &job,
			Cloud:     cloud,
			Provider:  nest.MotherGoose.Providers[cloud],
			Providers: eggProviders(nest, egg),
		})
		return in, err == nil, err
	default:
		in, err := SignalIntent(wfID, contract.SignalJobStatus, status)
		return in, err == nil, err
	}
}

// beforePending says whether a job is in a status that needs no runner
// yet: such events are only recorded.
func beforePending(status string) bool {
	switch status {
	case "created", "waiting_for_resource", "manual", "scheduled":
		return true
	}
	return false
}

// jobCloud is the cloud an egg's runners are made on.
func jobCloud(egg *fly.Egg) (string, error) {
	if len(egg.Runner.Clouds) == 0 {
		return "", fmt.Errorf("egg %s names no cloud", egg.Name)
	}
	return egg.Runner.Clouds[0], nil
}

func (ev JobEvent) jobRef() contract.JobRef {
	return contract.JobRef{Host: ev.Host, ProjectID: ev.ProjectID, ProjectPath: ev.ProjectPath, JobID: ev.JobID, Name: ev.Name}
}
