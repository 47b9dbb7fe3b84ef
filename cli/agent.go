package cli

import (
	"github.com/gosling-ci/gosling/cli/agentcmd"
	"github.com/spf13/cobra"
)

// NewCmdAgent builds `gosling agent` (package agentcmd, which the small
// gosling-agent binary carries too) over the factory's streams.
func NewCmdAgent(f *Factory) *cobra.Command {
	return agentcmd.New(agentcmd.Deps{Version: f.Version, Out: f.IO.Out, ErrOut: f.IO.ErrOut, Logger: f.Logger, Masker: f.Masker, Getenv: f.Getenv})
}
