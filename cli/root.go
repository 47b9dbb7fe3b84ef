// Package cli holds the gosling command and its subcommands.
package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/gosling-ci/gosling/cli/agentcmd"
	"github.com/spf13/cobra"
)

// NewCmdRoot builds the gosling command tree.
func NewCmdRoot(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gosling <command>",
		Short: "Run GitLab CI runners across clouds from a GitOps Nest",
		Long: `Gosling runs GitLab CI runners for many repositories from one GitOps
repository, the Nest, written in fly (a typed HCL dialect):

  Eggs/<name>/config.fly   one project (egg) or many (eggsbucket)
  Jobs/<name>.fly          self-management jobs on a cron schedule
  UF/config.fly            UglyFox: pruning policies
  MG/config.fly            MotherGoose: the servers' own infrastructure

Exit codes: 0 ok, 1 error, 2 cancelled, 3 invalid configuration, 4 authentication.`,
		Example: `  gosling init my-nest --cloud yandex
  gosling add egg web-app --dir my-nest --host gitlab.com --project acme/web-app \
    --token yc-lockbox://e6qexample/gitlab_token --webhook-secret yc-lockbox://e6qexample/webhook --tags docker
  gosling validate my-nest`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       f.Version,
	}
	cmd.PersistentFlags().BoolVar(&f.IO.NoInput, "no-input", false, "never prompt; a missing answer is an error")
	cmd.AddCommand(
		NewCmdInit(f, nil),
		NewCmdAdd(f),
		NewCmdValidate(f, nil),
		NewCmdFmt(f, nil),
		NewCmdServer(f, nil),
		NewCmdWorker(f, nil),
		NewCmdAgent(f),
		NewCmdRunners(f),
		NewCmdJobs(f),
		NewCmdSecrets(f),
		NewCmdUglyFox(f),
		NewCmdAudit(f, nil),
		NewCmdCost(f, nil),
		NewCmdDev(f, nil),
		NewCmdPool(f),
		NewCmdRift(f),
		NewCmdHealthcheck(f, nil),
		NewCmdAuthorizer(f, nil),
		NewCmdPlan(f, nil),
		NewCmdDeploy(f, nil),
		NewCmdRollback(f, nil),
	)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &flagError{err} })
	return cmd
}

// Execute runs the command line and returns the process exit code.
func Execute(ctx context.Context, f *Factory, args []string) int {
	root := NewCmdRoot(f)
	root.SetArgs(args)
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var fe *flagError
	var ue *agentcmd.UsageError
	var ce *agentcmd.ConfigError
	var ee *CodeError
	switch {
	case errors.As(err, &fe):
		fmt.Fprintf(f.IO.ErrOut, "error: %v\nRun 'gosling %s --help' for usage.\n", fe.error, commandPath(root, args))
		return ExitError
	case errors.As(err, &ue):
		fmt.Fprintf(f.IO.ErrOut, "error: %v\nRun 'gosling %s --help' for usage.\n", ue, commandPath(root, args))
		return ExitError
	case errors.As(err, &ce):
		fmt.Fprintf(f.IO.ErrOut, "error: %v\n", ce.Err)
		return ExitInvalidConfig
	case errors.As(err, &ee):
		if ee.Err != nil {
			fmt.Fprintf(f.IO.ErrOut, "error: %v\n", ee.Err)
		}
		return ee.Code
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(f.IO.ErrOut, "cancelled")
		return ExitCancelled
	}
	fmt.Fprintf(f.IO.ErrOut, "error: %v\n", err)
	return ExitError
}

func commandPath(root *cobra.Command, args []string) string {
	c, _, err := root.Find(args)
	if err != nil || c == root {
		return "help"
	}
	p := c.CommandPath()
	if len(p) > len(root.Name())+1 {
		return p[len(root.Name())+1:]
	}
	return p
}
