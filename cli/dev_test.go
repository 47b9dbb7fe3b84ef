package cli

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A `gosling dev` that cannot start (its API's port is taken) says so and
// leaves no state directory behind.
func TestDevFailedStartLeavesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	state := filepath.Join(t.TempDir(), "state")
	tio := newTestIO("", false)
	tio.f.Logger = discardLogger()
	code := run(t, tio, "dev", "--nest", filepath.Join("..", "examples", "nest"), "--state-dir", state,
		"--api-addr", busy.Addr().String(), "--temporal", "/bin/true", "--tofu", "/bin/true")
	if code == 0 || !strings.Contains(tio.err.String(), "is not free") {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("a failed start left %s: %v", state, err)
	}
}
