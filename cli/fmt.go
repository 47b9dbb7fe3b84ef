package cli

import (
	"fmt"
	"os"

	"github.com/gosling-ci/gosling/fly"
	"github.com/spf13/cobra"
)

// FmtOptions are the inputs of `gosling fmt`.
type FmtOptions struct {
	IO    *IOStreams
	Paths []string
	Check bool
}

// NewCmdFmt builds `gosling fmt`.
func NewCmdFmt(f *Factory, runF func(*FmtOptions) error) *cobra.Command {
	opts := &FmtOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "fmt [path...]",
		Short: "Rewrite .fly files in canonical form",
		Long: `Fmt rewrites .fly files in the canonical layout (aligned equals signs,
two-space indentation). Directories are searched for .fly files. Files that
do not parse are reported and left untouched.

With --check nothing is written: the names of files that need formatting
are printed and the exit status is 3 if there are any.`,
		Example: `  gosling fmt
  gosling fmt --check examples/nest`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Paths = args
			if len(opts.Paths) == 0 {
				opts.Paths = []string{"."}
			}
			if runF != nil {
				return runF(opts)
			}
			return fmtRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Check, "check", false, "only report files that need formatting")
	return cmd
}

func fmtRun(opts *FmtOptions) error {
	var files []string
	for _, p := range opts.Paths {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		found, err := fly.FlyFiles(p)
		if err != nil {
			return err
		}
		files = append(files, found...)
	}
	results, diags := fly.FormatFiles(files, !opts.Check)
	if len(diags.Diagnostics) > 0 {
		_ = fly.WriteText(opts.IO.ErrOut, diags.Diagnostics, diags.Files, opts.IO.StderrTTY)
	}
	changed := 0
	for _, r := range results {
		if r.Changed {
			changed++
			fmt.Fprintln(opts.IO.Out, r.Path)
		}
	}
	switch {
	case diags.HasErrors():
		return errSilent(ExitInvalidConfig)
	case opts.Check && changed > 0:
		fmt.Fprintf(opts.IO.ErrOut, "%s not formatted; run gosling fmt.\n", plural(changed, "file"))
		return errSilent(ExitInvalidConfig)
	}
	return nil
}
