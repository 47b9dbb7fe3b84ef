package agent_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/rift"
	"github.com/gosling-ci/gosling/internal/rift/engine/podmantest"
)

// An egg with rift { engine = "podman" } gets Rift's engine context on its
// runners: the agent writes the runner's client certificate and puts
// DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH in config.toml's
// runner environment (not in gitlab-runner's own environment), so a job
// builds an image with the Docker CLI through Rift's mutual-TLS engine
// proxy, and the image is in the Podman behind it.
func TestAgentJobBuildsAnImageThroughRift(t *testing.T) {
	pm := podmantest.Start(t)
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := rift.New(ctx, rift.Config{
		Dir: t.TempDir(), Hosts: []string{"127.0.0.1"}, SweepInterval: time.Hour,
		Eggs:    []rift.EggConfig{{Name: "web", Bucket: "web", Engine: "podman", CacheBytes: 1 << 30, MaxAge: time.Hour, AccessKey: "GRWEB", SecretKey: "rift-web-secret-0451"}},
		Auth:    rift.NewStaticAuthenticator(map[string]rift.Runner{r.runner.Token: {ID: "r1", Egg: "web"}}),
		Engines: map[string]string{"podman": pm.Socket},
	})
	if err != nil {
		t.Fatal(err)
	}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	l := rift.Listeners{Control: listen(), S3: listen(), Engine: listen(), Mirror: listen()}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	r.cfg.Runner.Rift = &agentapi.RiftConfig{URL: "https://" + l.Control.Addr().String(), CA: string(srv.CA().CertPEM())}
	r.launch(agent.LaunchOptions{})

	p := r.pipeline(gitlabtest.JobSpec{Name: "image", Script: []string{
		`test -n "$DOCKER_HOST" && test -f "$DOCKER_CERT_PATH/key.pem"`,
		`mkdir -p ctx && echo built-through-rift > ctx/f && printf 'FROM scratch\nCOPY f /f\nLABEL gosling.rift=yes\n' > ctx/Dockerfile`,
		`DOCKER_BUILDKIT=0 docker build -t rift-job:1 ctx`,
		`docker image inspect rift-job:1 --format 'label={{index .Config.Labels "gosling.rift"}}'`,
	}})
	jobs := r.waitJobs(p.ID, 3*time.Minute)
	if jobs[0].Status != "success" {
		b, _ := os.ReadFile(agent.LogFile(r.dir))
		t.Fatalf("the job %s:\n%s", jobs[0].Status, b)
	}
	if out, err := pm.Run("image", "inspect", "rift-job:1", "--format", "{{.Labels}}"); err != nil || !strings.Contains(string(out), "gosling.rift:yes") {
		t.Errorf("the image is not in Podman behind Rift: %v: %s", err, out)
	}
	toml, _ := os.ReadFile(filepath.Join(r.dir, "config.toml"))
	for _, want := range []string{"DOCKER_HOST=tcp://" + l.Engine.Addr().String(), "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + filepath.Join(r.dir, "rift-engine")} {
		if !strings.Contains(string(toml), want) {
			t.Errorf("config.toml's environment lacks %s", want)
		}
	}
	if st, err := os.Stat(filepath.Join(r.dir, "rift-engine", "key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the engine's key: %v %v", st, err)
	}
}
