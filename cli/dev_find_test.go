package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A running `gosling dev` is found from any directory by its registration
// file under $XDG_STATE_HOME (else ~/.local/state), $GOSLING_DEV_STATE
// wins, a registration whose dev is gone is not used, and a dev removes
// only its own registration.
func TestDevStateDirFindsARegisteredDev(t *testing.T) {
	home, state := t.TempDir(), t.TempDir()
	env := map[string]string{"HOME": home}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if got := devStateDir(getenv); got != defaultDevState {
		t.Fatalf("nothing registered: %q", got)
	}
	// This process stands in for the dev.
	b, _ := json.Marshal(DevState{APIURL: "http://127.0.0.1:18080", PID: os.Getpid()})
	if err := os.WriteFile(filepath.Join(state, "dev.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	unregister, err := registerDev(getenv, state)
	if err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(home, ".local", "state", "gosling", "dev")
	if _, err := os.Stat(reg); err != nil {
		t.Fatalf("no registration at ~/.local/state/gosling/dev: %v", err)
	}
	if got := devStateDir(getenv); got != state {
		t.Errorf("registered dev not found: %q, want %q", got, state)
	}
	if st, err := findDev(getenv, "", false); err != nil || st.APIURL != "http://127.0.0.1:18080" {
		t.Errorf("findDev: %+v %v", st, err)
	}
	env[envDevState] = "/elsewhere"
	if got := devStateDir(getenv); got != "/elsewhere" {
		t.Errorf("$%s lost to the registration: %q", envDevState, got)
	}
	delete(env, envDevState)

	// $XDG_STATE_HOME moves the registration.
	xdg := t.TempDir()
	env["XDG_STATE_HOME"] = xdg
	if got := devStateDir(getenv); got != defaultDevState {
		t.Errorf("a registration outside $XDG_STATE_HOME was used: %q", got)
	}
	if _, err := registerDev(getenv, state); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(xdg, "gosling", "dev")); err != nil || devStateDir(getenv) != state {
		t.Errorf("registration under $XDG_STATE_HOME: %v, found %q", err, devStateDir(getenv))
	}
	delete(env, "XDG_STATE_HOME")

	// A dev that is gone is not used, and its registration is not ours
	// to remove.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(devRegistration{StateDir: state, PID: gone.Process.Pid})
	if err := os.WriteFile(reg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := devStateDir(getenv); got != defaultDevState {
		t.Errorf("the registration of a dev that is gone was used: %q", got)
	}
	unregister()
	if _, err := os.Stat(reg); err != nil {
		t.Errorf("a dev removed another's registration: %v", err)
	}
	if _, err := registerDev(getenv, state); err != nil {
		t.Fatal(err)
	}
	unregister()
	if _, err := os.Stat(reg); !os.IsNotExist(err) {
		t.Errorf("the dev's own registration is left: %v", err)
	}
}

// Without a running dev, the commands that need one say how to name it:
// --state-dir where the command has it, and $GOSLING_DEV_STATE.
func TestNoDevErrorNamesStateDir(t *testing.T) {
	home := t.TempDir()
	tio := newTestIO("", false)
	tio.f.Getenv = func(k string) (string, bool) {
		if k == "HOME" {
			return home, true
		}
		return "", false
	}
	if code := run(t, tio, "dev", "simulate", "job", "--egg", "web-app", "--state-dir", filepath.Join(home, "none")); code == 0 {
		t.Fatal("exit 0 without a dev")
	}
	for _, want := range []string{"no running `gosling dev` found in " + filepath.Join(home, "none"), "--state-dir", "$GOSLING_DEV_STATE", "make run",
		filepath.Join(home, ".local", "state", "gosling", "dev")} {
		if !strings.Contains(tio.err.String(), want) {
			t.Errorf("the error lacks %q:\n%s", want, tio.err)
		}
	}
	if err := errNoDev(tio.f.Getenv, ".gosling", os.ErrNotExist, false); !strings.Contains(err.Error(), "$GOSLING_DEV_STATE (the --state-dir it was started with)") {
		t.Errorf("the API commands' error: %v", err)
	}
}

// --api's help reads as a sentence: pflag takes a backquoted word for the
// value's name, and quotes are not doubled.
func TestAPIFlagHelp(t *testing.T) {
	tio := newTestIO("", false)
	if code := run(t, tio, "runners", "list", "--help"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	var line string
	for _, l := range strings.Split(tio.out.String(), "\n") {
		if strings.Contains(l, "--api ") {
			line = l
		}
	}
	if !strings.Contains(line, "--api string") || strings.Contains(line, "''") || !strings.Contains(line, "$GOSLING_API_URL, else the API of the running gosling dev") {
		t.Errorf("--api help: %q", line)
	}
}
