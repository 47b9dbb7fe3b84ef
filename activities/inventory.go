package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
)

// Inventory lists the runner machines a cloud holds by the labels every
// machine carries (deployment, egg, runner: the local provider's in its
// processes' environment, a cloud's as labels or tags), and ends them. It
// is how reconciliation finds a machine whose OpenTofu state is gone, and
// how a teardown makes sure nothing of a runner is left running.
type Inventory interface {
	// Cloud is the fly cloud name (local, aws, yandex).
	Cloud() string
	// ListMachines lists the deployment's machines. An error means
	// nothing may be concluded about the cloud's machines.
	ListMachines(ctx context.Context) ([]LabeledMachine, error)
	// TerminateMachine ends a machine; one already gone is no error.
	TerminateMachine(ctx context.Context, m contract.MachineRef) error
}

// LabeledMachine is a machine found by its labels.
type LabeledMachine struct {
	contract.MachineRef
	Egg      string `json:"egg"`
	RunnerID string `json:"runner_id"`
}

// LocalInventory is the local provider's: agent processes and their
// children, found by the labels in their environment
// (agent.FindLocalMachines).
type LocalInventory struct {
	// Deployment is the deployment the labels name.
	Deployment string
	// StateDir holds the machines' work directories (machines/<runner>),
	// removed with the machine.
	StateDir string
}

var _ Inventory = LocalInventory{}

// home is where this worker keeps its machines' work directories: only
// machines under it are this worker's (another Gosling on the host with
// the same deployment name keeps its own elsewhere). Without StateDir, any.
func (l LocalInventory) home() string {
	if l.StateDir == "" {
		return ""
	}
	dir := l.StateDir
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return filepath.Join(dir, "machines")
}

// Cloud implements Inventory.
func (LocalInventory) Cloud() string { return fly.CloudLocal }

// ListMachines implements Inventory.
func (l LocalInventory) ListMachines(context.Context) ([]LabeledMachine, error) {
	found, err := agent.FindLocalMachines(l.Deployment, l.home())
	if err != nil {
		return nil, err
	}
	out := make([]LabeledMachine, 0, len(found))
	for _, m := range found {
		out = append(out, LabeledMachine{MachineRef: contract.MachineRef{Cloud: fly.CloudLocal, ID: m.RunnerID}, Egg: m.Egg, RunnerID: m.RunnerID})
	}
	return out, nil
}

// TerminateMachine implements Inventory: every process labelled with the
// runner is killed, then its work directory removed.
func (l LocalInventory) TerminateMachine(_ context.Context, m contract.MachineRef) error {
	if _, err := agent.KillLocalMachine(l.home(), m.ID, 10*time.Second); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	if l.StateDir == "" {
		return nil
	}
	return os.RemoveAll(MachineDir(l.StateDir, m.ID))
}

// labeledMachines lists the deployment's machines on every cloud with an
// inventory, by runner ID; clouds that could not be listed are returned in
// unreachable ("cloud: error").
func (a *Activities) labeledMachines(ctx context.Context) (map[string][]contract.MachineRef, []string) {
	out := map[string][]contract.MachineRef{}
	var unreachable []string
	for _, inv := range a.Inventories {
		ms, err := inv.ListMachines(ctx)
		if err != nil {
			unreachable = append(unreachable, inv.Cloud()+" machines: "+err.Error())
			continue
		}
		for _, m := range ms {
			out[m.RunnerID] = append(out[m.RunnerID], m.MachineRef)
		}
	}
	return out, unreachable
}

// terminateMachines ends machines through the inventory of their cloud.
func (a *Activities) terminateMachines(ctx context.Context, refs []contract.MachineRef) error {
	var errs []error
	for _, ref := range refs {
		done := false
		for _, inv := range a.Inventories {
			if inv.Cloud() != ref.Cloud {
				continue
			}
			if err := inv.TerminateMachine(ctx, ref); err != nil {
				errs = append(errs, fmt.Errorf("terminate %s machine %s: %w", ref.Cloud, ref.ID, err))
			}
			done = true
			break
		}
		if !done {
			errs = append(errs, fmt.Errorf("terminate %s machine %s: no inventory for cloud %s", ref.Cloud, ref.ID, ref.Cloud))
		}
	}
	return errors.Join(errs...)
}

// machinesOf lists the labelled machines of one runner: on the cloud its
// record names (and the local provider's processes), or on every cloud
// when no record says, so that another cloud's API being down holds up no
// teardown of this one.
func (a *Activities) machinesOf(ctx context.Context, runnerID string) ([]contract.MachineRef, error) {
	cloud := ""
	if a.Store != nil {
		if r, err := a.Store.GetRunner(ctx, runnerID); err == nil {
			cloud = r.Cloud
		}
	}
	var out []contract.MachineRef
	for _, inv := range a.Inventories {
		if cloud != "" && inv.Cloud() != cloud && inv.Cloud() != fly.CloudLocal {
			continue
		}
		ms, err := inv.ListMachines(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s machines: %w", inv.Cloud(), err)
		}
		for _, m := range ms {
			if m.RunnerID == runnerID {
				out = append(out, m.MachineRef)
			}
		}
	}
	return out, nil
}
