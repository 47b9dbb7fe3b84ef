// Package podmantest starts the real Podman for tests: `podman system
// service` on a unix socket, serving Docker's Engine API, over a storage
// of its own (vfs in a temporary directory: no overlay mounts, and the
// machine's images are left alone). It is no stand-in: a test that cannot
// start Podman here is skipped, saying why.
package podmantest

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Podman is a running Podman service.
type Podman struct {
	// Socket is the unix socket of its Docker-compatible API.
	Socket string
	// Args are the global flags that reach its storage with the podman
	// CLI (podman <Args...> images).
	Args []string
	// Bin and Docker are the podman and docker programs.
	Bin, Docker string
	// Dir is its temporary directory.
	Dir string
}

// Start starts Podman's service, waits until its API answers and stops it
// when the test ends (the containers it ran first). It skips the test when
// podman or the Docker CLI is not installed (scripts/tools.sh podman
// docker) or Podman cannot run here.
func Start(t *testing.T) *Podman {
	t.Helper()
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skipf("podman is not installed (scripts/tools.sh podman): %v", err)
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skipf("the Docker CLI is not installed (scripts/tools.sh docker): %v", err)
	}
	tmp, err := os.MkdirTemp("", "rift-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	p := &Podman{Socket: filepath.Join(tmp, "podman.sock"), Bin: podman, Docker: docker, Dir: tmp,
		Args: []string{"--root", filepath.Join(tmp, "root"), "--runroot", filepath.Join(tmp, "run"), "--storage-driver", "vfs",
			"--cgroup-manager", "cgroupfs", "--events-backend", "file", "--tmpdir", filepath.Join(tmp, "tmp")}}
	ctx, cancel := context.WithCancel(context.Background())
	svc := exec.CommandContext(ctx, podman, append(p.Args, "system", "service", "--time=0", "unix://"+p.Socket)...)
	var svcErr bytes.Buffer
	svc.Stderr = &svcErr
	if err := svc.Start(); err != nil {
		cancel()
		t.Skipf("podman cannot start here: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = svc.Wait(); close(exited) }()
	t.Cleanup(func() { cancel(); <-exited })
	t.Cleanup(func() {
		// The containers the test ran go before the service does: their
		// conmon cleanup would outlive the test otherwise.
		_ = exec.Command(podman, append(p.Args, "rm", "--all", "--force", "--time", "0")...).Run()
	})
	unix := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", p.Socket)
	}}, Timeout: 5 * time.Second}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		select {
		case <-exited:
			t.Skipf("podman system service exited (no user namespaces or cgroups here?): %s", svcErr.String())
		default:
		}
		if resp, err := unix.Get("http://podman/_ping"); err == nil {
			resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Skipf("podman's API did not answer within a minute: %s", svcErr.String())
		}
	}
}

// Run runs the podman CLI on the service's storage.
func (p *Podman) Run(args ...string) ([]byte, error) {
	return exec.Command(p.Bin, append(p.Args, args...)...).CombinedOutput()
}
