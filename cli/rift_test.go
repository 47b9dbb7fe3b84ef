package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/rift"
	"github.com/gosling-ci/gosling/internal/rift/pki"
	"github.com/gosling-ci/gosling/internal/rift/riftapi"
)

func TestRiftServeFlagsToOptions(t *testing.T) {
	tio := withEnv(newTestIO("", false), map[string]string{"GOSLING_RIFT_DIR": "/var/lib/rift", "GOSLING_STORE": "postgres://db/gosling"})
	var got *RiftServeOptions
	cmd := NewCmdRiftServe(tio.f, func(o *RiftServeOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--nest", "nest", "--addr", "127.0.0.1:1", "--s3-addr", "", "--engine-addr", ":2377",
		"--host", "rift.example.com", "--host", "10.0.0.5", "--cert-lifetime", "12h", "--s3-insecure",
		"--docker-socket", "/run/docker.sock", "--containerd-socket", "/run/containerd/containerd.sock", "--dev"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Dir != "/var/lib/rift" || got.Nest != "nest" || got.Secrets.Nest != "nest" || got.Addr != "127.0.0.1:1" || got.S3Addr != "" ||
		got.EngineAddr != ":2377" || got.MirrorAddr != ":5000" || strings.Join(got.Hosts, ",") != "rift.example.com,10.0.0.5" ||
		got.CertLifetime != 12*time.Hour || !got.S3Insecure || got.DockerSocket != "/run/docker.sock" || got.PodmanSocket != "" ||
		got.ContainerdSocket != "/run/containerd/containerd.sock" || !got.Secrets.Dev || got.Store != "postgres://db/gosling" ||
		got.SweepInterval != rift.DefaultSweepInterval {
		t.Errorf("options = %+v", got)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rift", "serve", "--nest", "n"}, "--dir is required"},
		{[]string{"rift", "serve", "--dir", "d", "--nest", ""}, "--nest is required"},
		{[]string{"rift", "serve", "--dir", "d", "--nest", "n", "--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"rift", "serve", "--dir", "d", "--nest", "n", "--cert-lifetime", "1m"}, "--cert-lifetime must be"},
	} {
		tio := newTestIO("", false)
		if code := run(t, tio, c.args...); code != ExitError || !strings.Contains(tio.err.String(), c.want) {
			t.Errorf("%v: exit %d, %q", c.args, code, tio.err)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeNest writes a one-egg Nest; rift is the egg's rift block or "".
func writeNest(t *testing.T, rift string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range map[string]string{
		"MG/config.fly": "mothergoose {\n  cloud = \"local\"\n}\n",
		"Eggs/web/config.fly": `egg "web" {
  gitlab {
    host           = "gitlab.example.com"
    token          = "local://gitlab/token"
    webhook_secret = "local://gitlab/webhook"
  }
  project = "acme/web"
  runner {
    run_untagged = true
  }
` + rift + "}\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRiftServeRun(t *testing.T) {
	state := t.TempDir()
	noRift := writeNest(t, "")
	tio := newTestIO("", false)
	if code := run(t, tio, "rift", "serve", "--dir", t.TempDir(), "--nest", noRift, "--dev", "--state-dir", state); code != ExitInvalidConfig ||
		!strings.Contains(tio.err.String(), "no egg") {
		t.Errorf("a Nest without rift blocks: exit %d, %s", code, tio.err)
	}

	nest := writeNest(t, "  rift {\n    cache   = \"1GiB\"\n    max_age = \"2d\"\n  }\n")
	dir := t.TempDir()
	errOut := &syncBuffer{}
	f := &Factory{IO: &IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: errOut}, Getenv: func(string) (string, bool) { return "", false }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Execute(ctx, f, []string{"rift", "serve", "--dir", dir, "--nest", nest, "--dev", "--state-dir", state,
			"--addr", "127.0.0.1:0", "--s3-addr", "127.0.0.1:0", "--mirror-addr", "", "--engine-addr", "127.0.0.1:0", "--host", "127.0.0.1"})
	}()
	re := regexp.MustCompile(`control https://(127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(time.Minute); addr == ""; time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(errOut.String()); m != nil {
			addr = m[1]
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("rift serve did not start: %s", errOut)
		}
	}
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := riftapi.NewClient("https://"+addr, "", ca.Pool()).Check(ctx); err != nil {
		t.Errorf("health check: %v", err)
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Errorf("rift serve exited %d: %s", code, errOut)
	}
	if !strings.Contains(errOut.String(), "[web]") {
		t.Errorf("stderr: %s", errOut)
	}
}
