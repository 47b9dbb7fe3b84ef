// Command gosling runs GitLab CI runners across clouds from a GitOps Nest.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/gosling-ci/gosling/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	f := cli.NewFactory(version)
	code := cli.Execute(ctx, f, os.Args[1:])
	f.Flush()
	stop()
	os.Exit(code)
}
