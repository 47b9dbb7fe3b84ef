// Command gosling-agent is the agent of Gosling's runner machines alone:
// `gosling agent ...` built from the agent's packages only, without the
// cloud SDKs, the Temporal client, the servers and the development
// stand-ins that gosling carries. Cloud VMs download it at first boot
// (MG/config.fly's agent.url) and the runner image carries it as
// /usr/local/bin/gosling; its command lines are gosling's, so the machine
// contract is the same for both.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/gosling-ci/gosling/cli/agentcmd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agentcmd.Main(ctx, filepath.Base(os.Args[0]), version, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}
