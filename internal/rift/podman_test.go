package rift_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/engine"
	"github.com/gosling-ci/gosling/internal/rift/engine/podmantest"
)

// TestDockerCLIThroughRiftToPodman runs Podman's Docker-compatible API on
// a unix socket and drives it with the Docker CLI through Rift's mutual
// TLS engine proxy, with a context written by engine.WriteDockerContext
// and one made by `docker context create` from engine.DockerContextArgs.
// Podman and the Docker CLI come from scripts/tools.sh podman docker.
func TestDockerCLIThroughRiftToPodman(t *testing.T) {
	pm := podmantest.Start(t)
	podman, docker, tmp, sock, base := pm.Bin, pm.Docker, pm.Dir, pm.Socket, pm.Args

	// An image to list: a one-file tarball imported into the test's storage.
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 5})
	tw.Write([]byte("hello"))
	tw.Close()
	tarPath := filepath.Join(tmp, "layer.tar")
	if err := os.WriteFile(tarPath, layer.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(podman, append(base, "import", tarPath, "rift-probe:1")...).CombinedOutput(); err != nil {
		t.Skipf("podman cannot import an image here: %v: %s", err, out)
	}

	// Egg api's engine is podman.
	h := start(t, t.TempDir(), options{engines: map[string]string{"podman": sock}})
	cr, err := h.client(apiToken).Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	dockerCmd := func(configDir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(docker, append([]string{"--config", configDir}, args...)...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST=", "DOCKER_CONTEXT=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}

	written := filepath.Join(tmp, "docker-written")
	if err := engine.WriteDockerContext(written, "rift", h.engine, cr.ClientTLS()); err != nil {
		t.Fatal(err)
	}
	if v := dockerCmd(written, "--context", "rift", "version", "--format", "{{.Server.Version}}"); !strings.HasPrefix(v, "4.") && !strings.HasPrefix(v, "5.") {
		t.Errorf("docker --context rift version: server %q; want Podman's", v)
	}
	if imgs := dockerCmd(written, "--context", "rift", "images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(imgs, "rift-probe:1") {
		t.Errorf("docker --context rift images = %q; want rift-probe:1", imgs)
	}

	created := filepath.Join(tmp, "docker-created")
	tlsDir := filepath.Join(tmp, "tls")
	if err := engine.WriteTLSDir(tlsDir, cr.ClientTLS()); err != nil {
		t.Fatal(err)
	}
	dockerCmd(created, engine.DockerContextArgs("rift", h.engine, tlsDir)...)
	if imgs := dockerCmd(created, "--context", "rift", "images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(imgs, "rift-probe:1") {
		t.Errorf("docker context create + images = %q", imgs)
	}

	// Podman's own remote client speaks no TLS: through a local socket
	// that engine.ForwardUnix serves, as the agent would set up.
	fwd := filepath.Join(tmp, "forward.sock")
	tc, err := cr.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(context.Background())
	fdone := make(chan error, 1)
	go func() { fdone <- engine.ForwardUnix(fctx, fwd, engine.Dialer(h.engine, tc)) }()
	t.Cleanup(func() { fcancel(); <-fdone })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(fwd); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the forward socket did not appear")
		}
	}
	remote := exec.Command(podman, "--remote", "--url", "unix://"+fwd, "images", "--format", "{{.Repository}}:{{.Tag}}")
	remote.Env = append(os.Environ(), "CONTAINER_HOST=", "CONTAINER_CONNECTION=")
	if out, err := remote.CombinedOutput(); err != nil || !strings.Contains(string(out), "rift-probe:1") {
		t.Errorf("podman --remote images through ForwardUnix and Rift: %v: %s", err, out)
	}

	// docker run -i: create, attach (a hijacked stream through the
	// proxy), start, and the container's output back.
	t.Run("attach", func(t *testing.T) {
		goBin, err := exec.LookPath("go")
		if err != nil {
			t.Skipf("no go command to build the container's program: %v", err)
		}
		src := filepath.Join(tmp, "upper")
		os.MkdirAll(filepath.Join(src, "rootfs"), 0o755)
		os.WriteFile(filepath.Join(src, "go.mod"), []byte("module upper\ngo 1.22\n"), 0o644)
		os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nimport (\n\t\"bytes\"\n\t\"io\"\n\t\"os\"\n)\n\nfunc main() {\n\tb, _ := io.ReadAll(os.Stdin)\n\tos.Stdout.Write(bytes.ToUpper(b))\n}\n"), 0o644)
		build := exec.Command(goBin, "build", "-o", filepath.Join(src, "rootfs", "upper"), ".")
		build.Dir, build.Env = src, append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build the container's program: %v: %s", err, out)
		}
		img := filepath.Join(src, "img.tar")
		if out, err := exec.Command("tar", "-C", filepath.Join(src, "rootfs"), "-cf", img, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v: %s", err, out)
		}
		if out, err := exec.Command(podman, append(base, "import", img, "rift-upper:1")...).CombinedOutput(); err != nil {
			t.Fatalf("podman import: %v: %s", err, out)
		}
		runUpper := func(env ...string) (string, error) {
			cmd := exec.Command(docker, "--config", written, "run", "--rm", "-i", "--ulimit", "nofile=1024:1024", "rift-upper:1", "/upper")
			cmd.Env = append(os.Environ(), env...)
			cmd.Stdin = strings.NewReader("through the rift")
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		// First straight at Podman's socket: where Podman cannot run a
		// container here, there is nothing to compare with.
		if out, err := runUpper("DOCKER_HOST=unix://"+sock, "DOCKER_CONTEXT="); err != nil {
			t.Skipf("podman cannot run an attached container on this machine, even without Rift: %v: %s", err, strings.TrimSpace(out))
		}
		out, err := runUpper("DOCKER_HOST=", "DOCKER_CONTEXT=rift")
		if err != nil || !strings.Contains(out, "THROUGH THE RIFT") {
			t.Errorf("docker run -i through Rift: %v: %s", err, out)
		}
	})

	// Egg web's runner (engine docker, not served here) is cut off.
	webCr, err := h.client(webToken).Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	webDir := filepath.Join(tmp, "docker-web")
	if err := engine.WriteDockerContext(webDir, "rift", h.engine, webCr.ClientTLS()); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(docker, "--config", webDir, "--context", "rift", "images")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "serves no docker engine") {
		t.Errorf("egg web's runner on egg api's engine: %v: %s", err, out)
	}
}
