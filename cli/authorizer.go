package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/spf13/cobra"
)

// AuthorizerOptions are the inputs of `gosling authorizer`.
type AuthorizerOptions struct {
	IO     *IOStreams
	Masker *secretstore.Masker
	// Tokens are the secret URIs of the accepted API tokens.
	Tokens []fly.SecretRef
	// CacheTTL is how long a resolved token stays in memory.
	CacheTTL time.Duration
	// Getenv reads the environment (AWS_LAMBDA_RUNTIME_API, credentials).
	Getenv func(string) (string, bool)
}

// NewCmdAuthorizer builds `gosling authorizer`: the API gateway's auth
// function on AWS, run by Lambda from the gosling image.
func NewCmdAuthorizer(f *Factory, runF func(*AuthorizerOptions) error) *cobra.Command {
	opts := &AuthorizerOptions{IO: f.IO, Masker: f.Masker, Getenv: os.LookupEnv}
	var tokens string
	ttl, badTTL := 5*time.Minute, ""
	if v, ok := opts.Getenv("GOSLING_AUTH_CACHE_TTL"); ok && v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			ttl = d
		} else {
			badTTL = v
		}
	}
	cmd := &cobra.Command{
		Use:   "authorizer",
		Short: "Run the API gateway's Lambda authorizer (inside AWS Lambda)",
		Long: `Authorizer is the auth function of the API Gateway HTTP API that
gosling deploy makes on AWS. Lambda runs it from the gosling image with the
command ["authorizer"]; it speaks the Lambda Runtime API
($AWS_LAMBDA_RUNTIME_API) and answers REQUEST authorizer events (payload
format 2.0, simple responses): isAuthorized is true when the request's
Authorization header is "Bearer <token>" and the token is the value of one
of --tokens, compared in constant time.

The tokens are secret URIs (aws-sm://, vault://, yc-lockbox://), read with
each backend's standard credentials (the function's role on AWS) and kept
in memory for --cache-ttl; their values are never logged. A token that is
missing or wrong is refused (the gateway answers 403); when no token can be
read at all, the invocation fails (the gateway answers 500) and the error
is logged.

gosling deploy sets both flags through the environment:
GOSLING_AUTH_TOKENS (comma-separated URIs) and GOSLING_AUTH_CACHE_TTL.`,
		Example: `  # What Lambda runs (the deploy sets the environment):
  GOSLING_AUTH_TOKENS=aws-sm://gosling/api/token gosling authorizer`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range strings.Split(tokens, ",") {
				if s = strings.TrimSpace(s); s == "" {
					continue
				}
				ref := fly.SecretRef(s)
				if _, err := ref.Parse(); err != nil {
					return flagErrorf("--tokens: %q: %v: name a secret URI (aws-sm://NAME/KEY, vault://PATH/KEY or yc-lockbox://ID/KEY)", s, err)
				}
				opts.Tokens = append(opts.Tokens, ref)
			}
			if len(opts.Tokens) == 0 {
				return flagErrorf("--tokens names no secret URI: set it or $GOSLING_AUTH_TOKENS, such as aws-sm://gosling/api/token")
			}
			if badTTL != "" && !cmd.Flags().Changed("cache-ttl") {
				return flagErrorf("$GOSLING_AUTH_CACHE_TTL=%q is not a duration, such as 5m or 30s", badTTL)
			}
			if opts.CacheTTL < 0 {
				return flagErrorf("--cache-ttl must not be negative, such as 5m")
			}
			if runF != nil {
				return runF(opts)
			}
			return authorizerRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&tokens, "tokens", os.Getenv("GOSLING_AUTH_TOKENS"), "comma-separated secret URIs of the accepted API tokens ($GOSLING_AUTH_TOKENS)")
	cmd.Flags().DurationVar(&opts.CacheTTL, "cache-ttl", ttl, "keep resolved tokens in memory this long ($GOSLING_AUTH_CACHE_TTL)")
	return cmd
}

// errNotInLambda: the Runtime API's address is not in the environment.
var errNotInLambda = errors.New("not inside AWS Lambda: $AWS_LAMBDA_RUNTIME_API is not set (Lambda sets it; gosling deploy makes the function)")

func authorizerRun(ctx context.Context, opts *AuthorizerOptions) error {
	addr, ok := opts.Getenv("AWS_LAMBDA_RUNTIME_API")
	if !ok || addr == "" {
		return errNotInLambda
	}
	// The library exits with a bare log line when the Runtime API cannot
	// be reached; a dial first says so plainly.
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("the Lambda Runtime API at $AWS_LAMBDA_RUNTIME_API=%s cannot be reached: %w", addr, err)
	}
	_ = conn.Close()
	res, err := secrets.Open(ctx, fly.Secrets{}, secrets.OpenOptions{Getenv: opts.Getenv, Masker: opts.Masker})
	if err != nil {
		return fmt.Errorf("open the secret backends: %w", err)
	}
	auth := api.NewAuthorizer(mothergoose.NewSecretCache(res, opts.CacheTTL), opts.Tokens)
	// Start serves invocations until Lambda stops the process; it exits
	// the process itself when the Runtime API fails.
	lambda.StartWithOptions(auth.AuthorizeHTTPAPI, lambda.WithContext(ctx))
	return nil
}
