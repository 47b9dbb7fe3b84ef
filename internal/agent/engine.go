package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/engine"
	"github.com/gosling-ci/gosling/internal/rift/riftapi"
)

// Where the agent keeps Rift's engine context in its work directory.
const (
	// engineTLSDir holds the runner's client certificate, its key and
	// Rift's CA, in DOCKER_CERT_PATH's layout (ca.pem, cert.pem, key.pem).
	engineTLSDir = "rift-engine"
	// engineSocket is the local socket the agent forwards to a
	// containerd engine (nerdctl speaks no TLS).
	engineSocket = "rift-containerd.sock"
)

// engineContext is how an egg's jobs reach Rift's remote engine: the
// variables that point their container CLI at it, and what a docker
// executor's job containers must mount to use them.
type engineContext struct {
	env     []string
	volumes []string
}

// engineContext gets the runner a client certificate from Rift (its key
// made and kept on this machine) and writes the engine context of the
// egg's engine (fly's rift.engine):
//
//   - docker and podman (Rift serves Docker's Engine API for both):
//     DOCKER_HOST=tcp://<engine>, DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH,
//     the certificate written there, so `docker` (or any client of
//     Docker's API) in a job talks to Rift over mutual TLS;
//   - nerdctl (containerd's gRPC): a local socket the agent forwards to
//     Rift over mutual TLS, and CONTAINERD_ADDRESS pointing at it.
//
// The certificate is renewed each time the runner's configuration is
// written (each session of a serverless runner, each start of a VM's).
func (a *agent) engineContext(ctx context.Context, c *riftapi.Client, es riftapi.EngineSettings) (*engineContext, error) {
	if a.opts.WorkDir == "" {
		return nil, errors.New("no work directory to keep the engine's certificate in")
	}
	cr, err := c.Certificate(ctx)
	if err != nil {
		return nil, fmt.Errorf("a client certificate: %w", err)
	}
	switch es.Protocol {
	case "docker", "":
		dir := filepath.Join(a.opts.WorkDir, engineTLSDir)
		if err := engine.WriteTLSDir(dir, cr.ClientTLS()); err != nil {
			return nil, err
		}
		a.log.Info("jobs reach Rift's engine", "engine", es.Kind, "address", es.Address)
		return &engineContext{env: engine.DockerEnv(es.Address, dir), volumes: []string{dir + ":" + dir + ":ro"}}, nil
	case "containerd":
		tc, err := cr.TLSConfig()
		if err != nil {
			return nil, err
		}
		sock := filepath.Join(a.opts.WorkDir, engineSocket)
		a.forward.start(a, sock, engine.Dialer(es.Address, tc))
		a.log.Info("jobs reach Rift's engine through a local socket", "engine", es.Kind, "address", es.Address, "socket", sock)
		return &engineContext{env: engine.NerdctlEnv(sock), volumes: []string{sock + ":" + sock}}, nil
	}
	return nil, fmt.Errorf("rift's engine speaks %q, which the agent cannot reach", es.Protocol)
}

// forwarder keeps one local socket forwarded to Rift's containerd engine
// for the agent's life, with the newest certificate's dialer.
type forwarder struct {
	mu     sync.Mutex
	dial   func(ctx context.Context) (net.Conn, error)
	cancel context.CancelFunc
}

func (f *forwarder) start(a *agent, sock string, dial func(ctx context.Context) (net.Conn, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dial = dial
	if f.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		for ctx.Err() == nil {
			err := engine.ForwardUnix(ctx, sock, func(ctx context.Context) (net.Conn, error) {
				f.mu.Lock()
				d := f.dial
				f.mu.Unlock()
				return d(ctx)
			})
			if ctx.Err() == nil {
				a.log.Warn("the engine's local socket stopped; serving it again", "socket", sock, "error", err)
				time.Sleep(time.Second)
			}
		}
	}()
}

// stop ends the forwarding.
func (f *forwarder) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil {
		f.cancel()
		f.cancel = nil
	}
}
