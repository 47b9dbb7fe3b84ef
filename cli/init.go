package cli

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gosling-ci/gosling/fly"
	"github.com/spf13/cobra"
)

//go:embed templates/*.fly
var templates embed.FS

// InitOptions are the inputs of `gosling init`.
type InitOptions struct {
	IO    *IOStreams
	Dir   string
	Cloud string
	Force bool
}

// NewCmdInit builds `gosling init`.
func NewCmdInit(f *Factory, runF func(*InitOptions) error) *cobra.Command {
	opts := &InitOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "init [dir]",
		Short: "Create a new Nest",
		Long: `Init creates a Nest: the Eggs, Jobs, UF and MG directories, a commented
UF/config.fly with the default pruning policies and an MG/config.fly for the
chosen cloud. Existing files are kept unless --force is given.

Clouds: yandex (Serverless Containers, YDB, Object Storage for the runners'
OpenTofu state, Lockbox), aws (ECS containers, DynamoDB, S3 for the state,
Secrets Manager) or local (the embedded development setup).`,
		Example: `  gosling init my-nest --cloud yandex
  gosling init . --cloud local`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = "."
			if len(args) == 1 {
				opts.Dir = args[0]
			}
			if runF != nil {
				return runF(opts)
			}
			return initRun(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Cloud, "cloud", "", "cloud MotherGoose runs on: yandex, aws or local")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "overwrite existing UF/config.fly and MG/config.fly")
	return cmd
}

func initRun(opts *InitOptions) error {
	if opts.Cloud == "" {
		if !opts.IO.CanPrompt() {
			return errMissing("cloud", "the cloud (yandex, aws or local)")
		}
		c, err := opts.IO.Prompt("Cloud for MotherGoose (yandex, aws, local)", "yandex")
		if err != nil {
			return err
		}
		opts.Cloud = c
	}
	switch opts.Cloud {
	case fly.CloudYandex, fly.CloudAWS, fly.CloudLocal:
	default:
		return flagErrorf("--cloud %q: use yandex, aws or local", opts.Cloud)
	}
	mg, err := fs.ReadFile(templates, "templates/mg-"+opts.Cloud+".fly")
	if err != nil {
		return err
	}
	uf, err := fs.ReadFile(templates, "templates/uf.fly")
	if err != nil {
		return err
	}
	files := []struct {
		rel  string
		data []byte
		keep bool // never overwritten, even with --force
	}{
		{"Eggs/.gitkeep", nil, true},
		{"Jobs/.gitkeep", nil, true},
		{"UF/config.fly", uf, false},
		{"MG/config.fly", mg, false},
		{".gitignore", []byte("# State of `gosling dev` and local tools.\n.gosling/\n"), true},
	}
	for _, f := range files {
		p := filepath.Join(opts.Dir, filepath.FromSlash(f.rel))
		_, statErr := os.Stat(p)
		exists := statErr == nil
		if exists && (f.keep || !opts.Force) {
			if !f.keep {
				fmt.Fprintf(opts.IO.ErrOut, "kept %s (exists; --force overwrites it)\n", p)
			}
			continue
		}
		if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
			return statErr
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return err
		}
		if f.data != nil {
			fmt.Fprintf(opts.IO.ErrOut, "created %s\n", p)
		}
	}
	fmt.Fprintf(opts.IO.Out, "Nest ready in %s. Next:\n  gosling add egg NAME --dir %s   (one per GitLab project)\n  gosling validate %s\n", opts.Dir, opts.Dir, opts.Dir)
	return nil
}
