package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gosling-ci/gosling/fly"
	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"
)

// ValidateOptions are the inputs of `gosling validate`.
type ValidateOptions struct {
	IO   *IOStreams
	Dir  string
	JSON bool
	Dump bool
	Vars map[string]string

	Getenv func(string) (string, bool)
}

// NewCmdValidate builds `gosling validate`.
func NewCmdValidate(f *Factory, runF func(*ValidateOptions) error) *cobra.Command {
	opts := &ValidateOptions{IO: f.IO, Getenv: f.Getenv}
	var vars []string
	cmd := &cobra.Command{
		Use:   "validate [dir]",
		Short: "Check a Nest: syntax, types, units and cross-file rules",
		Long: `Validate parses and type-checks every file of a Nest and reports all problems
at once, each with file:line:column, the source line and a hint.

Variables take their values from --var, then GOSLING_VAR_<name>, then their
default. Exit status is 3 when the configuration is invalid.`,
		Example: `  gosling validate examples/nest
  gosling validate --json . > diagnostics.json
  gosling validate --var environment=staging --dump . | jq '.eggs[].name'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = "."
			if len(args) == 1 {
				opts.Dir = args[0]
			}
			var err error
			if opts.Vars, err = parseVars(vars); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return validateRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print diagnostics as JSON (for CI and editors)")
	cmd.Flags().BoolVar(&opts.Dump, "dump", false, "print the loaded Nest as JSON when it is valid")
	cmd.Flags().StringArrayVar(&vars, "var", nil, "set a variable: --var name=value (repeatable)")
	return cmd
}

func parseVars(vars []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vars {
		name, value, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return nil, flagErrorf("--var %q: write it as name=value", v)
		}
		out[name] = value
	}
	return out, nil
}

func validateRun(opts *ValidateOptions) error {
	nest, diags := fly.LoadNest(opts.Dir, fly.Options{Vars: opts.Vars, Getenv: opts.Getenv})
	if opts.JSON {
		if err := fly.WriteJSON(opts.IO.Out, diags.Diagnostics, diags.Files); err != nil {
			return err
		}
	} else if len(diags.Diagnostics) > 0 {
		if err := fly.WriteText(opts.IO.ErrOut, diags.Diagnostics, diags.Files, opts.IO.StderrTTY); err != nil {
			return err
		}
	}
	if diags.HasErrors() {
		if !opts.JSON {
			fmt.Fprintf(opts.IO.ErrOut, "%s is invalid: %s.\n", opts.Dir, countDiags(diags))
		}
		return errSilent(ExitInvalidConfig)
	}
	if opts.Dump {
		enc := json.NewEncoder(opts.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(nest)
	}
	if !opts.JSON {
		fmt.Fprintf(opts.IO.Out, "%s is valid: %s.\n", opts.Dir, summarize(nest))
		// What type = "auto" resolved to, so a surprise shows before a deploy.
		for _, e := range nest.Eggs {
			if note := e.AutoNote(); note != "" {
				fmt.Fprintf(opts.IO.ErrOut, "Note: %s.\n", note)
			}
		}
	}
	return nil
}

func countDiags(d *fly.Diagnostics) string {
	e, w := 0, 0
	for _, x := range d.Diagnostics {
		if x.Severity == hcl.DiagError {
			e++
		} else {
			w++
		}
	}
	s := plural(e, "error")
	if w > 0 {
		s += ", " + plural(w, "warning")
	}
	return s
}

func summarize(n *fly.Nest) string {
	eggs, buckets := 0, 0
	for _, e := range n.Eggs {
		if e.Kind == fly.KindBucket {
			buckets++
		} else {
			eggs++
		}
	}
	return fmt.Sprintf("%s, %s, %s; MotherGoose on %s with %s, secrets in %s",
		plural(eggs, "egg"), plural(buckets, "bucket"), plural(len(n.Jobs), "job"),
		n.MotherGoose.Cloud, n.MotherGoose.Database.Engine, orNone(n.MotherGoose.Secrets.Backend))
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
