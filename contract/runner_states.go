package contract

// RunnerState is a runner's lifecycle state, as the store records it, the
// workflows move it and the API shows it.
type RunnerState string

// Runner lifecycle states.
const (
	StateProvisioning RunnerState = "provisioning" // GitLab runner being made, machine not yet applied
	StateRegistering  RunnerState = "registering"  // machine applied, waiting for the agent's ready signal
	StateActive       RunnerState = "active"       // Apex: running and taking jobs
	StateDormant      RunnerState = "dormant"      // Nadir: machine stopped, resumable
	StateDraining     RunnerState = "draining"     // paused in GitLab, finishing its jobs
	StateTerminating  RunnerState = "terminating"  // being torn down
	StateTerminated   RunnerState = "terminated"   // gone; kept for history
	StateFailed       RunnerState = "failed"       // a step failed; compensation follows
)

// transitions lists, for each state, the states it may move to.
var transitions = map[RunnerState][]RunnerState{
	StateProvisioning: {StateRegistering, StateTerminating, StateFailed},
	StateRegistering:  {StateActive, StateDormant, StateTerminating, StateFailed},
	StateActive:       {StateDormant, StateDraining, StateTerminating, StateFailed},
	StateDormant:      {StateActive, StateDraining, StateTerminating, StateFailed},
	StateDraining:     {StateActive, StateDormant, StateTerminating, StateFailed},
	StateTerminating:  {StateTerminated, StateFailed},
	StateFailed:       {StateTerminating, StateTerminated},
	StateTerminated:   {},
}

// AllStates lists every state in lifecycle order.
var AllStates = []RunnerState{StateProvisioning, StateRegistering, StateActive, StateDormant, StateDraining, StateTerminating, StateTerminated, StateFailed}

// CanTransition tells whether a runner may move from one state to another.
// Staying in the same state is not a transition.
func CanTransition(from, to RunnerState) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Valid tells whether s is a known state.
func (s RunnerState) Valid() bool {
	_, ok := transitions[s]
	return ok
}
