package envoy

import "time"

// State is where the supervised Envoy is in its life.
type State int

const (
	// StateNew: Run has not launched Envoy yet.
	StateNew State = iota
	// StateStarting: the process is being launched.
	StateStarting
	// StateRunning: the process exists. Whether Envoy is LIVE and has its
	// config is the admin client's question (Admin.Readiness), not this one.
	StateRunning
	// StateDraining: listeners were told to drain; Envoy still serves.
	StateDraining
	// StateStopped: Envoy was sent SIGTERM (then SIGKILL after a grace period).
	StateStopped
	// StateExited: the process is gone. In VM mode a restart may follow.
	StateExited
)

func (s State) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateStarting:
		return "starting"
	case StateRunning:
		return "running"
	case StateDraining:
		return "draining"
	case StateStopped:
		return "stopped"
	case StateExited:
		return "exited"
	}
	return "unknown"
}

// Transition is what observers are told on each state change.
type Transition struct {
	From, To State
	// PID of the Envoy process concerned (0 before launch).
	PID int
	// Status describes how the process ended (To == StateExited).
	Status string
	// Crashed is true when Envoy exited without being asked to.
	Crashed bool
	// Backoff is the delay before the restart that follows a crash in VM
	// mode (To == StateExited); 0 when no restart follows.
	Backoff time.Duration
	// Starts counts launches so far, including this process.
	Starts int
}

// Observer is called synchronously on every transition, in order; it must
// not block.
type Observer func(Transition)
