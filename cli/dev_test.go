package cli

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/fly"
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

// The banner shows the test server's project IDs, and its hand-sent hook
// uses the shipped payload with the ID and webhook secret of the egg that
// serves the payload's project.
func TestDevBannerHandSentHook(t *testing.T) {
	nest, diags := fly.LoadNest(filepath.Join("..", "examples", "nest"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tio := newTestIO("", false)
	st := DevState{APIURL: "http://127.0.0.1:8080", GitLabURL: "http://127.0.0.1:8929", GitLabTest: true, StateDir: ".gosling",
		Projects: map[string]int64{"acme/web-app": 51235, "data-group/service-a": 1}}
	printDevBanner(tio.f.IO, st, nest)
	out := tio.out.String()
	for _, want := range []string{
		"acme/web-app                 id 51235",
		"jq '.project_id = 51235 | .project.id = 51235' examples/hooks/job-hook.json > job-hook.json",
		`.webhook_secrets["web-app"]`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
}
