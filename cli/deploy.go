package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gosling-ci/gosling/bootstrap"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

// DeployOptions are the inputs of `gosling plan`, `gosling deploy` and
// `gosling rollback`.
type DeployOptions struct {
	IO   *IOStreams
	Nest string
	Vars map[string]string
	JSON bool
	Yes  bool
	// KeepPartial keeps what a failed deploy made instead of undoing it.
	KeepPartial bool
	// ForceUnlock goes ahead although the journal says another deploy is
	// running.
	ForceUnlock bool
	// To is the journal entry a rollback returns to; ToSet says it was given.
	To    int
	ToSet bool

	Getenv func(string) (string, bool)
	f      *Factory
	// open builds the deployment; tests replace it.
	open func(ctx context.Context, opts *DeployOptions) (*bootstrap.Deployment, error)
}

func newDeployOptions(f *Factory) *DeployOptions {
	return &DeployOptions{IO: f.IO, Getenv: f.Getenv, f: f, open: openDeployment}
}

func (o *DeployOptions) register(cmd *cobra.Command, vars *[]string) {
	nestFlag(cmd.Flags(), &o.Nest, o.Getenv, "the Nest whose MG/config.fly and eggs say what to deploy", "")
	cmd.Flags().StringArrayVar(vars, "var", nil, "set a Nest variable: --var name=value (repeatable)")
	if cmd.Name() != "plan" {
		cmd.Flags().BoolVar(&o.ForceUnlock, "force-unlock", false, "go ahead although the journal says another deploy is running (one that died)")
	}
}

const deployCredentials = `Credentials come from each SDK's standard chain and are never printed: AWS
from the environment, shared config and profiles (role_arn assumption
included), container or instance metadata; Yandex Cloud from
$YC_SERVICE_ACCOUNT_KEY_FILE (an authorized key), $YC_IAM_TOKEN, else the
yandex provider's service_account_key (a secret URI, read with the
secrets block's backends), else the instance's service account (metadata
service); GitLab tokens and webhook secrets from their secret URIs.

Exit status: 0 ok, 1 error, 2 cancelled, 3 invalid Nest, 4 credentials
missing or refused.`

// NewCmdPlan builds `gosling plan`.
func NewCmdPlan(f *Factory, runF func(*DeployOptions) error) *cobra.Command {
	opts := newDeployOptions(f)
	var vars []string
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what gosling deploy would change in the cloud and GitLab",
		Long: `Plan reads MG/config.fly and the eggs, builds the resources MotherGoose's
cloud needs (IAM roles and policies, queue and dead-letter queue, log
groups, secrets, the store's table, Fargate services, schedules) and the
webhook of every egg's project, reads what exists (every resource carries
the deployment's name, mothergoose.api_gateway.name), and prints the
difference as tofu plan does: + create, ~ update (the changed fields),
- destroy. It changes nothing.

` + deployCredentials,
		Example: `  gosling plan --nest ./nest
  gosling plan --nest ./nest --json | jq '.changes[].address'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if opts.Vars, err = parseVars(vars); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return planRun(cmd.Context(), opts)
		},
	}
	opts.register(cmd, &vars)
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the plan as JSON")
	return cmd
}

// NewCmdDeploy builds `gosling deploy`.
func NewCmdDeploy(f *Factory, runF func(*DeployOptions) error) *cobra.Command {
	opts := newDeployOptions(f)
	var vars []string
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Make MotherGoose's cloud resources and GitLab webhooks match the Nest",
		Long: `Deploy prints the plan (see gosling plan), asks for confirmation on a
terminal (elsewhere pass --yes), and applies it in dependency order. A
second deploy of the same Nest changes nothing.

Every change is journaled with the resource's previous value, in the cloud
itself (AWS: the Secrets Manager secret gosling/<deployment>/deploy-journal),
so gosling rollback works from any checkout. When a step fails, the changes
the deploy made before it are undone, unless --keep-partial. Secrets and
the store's table are never deleted. While a deploy runs, its journal entry
keeps other deploys out (for at most an hour; --force-unlock after one
died).

` + deployCredentials,
		Example: `  gosling deploy --nest ./nest
  gosling deploy --nest ./nest --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if opts.Vars, err = parseVars(vars); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return deployRun(cmd.Context(), opts)
		},
	}
	opts.register(cmd, &vars)
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "apply without asking")
	cmd.Flags().BoolVar(&opts.KeepPartial, "keep-partial", false, "when a step fails, keep the changes made before it")
	return cmd
}

// NewCmdRollback builds `gosling rollback`.
func NewCmdRollback(f *Factory, runF func(*DeployOptions) error) *cobra.Command {
	opts := newDeployOptions(f)
	var vars []string
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Return the deployment to an earlier journal entry",
		Long: `Rollback returns every resource a later deploy changed to the value it had
right after journal entry --to (by default the entry before the newest
one): what was made is deleted, what was changed is changed back, what was
deleted is made again. It prints the plan and asks first, like deploy, and
is journaled itself, so a rollback can be rolled back.

` + deployCredentials,
		Example: `  gosling rollback --nest ./nest
  gosling rollback --nest ./nest --to 3 --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if opts.Vars, err = parseVars(vars); err != nil {
				return err
			}
			opts.ToSet = cmd.Flags().Changed("to")
			if opts.ToSet && opts.To < 0 {
				return flagErrorf("--to %d: journal entries count from 1 (0 is before the first deploy)", opts.To)
			}
			if runF != nil {
				return runF(opts)
			}
			return rollbackRun(cmd.Context(), opts)
		},
	}
	opts.register(cmd, &vars)
	cmd.Flags().IntVar(&opts.To, "to", 0, "the journal entry to return to (default: the one before the newest)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "roll back without asking")
	return cmd
}

func openDeployment(ctx context.Context, opts *DeployOptions) (*bootstrap.Deployment, error) {
	nest, err := loadNest(opts.Nest, opts.Vars, opts.Getenv, opts.IO)
	if err != nil {
		return nil, err
	}
	var o bootstrap.Options
	o.Getenv = opts.Getenv
	o.Yandex.Auth = yandexauth.FromEnv(func(k string) string { v, _ := opts.Getenv(k); return v })
	if opts.f != nil {
		o.Masker, o.Log = opts.f.Masker, opts.f.Logger
	}
	d, err := bootstrap.Open(ctx, nest, o)
	if err != nil {
		return nil, authFailure(fmt.Errorf("deployment of %s: %w", opts.Nest, err))
	}
	return d, nil
}

// authFailure gives missing or refused cloud credentials exit code 4: the
// deployer's (bootstrap.CredentialsError, a gRPC Unauthenticated from
// Yandex Cloud) or a secret backend's.
func authFailure(err error) error {
	var ce *bootstrap.CredentialsError
	if errors.As(err, &ce) || status.Code(err) == codes.Unauthenticated {
		return &CodeError{Code: ExitAuth, Err: err}
	}
	return secretFailure(err)
}

func planRun(ctx context.Context, opts *DeployOptions) error {
	d, err := opts.open(ctx, opts)
	if err != nil {
		return err
	}
	defer d.Close(context.WithoutCancel(ctx))
	if err := d.Preflight(ctx); err != nil {
		return authFailure(err)
	}
	p, _, err := d.Engine.Plan(ctx, d.Desired)
	if err != nil {
		return authFailure(err)
	}
	if opts.JSON {
		return p.WriteJSON(opts.IO.Out)
	}
	return p.WriteText(opts.IO.Out)
}

// confirm asks before a change unless --yes.
func (o *DeployOptions) confirm(question string) error {
	if o.Yes {
		return nil
	}
	if !o.IO.CanPrompt() {
		return errMissing("yes", "confirmation")
	}
	answer, err := o.IO.Prompt(question+" Only 'yes' is accepted", "")
	if err != nil {
		return err
	}
	if strings.ToLower(strings.TrimSpace(answer)) != "yes" {
		return errCancelled
	}
	return nil
}

func (o *DeployOptions) progress() func(bootstrap.Change) {
	return func(c bootstrap.Change) {
		verb := map[bootstrap.Action]string{bootstrap.Create: "Creating", bootstrap.Update: "Modifying", bootstrap.Delete: "Destroying"}[c.Action]
		fmt.Fprintf(o.IO.ErrOut, "%s: %s...\n", c.Address, verb)
	}
}

func applyFailure(err error) error {
	var ae *bootstrap.ApplyError
	if errors.As(err, &ae) && !ae.Undone && ae.UndoErr == nil {
		return fmt.Errorf("%w; run gosling deploy again to finish, or gosling rollback to return", err)
	}
	return err
}

func deployRun(ctx context.Context, opts *DeployOptions) error {
	d, err := opts.open(ctx, opts)
	if err != nil {
		return err
	}
	defer d.Close(context.WithoutCancel(ctx))
	if err := d.Preflight(ctx); err != nil {
		return authFailure(err)
	}
	e := d.Engine
	p, actual, err := e.Plan(ctx, d.Desired)
	if err != nil {
		return authFailure(err)
	}
	if err := p.WriteText(opts.IO.Out); err != nil {
		return err
	}
	if p.Empty() {
		return nil
	}
	if err := opts.confirm(fmt.Sprintf("Apply these changes to the %s deployment %q?", p.Cloud, p.Deployment)); err != nil {
		return err
	}
	entry, err := e.Apply(ctx, p, actual, bootstrap.ApplyOptions{KeepPartial: opts.KeepPartial, Progress: opts.progress(), ForceUnlock: opts.ForceUnlock})
	if err != nil {
		return applyFailure(err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "\nApply complete! Resources: %d added, %d changed, %d destroyed. Journal entry %d in %s.\n",
		p.Count(bootstrap.Create), p.Count(bootstrap.Update), p.Count(bootstrap.Delete), entry.ID, e.Journal.Where())
	printOutputs(opts.IO, entry)
	printDNS(opts.IO, entry, actual)
	return nil
}

// printDNS tells the operator, after a deploy that leaves the AWS gateway
// with a custom domain name, where the domain's DNS record must point: the
// domain name's target, as a CNAME or as a Route 53 alias in the hosted
// zone API Gateway names
// (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-custom-domain-names.html).
// The domain name is the one the deploy wrote, else the one it found.
func printDNS(ios *IOStreams, entry bootstrap.Entry, actual []bootstrap.Resource) {
	var domain *bootstrap.Resource
	for i := range actual {
		if actual[i].Type == bootstrap.AWSDomainName {
			domain = &actual[i]
		}
	}
	for _, c := range entry.Changes {
		if (c.After != nil && c.After.Type == bootstrap.AWSDomainName) || (c.Before != nil && c.Before.Type == bootstrap.AWSDomainName) {
			domain = c.After
		}
	}
	if domain == nil || domain.Outputs["target_domain_name"] == "" {
		return
	}
	fmt.Fprintf(ios.ErrOut, "Point DNS for %s at %s: a CNAME, or a Route 53 alias record (hosted zone %s).\n",
		domain.Outputs["domain_name"], domain.Outputs["target_domain_name"], domain.Outputs["hosted_zone_id"])
}

// shownOutputs are the outputs an operator needs after a deploy: where the
// API answers, and the database to name in MG/config.fly.
var shownOutputs = map[string][]string{
	bootstrap.YCGateway:   {"domain"},
	bootstrap.YCContainer: {"url"},
	bootstrap.YCDatabase:  {"endpoint", "document_api_endpoint"},
	bootstrap.YCSecret:    {"id"},
}

func printOutputs(ios *IOStreams, entry bootstrap.Entry) {
	first := true
	for _, c := range entry.Changes {
		if c.After == nil {
			continue
		}
		for _, k := range shownOutputs[c.After.Type] {
			v := c.After.Outputs[k]
			if v == "" {
				continue
			}
			if first {
				fmt.Fprintln(ios.Out, "\nOutputs:")
				first = false
			}
			fmt.Fprintf(ios.Out, "  %s.%s = %q\n", c.Address, k, v)
		}
	}
}

func rollbackRun(ctx context.Context, opts *DeployOptions) error {
	d, err := opts.open(ctx, opts)
	if err != nil {
		return err
	}
	defer d.Close(context.WithoutCancel(ctx))
	e := d.Engine
	to := opts.To
	if !opts.ToSet {
		entries, err := e.Journal.Entries(ctx)
		if err != nil {
			return err
		}
		if to, err = bootstrap.PreviousEntry(entries); err != nil {
			return fmt.Errorf("%w in %s", err, e.Journal.Where())
		}
	}
	p, actual, err := e.RollbackPlan(ctx, to)
	if err != nil {
		return err
	}
	if err := p.WriteText(opts.IO.Out); err != nil {
		return err
	}
	if p.Empty() {
		return nil
	}
	if err := opts.confirm(fmt.Sprintf("Return the %s deployment %q to journal entry %d?", p.Cloud, p.Deployment, to)); err != nil {
		return err
	}
	entry, err := e.Rollback(ctx, p, actual, to, bootstrap.ApplyOptions{Progress: opts.progress(), ForceUnlock: opts.ForceUnlock})
	if err != nil {
		return applyFailure(err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "\nRollback complete: back at journal entry %d (recorded as entry %d).\n", to, entry.ID)
	return nil
}
