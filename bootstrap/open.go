package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

// Options say how to reach the clouds and GitLab. Credentials come from
// each SDK's standard chain and are never printed.
type Options struct {
	// AWSConfig, when set, replaces the SDK's default chain (environment,
	// shared config and profiles with role_arn assumption, container and
	// instance metadata) loaded for mothergoose.region.
	AWSConfig *aws.Config
	// AWSEndpoints override single services' endpoints.
	AWSEndpoints AWSEndpoints
	// Yandex says how to reach Yandex Cloud and as whom.
	Yandex YandexOptions
	// Resolve resolves GitLab tokens and webhook secrets; by default a
	// resolver over mothergoose.secrets (internal/secrets.Open).
	Resolve Resolver
	// Getenv and Masker are handed to the default resolver.
	Getenv func(string) (string, bool)
	Masker *secretstore.Masker
	// GitLab options for every GitLab client (HTTP client, retries).
	GitLab []gitlab.Option
	Log    *slog.Logger
}

// Deployment is a Nest's deployment, ready to plan.
type Deployment struct {
	Engine  *Engine
	Desired []Resource
	closers []func(context.Context) error
	checks  []func(context.Context) error
}

// Preflight runs the checks a plan or a deploy of the desired set needs
// before anything is changed (on Yandex Cloud: every API token's Lockbox
// secret has a version for the auth function). A rollback skips them: it
// returns to what existed.
func (d *Deployment) Preflight(ctx context.Context) error {
	for _, c := range d.checks {
		if err := c(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close releases the SDKs' connections.
func (d *Deployment) Close(ctx context.Context) error {
	var errs []error
	for _, c := range d.closers {
		errs = append(errs, c(ctx))
	}
	return errors.Join(errs...)
}

// Open builds the deployment of n: the providers of its MotherGoose cloud
// and of GitLab, the journal in that cloud, and the desired resources.
func Open(ctx context.Context, n *fly.Nest, o Options) (*Deployment, error) {
	mg := &n.MotherGoose
	dep := DeploymentName(n)
	d := &Deployment{}
	resolve := o.Resolve
	if resolve == nil {
		r, err := secrets.Open(ctx, mg.Secrets, secrets.OpenOptions{Getenv: o.Getenv, Masker: o.Masker})
		if err != nil {
			return nil, fmt.Errorf("open the secret backends: %w", err)
		}
		resolve = r.Resolve
	}
	e := &Engine{Deployment: dep, Cloud: mg.Cloud, Log: o.Log}
	var desired []Resource
	switch mg.Cloud {
	case fly.CloudAWS:
		cfg := o.AWSConfig
		if cfg == nil {
			c, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(mg.Region))
			if err != nil {
				return nil, fmt.Errorf("load AWS credentials: %w", err)
			}
			cfg = &c
		}
		p := NewAWSProvider(*cfg, dep, o.AWSEndpoints)
		acct, err := p.Account(ctx, mg.Region)
		if err != nil {
			return nil, err
		}
		if desired, err = AWSDesired(n, acct); err != nil {
			return nil, err
		}
		e.Providers = append(e.Providers, p)
		e.Journal = p.NewAWSJournal()
	case fly.CloudYandex:
		yo := o.Yandex
		implicit := yo.Auth.KeyFile == "" && yo.Auth.Key == "" && yo.Auth.IAMToken == ""
		if implicit {
			// Neither $YC_SERVICE_ACCOUNT_KEY_FILE nor $YC_IAM_TOKEN: the
			// yandex provider's service-account key, else the metadata service.
			if ref := mg.Providers[fly.CloudYandex].ServiceAccountKey; !ref.IsZero() {
				key, err := resolve(ctx, ref)
				if err != nil {
					return nil, yandexCredentialsError(fmt.Errorf("resolve the Yandex Cloud service-account key %s: %w", ref, err))
				}
				yo.Auth.Key = key
			}
		}
		p, err := NewYandexProvider(ctx, dep, n, yo)
		if err != nil {
			if implicit {
				return nil, yandexCredentialsError(err)
			}
			return nil, err
		}
		d.closers = append(d.closers, p.Close)
		if desired, err = YandexDesired(n, p.FolderID); err != nil {
			return nil, err
		}
		yd := desired
		d.checks = append(d.checks, func(ctx context.Context) error { return p.CheckAuthTokens(ctx, yd) })
		e.Providers = append(e.Providers, p)
		e.Journal = p.NewYandexJournal()
	default:
		return nil, fmt.Errorf("mothergoose.cloud is %q: there is nothing to deploy (gosling dev runs the local cloud); set cloud = \"aws\" or \"yandex\"", mg.Cloud)
	}
	clients := NewGitLabClients(resolve, o.GitLab...)
	hooks, err := GitLabDesired(ctx, n, clients)
	if err != nil {
		return nil, err
	}
	// Always there, so hooks left from an earlier Nest are found and deleted.
	e.Providers = append(e.Providers, &GitLabProvider{Deployment: dep, Clients: clients, Resolve: resolve})
	desired = append(desired, hooks...)
	d.Engine, d.Desired = e, desired
	return d, nil
}

// yandexCredentialsError explains a failure to reach Yandex Cloud with no
// credentials given: without $YC_SERVICE_ACCOUNT_KEY_FILE or $YC_IAM_TOKEN
// the only ones left are the instance's, from its metadata service, so an
// unreachable or refusing API (Unavailable, Unauthenticated, a backend
// that cannot authenticate) most likely means there are none. Other
// errors are returned as they are.
func yandexCredentialsError(err error) error {
	code := status.Code(err)
	if code != codes.Unavailable && code != codes.Unauthenticated && !errors.Is(err, secretstore.ErrAuth) && !errors.Is(err, yandexauth.ErrCredentials) {
		return err
	}
	return &CredentialsError{Cloud: fly.CloudYandex, Err: err,
		Hint: "no Yandex Cloud credentials were given, so the instance metadata service's were tried: set $YC_SERVICE_ACCOUNT_KEY_FILE to a service account's authorized key (yc iam key create --output key.json), " +
			"or $YC_IAM_TOKEN (yc iam create-token), or run on a Yandex Cloud VM whose service account may deploy"}
}
