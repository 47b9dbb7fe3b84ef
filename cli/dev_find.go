package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// envDevState names the state directory of a running `gosling dev` (the
// --state-dir it was started with); `gosling dev` starts there too.
const envDevState = "GOSLING_DEV_STATE"

// defaultDevState is `gosling dev`'s --state-dir when $GOSLING_DEV_STATE
// is not set.
const defaultDevState = ".gosling"

// devRegistration is what a running `gosling dev` writes to its
// registration file (devRegistrationPath), so that commands run from any
// directory find it.
type devRegistration struct {
	StateDir string `json:"state_dir"`
	PID      int    `json:"pid"`
}

// devRegistrationPath is the registration file of the running `gosling
// dev`: $XDG_STATE_HOME/gosling/dev, else ~/.local/state/gosling/dev (the
// XDG Base Directory default); "" when neither a state home nor a home
// directory is known.
func devRegistrationPath(getenv func(string) (string, bool)) string {
	if d, ok := getenv("XDG_STATE_HOME"); ok && filepath.IsAbs(d) {
		return filepath.Join(d, "gosling", "dev")
	}
	if h, ok := getenv("HOME"); ok && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "gosling", "dev")
	}
	return ""
}

// registerDev writes the registration file naming stateDir (absolute) and
// this process, and returns what removes it again, unless a later `gosling
// dev` has registered itself since.
func registerDev(getenv func(string) (string, bool), stateDir string) (unregister func(), err error) {
	path := devRegistrationPath(getenv)
	if path == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("register gosling dev in %s: %w", path, err)
	}
	b, _ := json.Marshal(devRegistration{StateDir: stateDir, PID: os.Getpid()})
	if err := writeFileAtomic(path, b); err != nil {
		return nil, fmt.Errorf("register gosling dev in %s: %w", path, err)
	}
	return func() {
		if reg, ok := readDevRegistration(path); ok && reg.PID == os.Getpid() {
			_ = os.Remove(path)
		}
	}, nil
}

func readDevRegistration(path string) (devRegistration, bool) {
	var reg devRegistration
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &reg) != nil || reg.StateDir == "" {
		return devRegistration{}, false
	}
	return reg, true
}

// devStateDir is the state directory of the `gosling dev` that commands
// talk to: $GOSLING_DEV_STATE when set; else ./.gosling when a dev.json is
// there (a dev started in this directory); else the directory the
// registration file names, when the dev that wrote it still runs; else
// ./.gosling, where nothing will be found.
func devStateDir(getenv func(string) (string, bool)) string {
	if v, ok := getenv(envDevState); ok && v != "" {
		return v
	}
	if _, err := os.Stat(filepath.Join(defaultDevState, "dev.json")); err == nil {
		return defaultDevState
	}
	if path := devRegistrationPath(getenv); path != "" {
		if reg, ok := readDevRegistration(path); ok && processRuns(reg.PID) {
			if _, err := os.Stat(filepath.Join(reg.StateDir, "dev.json")); err == nil {
				return reg.StateDir
			}
		}
	}
	return defaultDevState
}

// processRuns tells whether a process with this pid exists (EPERM: it
// does, as another user's).
func processRuns(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// errNoDev is the error of a command that found no running `gosling dev`
// in dir: how to start one, and how to name one started elsewhere (with
// --state-dir, when the command has that flag, or $GOSLING_DEV_STATE).
func errNoDev(getenv func(string) (string, bool), dir string, err error, stateDirFlag bool) error {
	where := "a registration file"
	if p := devRegistrationPath(getenv); p != "" {
		where = p
	}
	name := "$" + envDevState + " (the --state-dir it was started with)"
	if stateDirFlag {
		name = "--state-dir or $" + envDevState
	}
	return fmt.Errorf("no running `gosling dev` found in %s (%v), nor by %s: start one with `make run`, or name the state directory of one started elsewhere with %s", dir, err, where, name)
}

// devStateUsage is the --state-dir help of the commands that talk to a
// running `gosling dev` (its default is found at run time: devStateDir).
const devStateUsage = "state directory of the running gosling dev (default: $" + envDevState + ", else ./.gosling, else the dev registered in $XDG_STATE_HOME/gosling/dev or ~/.local/state/gosling/dev)"

// findDev reads the dev.json of the running `gosling dev` in dir, or in
// the directory devStateDir finds when dir is "". The error says how to
// start or name one (errNoDev; stateDirFlag: the command has --state-dir).
func findDev(getenv func(string) (string, bool), dir string, stateDirFlag bool) (DevState, error) {
	if dir == "" {
		dir = devStateDir(getenv)
	}
	st, err := readDevState(dir)
	if err != nil {
		return st, errNoDev(getenv, dir, err, stateDirFlag)
	}
	return st, nil
}
