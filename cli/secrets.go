package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"golang.org/x/term"
)

// SecretsFlags say where the secret backends' configuration comes from.
type SecretsFlags struct {
	// Nest is a Nest directory whose MG/config.fly secrets block
	// configures the backends.
	Nest string
	// Dev serves every scheme from the local store of `gosling dev`.
	Dev bool
	// StateDir holds the local store.
	StateDir string
	// Masker is the command's: every value the resolver reads is masked.
	Masker *secretstore.Masker
}

func (s *SecretsFlags) register(cmd *cobra.Command, getenv func(string) (string, bool)) {
	nestFlag(cmd.Flags(), &s.Nest, getenv, "configure the backends from this Nest's MG/config.fly secrets block", "the environment's credentials for each scheme, local:// in --state-dir")
	cmd.Flags().BoolVar(&s.Dev, "dev", false, "use the local store of 'gosling dev' for every scheme, as it does")
	cmd.Flags().StringVar(&s.StateDir, "state-dir", devStateDir(getenv), "directory of the local secret store (local://)")
}

// resolver opens the backends; errors of configuration exit with code 3.
func (s *SecretsFlags) resolver(ctx context.Context, getenv func(string) (string, bool)) (*secretstore.Resolver, error) {
	localDir := filepath.Join(s.StateDir, "secrets")
	if s.Dev {
		local, err := secretstore.OpenLocal(localDir)
		if err != nil {
			return nil, err
		}
		r := secretstore.NewResolver(secretstore.DevBackends(local)...)
		if s.Masker != nil {
			r.SetMasker(s.Masker)
		}
		return r, nil
	}
	var cfg fly.Secrets
	if s.Nest != "" {
		nest, diags := fly.LoadNest(s.Nest, fly.Options{Getenv: getenv})
		if diags.HasErrors() {
			return nil, &CodeError{Code: ExitInvalidConfig, Err: fmt.Errorf("the Nest in %s is invalid: run `gosling validate %s`", s.Nest, s.Nest)}
		}
		cfg = nest.MotherGoose.Secrets
		if b, ok := cfg.Backends[fly.SchemeLocal]; ok && !filepath.IsAbs(b.Path) {
			b.Path = filepath.Join(s.Nest, b.Path)
			cfg.Backends[fly.SchemeLocal] = b
		}
	}
	if _, err := os.Stat(localDir); err != nil {
		localDir = "" // no local store here: do not make one
	}
	r, err := secrets.Open(ctx, cfg, secrets.OpenOptions{LocalDir: localDir, Getenv: getenv, Masker: s.Masker})
	if err != nil {
		return nil, &CodeError{Code: ExitInvalidConfig, Err: err}
	}
	return r, nil
}

// unversionedURI checks a command's URI argument: a secret URI without
// ?version= (why says what to do instead), else a usage error.
func unversionedURI(arg, why string) error {
	u, err := fly.ParseSecretURI(arg)
	if err != nil {
		return flagErrorf("URI: %v", err)
	}
	if u.Version != "" {
		return flagErrorf("URI: leave out ?version=%s", why)
	}
	return nil
}

// secretFailure gives a backend error its exit code: 4 when credentials
// or permissions are missing, 1 otherwise.
func secretFailure(err error) error {
	if errors.Is(err, secretstore.ErrAuth) || errors.Is(err, secretstore.ErrPermission) {
		return &CodeError{Code: ExitAuth, Err: err}
	}
	return err
}

// NewCmdSecrets builds `gosling secrets`.
func NewCmdSecrets(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets <command>",
		Short: "Set, inspect and roll back secret versions, and rotate runner tokens",
		Long: `Secrets are named by URI: yc-lockbox://{secret-id}/{key},
aws-sm://{secret-name}/{key}, vault://{path}/{key} and, for development only,
local://{name}/{key}. Values are never printed.

Backends are configured by --nest (the secrets block of MG/config.fly) and
the environment: the AWS default credential chain; VAULT_ADDR and
VAULT_TOKEN (or the Nest's AppRole/Kubernetes auth, with
VAULT_APPROLE_SECRET_ID); YC_SERVICE_ACCOUNT_KEY_FILE, YC_IAM_TOKEN or the
VM's service account.`,
	}
	cmd.AddCommand(NewCmdSecretsPut(f, nil), NewCmdSecretsVersions(f, nil), NewCmdSecretsRollback(f, nil), NewCmdSecretsRotate(f, nil))
	return cmd
}

// SecretsVersionsOptions are the inputs of `gosling secrets versions`.
type SecretsVersionsOptions struct {
	IO     *IOStreams
	Getenv func(string) (string, bool)
	Flags  SecretsFlags
	URI    fly.SecretRef
	Export exportFlags
}

// NewCmdSecretsVersions builds `gosling secrets versions`.
func NewCmdSecretsVersions(f *Factory, runF func(*SecretsVersionsOptions) error) *cobra.Command {
	opts := &SecretsVersionsOptions{IO: f.IO, Getenv: f.Getenv}
	opts.Flags.Masker = f.Masker
	cmd := &cobra.Command{
		Use:   "versions URI",
		Short: "List the versions of a secret, oldest first",
		Long: `List the versions of the secret a URI names, oldest first, with the current
one marked. Versions are the backend's own: Lockbox version IDs, Secrets
Manager version IDs with their staging labels (one version per write of any
key of the secret), Vault KV version numbers, local counters.`,
		Example: `  gosling secrets versions vault://ci/runners/web/token --nest .
  gosling secrets versions aws-sm://gosling/runners/web/token --json id,current,labels`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := unversionedURI(args[0], " to list the versions"); err != nil {
				return err
			}
			opts.URI = fly.SecretRef(args[0])
			if runF != nil {
				return runF(opts)
			}
			return secretsVersionsRun(cmd.Context(), opts)
		},
	}
	opts.Flags.register(cmd, f.Getenv)
	addJSONFlags(cmd, &opts.Export, secretstore.Version{})
	return cmd
}

func secretsVersionsRun(ctx context.Context, opts *SecretsVersionsOptions) error {
	r, err := opts.Flags.resolver(ctx, opts.Getenv)
	if err != nil {
		return err
	}
	vs, err := r.Versions(ctx, opts.URI)
	if err != nil {
		return secretFailure(err)
	}
	now := time.Now()
	rows := make([][]string, 0, len(vs))
	for _, v := range vs {
		cur := ""
		if v.Current {
			cur = "current"
		}
		created := v.Created
		labels := strings.Join(v.Labels, ",")
		if labels == "" {
			labels = "-"
		}
		rows = append(rows, []string{v.ID, timeCell(opts.IO, &created, now), cur, labels})
	}
	if vs == nil {
		vs = []secretstore.Version{}
	}
	p := listPrinter{IO: opts.IO, Export: &opts.Export, Empty: "The secret has no versions.", Header: []string{"VERSION", "CREATED", "CURRENT", "LABELS"}}
	return p.Print(ctx, vs, rows)
}

// SecretsPutOptions are the inputs of `gosling secrets put`.
type SecretsPutOptions struct {
	IO     *IOStreams
	Getenv func(string) (string, bool)
	Flags  SecretsFlags
	URI    fly.SecretRef
}

// NewCmdSecretsPut builds `gosling secrets put`.
func NewCmdSecretsPut(f *Factory, runF func(*SecretsPutOptions) error) *cobra.Command {
	opts := &SecretsPutOptions{IO: f.IO, Getenv: f.Getenv}
	opts.Flags.Masker = f.Masker
	cmd := &cobra.Command{
		Use:   "put URI < VALUE",
		Short: "Write a secret's value, read from stdin, as its new current version",
		Long: `Put reads the value from stdin (never from the command line, which other
users of the machine can see; on a terminal the input is not echoed), drops
one trailing newline, and writes it as a new version of the URI's key. Other
keys of the same secret keep their values; earlier versions stay (see
'gosling secrets versions' and 'secrets rollback').

This is how the secrets gosling deploy makes empty get their values: the
API tokens and webhook secrets of an aws-sm:// secret (Secrets Manager
makes its first version), or a key of a Lockbox secret (a new version;
Lockbox secrets are named by the IDs deploy prints). It prints the new
version's ID; the value is never printed or logged.`,
		Example: `  openssl rand -hex 32 | gosling secrets put aws-sm://gosling-ci/api/token --nest .
  gosling secrets put yc-lockbox://e6q0123456789abcdefg/webhook_secret --nest .   # asks, input hidden`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := unversionedURI(args[0], ": a write makes a new version"); err != nil {
				return err
			}
			opts.URI = fly.SecretRef(args[0])
			if runF != nil {
				return runF(opts)
			}
			return secretsPutRun(cmd.Context(), opts)
		},
	}
	opts.Flags.register(cmd, f.Getenv)
	return cmd
}

func secretsPutRun(ctx context.Context, opts *SecretsPutOptions) error {
	var value string
	if f, ok := opts.IO.In.(*os.File); ok && opts.IO.StdinTTY && !opts.IO.NoInput && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(opts.IO.ErrOut, "Value of %s (not echoed): ", opts.URI)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(opts.IO.ErrOut)
		if err != nil {
			return err
		}
		value = string(b)
	} else {
		b, err := io.ReadAll(io.LimitReader(opts.IO.In, 1<<20+1))
		if err != nil {
			return err
		}
		if len(b) > 1<<20 {
			return flagErrorf("the value on stdin is over 1 MiB")
		}
		value = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	if value == "" {
		return flagErrorf("the value is empty: pipe it on stdin, such as: openssl rand -hex 32 | gosling secrets put %s", opts.URI)
	}
	r, err := opts.Flags.resolver(ctx, opts.Getenv)
	if err != nil {
		return err
	}
	id, err := r.Put(ctx, opts.URI, value)
	if err != nil {
		return secretFailure(err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Wrote %s as version %s.\n", opts.URI, id)
	fmt.Fprintln(opts.IO.Out, id)
	return nil
}

// SecretsRollbackOptions are the inputs of `gosling secrets rollback`.
type SecretsRollbackOptions struct {
	IO     *IOStreams
	Getenv func(string) (string, bool)
	Flags  SecretsFlags
	URI    fly.SecretRef
	To     string
	Yes    bool
}

// NewCmdSecretsRollback builds `gosling secrets rollback`.
func NewCmdSecretsRollback(f *Factory, runF func(*SecretsRollbackOptions) error) *cobra.Command {
	opts := &SecretsRollbackOptions{IO: f.IO, Getenv: f.Getenv}
	opts.Flags.Masker = f.Masker
	cmd := &cobra.Command{
		Use:   "rollback URI --to VERSION",
		Short: "Make an earlier version's value current again",
		Long: `Rollback reads the value of version --to and writes it as a NEW version,
which becomes the current one. History is kept: nothing is deleted, and the
rollback can itself be rolled back. Other keys of the same secret keep their
current values. Resolvers pick the value up when their cache expires (the
secrets block's cache_ttl, 5 minutes by default).

On a terminal it asks for confirmation; elsewhere pass --yes.`,
		Example: `  gosling secrets rollback vault://ci/runners/web/token --to 3 --nest .
  gosling secrets rollback aws-sm://gosling/web/token --to AWSPREVIOUS --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := unversionedURI(args[0], " and name the version with --to"); err != nil {
				return err
			}
			if opts.To == "" {
				return flagErrorf("--to VERSION is required: see `gosling secrets versions %s`", args[0])
			}
			opts.URI = fly.SecretRef(args[0])
			if runF != nil {
				return runF(opts)
			}
			return secretsRollbackRun(cmd.Context(), opts)
		},
	}
	opts.Flags.register(cmd, f.Getenv)
	cmd.Flags().StringVar(&opts.To, "to", "", "the version whose value becomes current again")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func secretsRollbackRun(ctx context.Context, opts *SecretsRollbackOptions) error {
	if !opts.Yes {
		if !opts.IO.CanPrompt() {
			return errMissing("yes", "confirmation")
		}
		ans, err := opts.IO.Prompt(fmt.Sprintf("Write version %s of %s as its new current version? (y/N)", opts.To, opts.URI), "n")
		if err != nil {
			return err
		}
		if a := strings.ToLower(ans); a != "y" && a != "yes" {
			return errCancelled
		}
	}
	r, err := opts.Flags.resolver(ctx, opts.Getenv)
	if err != nil {
		return err
	}
	id, err := r.Rollback(ctx, opts.URI, opts.To)
	if err != nil {
		return secretFailure(err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Wrote version %s of %s as new version %s.\n", opts.To, opts.URI, id)
	fmt.Fprintln(opts.IO.Out, id)
	return nil
}

// SecretsRotateOptions are the inputs of `gosling secrets rotate`.
type SecretsRotateOptions struct {
	IO       *IOStreams
	Logger   *slog.Logger
	Getenv   func(string) (string, bool)
	Eggs     []string
	Reason   string
	Export   exportFlags
	Temporal TemporalFlags
}

// NewCmdSecretsRotate builds `gosling secrets rotate`.
func NewCmdSecretsRotate(f *Factory, runF func(*SecretsRotateOptions) error) *cobra.Command {
	opts := &SecretsRotateOptions{IO: f.IO, Logger: f.Logger, Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "rotate [--egg NAME]... [--reason TEXT]",
		Short: "Give every runner in service a new GitLab token",
		Long: `Rotate runs the RotateRunnerTokens workflow on the mothergoose task queue
(a 'gosling worker --queue mothergoose' must be running), waits for it and
prints each runner's outcome. For every active or dormant runner, four at a
time, it resets the token in GitLab, writes the new token as a new version of
the runner's secret (the token is never printed, logged or kept in workflow
history), tells the live agent to re-read and verify it without dropping a
running job (a dormant runner reads it when resumed), and writes an audit
record ('gosling audit').

Outcomes: rotated; skipped (nothing changed, for example a running cloud VM,
whose agent a worker cannot reach); failed, with TOKEN saying whether GitLab
accepts the stored token afterwards. A failed reset leaves the old token
working; "broken" means GitLab reset the token but the new one could not be
stored: rotate again.

Only one rotation runs at a time. A Job of kind secret_rotation in
Jobs/*.fly runs the same workflow on its schedule, its params.eggs acting as
--egg.

Exit status: 0 when no runner failed, 1 otherwise.`,
		Example: `  gosling secrets rotate --reason "quarterly rotation"
  gosling secrets rotate --egg web-app --egg payments-api --json runners,failed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return secretsRotateRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringArrayVar(&opts.Eggs, "egg", nil, "rotate only this egg's runners (repeatable)")
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "why, for the audit log")
	addJSONFlags(cmd, &opts.Export, contract.RotateRunnerTokensResult{})
	opts.Temporal.registerClient(cmd.Flags(), f.Getenv)
	return cmd
}

func secretsRotateRun(ctx context.Context, opts *SecretsRotateOptions) error {
	c, err := opts.Temporal.Dial(ctx, opts.Logger)
	if err != nil {
		return err
	}
	defer c.Close()
	actor := "cli"
	if u, ok := opts.Getenv("USER"); ok && u != "" {
		actor = "cli:" + u
	}
	in := contract.RotateRunnerTokensInput{Eggs: opts.Eggs, Actor: actor, Reason: opts.Reason}
	run, err := c.ExecuteWorkflow(ctx, contract.RotateStartOptions(), contract.WorkflowRotateRunnerTokens, in)
	var running *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &running) {
		return fmt.Errorf("a rotation is running already (workflow %s): wait for it to end", contract.RotateWorkflowID)
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", contract.RotateWorkflowID, err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Rotation %s started; waiting for it.\n", contract.RotateWorkflowID)
	var res contract.RotateRunnerTokensResult
	if err := run.Get(ctx, &res); err != nil {
		return fmt.Errorf("%s: %w", contract.RotateWorkflowID, err)
	}
	if opts.Export.Enabled() {
		if err := opts.Export.Write(ctx, opts.IO.Out, res); err != nil {
			return err
		}
	} else {
		rows := make([][]string, 0, len(res.Runners))
		for _, r := range res.Runners {
			token := "-"
			if r.TokenWorks != nil {
				token = map[bool]string{true: "works", false: "broken"}[*r.TokenWorks]
			}
			rows = append(rows, []string{r.RunnerID, r.Egg, r.State, r.Outcome, orDash(r.TokenVersion), orDash(r.VerifiedBy), orDash(r.Agent), token, orDash(r.Detail)})
		}
		if err := printTable(opts.IO, []string{"RUNNER", "EGG", "STATE", "OUTCOME", "VERSION", "VERIFIED", "AGENT", "TOKEN", "DETAIL"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintf(opts.IO.ErrOut, "%d rotated, %d failed, %d skipped.\n", res.Rotated, res.Failed, res.Skipped)
	if res.Failed > 0 {
		return errSilent(ExitError)
	}
	return nil
}
