package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"syscall"
	"time"

	"github.com/gosling-ci/gosling/internal/childproc"
	"go.temporal.io/sdk/client"
)

// devTemporal is the Temporal dev server `gosling dev` runs: the Temporal
// CLI's `server start-dev`, as testsuite.StartDevServer starts it, but a
// child that dies with gosling dev however gosling dev ends, so a killed
// run leaves no server holding its ports and database for the next one.
type devTemporal struct {
	cmd    *exec.Cmd
	client client.Client
	done   chan struct{}
}

// devTemporalOptions say how to run it.
type devTemporalOptions struct {
	Binary   string
	HostPort string
	UIPort   int
	// DBFile keeps its state across runs.
	DBFile string
	Log    io.Writer
	Client client.Options
}

// startDevTemporal starts the server and waits, up to a minute, until a
// client reaches it. The client's HostPort and Namespace are set from o.
func startDevTemporal(ctx context.Context, o devTemporalOptions) (*devTemporal, error) {
	host, port, err := net.SplitHostPort(o.HostPort)
	if err != nil {
		return nil, fmt.Errorf("temporal address %q: %w", o.HostPort, err)
	}
	args := []string{"server", "start-dev", "--ip", host, "--port", port, "--namespace", "default",
		"--dynamic-config-value", "frontend.enableServerVersionCheck=false",
		"--log-level", "warn", "--db-filename", o.DBFile, "--ui-port", fmt.Sprint(o.UIPort)}
	cmd := exec.Command(o.Binary, args...)
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	cmd.SysProcAttr = childproc.DieWithParent()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Binary, err)
	}
	t := &devTemporal{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(t.done) }()
	co := o.Client
	co.HostPort, co.Namespace = o.HostPort, "default"
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := client.DialContext(ctx, co)
		if err == nil {
			t.client = c
			return t, nil
		}
		select {
		case <-t.done:
			return nil, fmt.Errorf("the Temporal dev server exited: %v", cmd.ProcessState)
		case <-ctx.Done():
			t.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.stop()
			return nil, fmt.Errorf("the Temporal dev server does not answer on %s after a minute: %w", o.HostPort, err)
		}
	}
}

// Client is a client of the server.
func (t *devTemporal) Client() client.Client { return t.client }

// stop closes the client and stops the server gracefully (SIGINT), killing
// it after 20 seconds.
func (t *devTemporal) stop() {
	if t.client != nil {
		t.client.Close()
	}
	_ = t.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-t.done:
	case <-time.After(20 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.done
	}
}
