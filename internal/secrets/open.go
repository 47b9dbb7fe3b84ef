// Package secrets adds the cloud SDK backends, Yandex Cloud Lockbox
// (yc-lockbox://) and AWS Secrets Manager (aws-sm://), to the resolver of
// package secretstore, and opens the resolver a Nest's secrets block
// configures (Open). The core (URIs, the resolver and its cache, the
// masker, the local and Vault backends) is secretstore's, which runner
// machines' agents use without any cloud SDK.
package secrets

import (
	"context"
	"os"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

// Environment variables Open reads for backends the secrets block does
// not configure, and for credentials that never belong in a file.
const (
	EnvYCKeyFile  = yandexauth.EnvKeyFile
	EnvYCIAMToken = yandexauth.EnvIAMToken
	EnvYCEndpoint = yandexauth.EnvEndpoint
	EnvVaultAddr  = secretstore.EnvVaultAddr
	EnvVaultToken = secretstore.EnvVaultToken
)

// OpenOptions are what Open needs beside MotherGoose's secrets block.
type OpenOptions struct {
	// LocalDir, when set, serves local:// from that directory; otherwise
	// the block's local path, if it has a local block, is used.
	LocalDir string
	// Getenv reads the environment (default os.LookupEnv).
	Getenv func(string) (string, bool)
	// Masker, when set, is shared with the resolver.
	Masker *secretstore.Masker
}

// Open returns a resolver over the backends cfg configures, with its cache
// TTLs. Schemes without a block still get a backend when the environment
// provides one: aws-sm always (the default credential chain), vault with
// $VAULT_ADDR, yc-lockbox always (key file, IAM token or instance
// account). Nothing is contacted until the first lookup.
func Open(ctx context.Context, cfg fly.Secrets, o OpenOptions) (*secretstore.Resolver, error) {
	env := func(k string) string {
		if o.Getenv == nil {
			return os.Getenv(k)
		}
		v, _ := o.Getenv(k)
		return v
	}
	r, err := secretstore.NewBaseResolver(cfg, o.LocalDir, o.Masker, env)
	if err != nil {
		return nil, err
	}

	aws := cfg.Backends[fly.SchemeAWSSM]
	sm, err := NewAWSSecretsManager(ctx, AWSOptions{Region: aws.Region})
	if err != nil {
		return nil, err
	}
	r.Register(sm)

	lb, err := NewLockbox(ctx, LockboxOptions{
		Endpoint: env(EnvYCEndpoint), KeyFile: env(EnvYCKeyFile), IAMToken: env(EnvYCIAMToken),
	})
	if err != nil {
		return nil, err
	}
	r.Register(lb)
	return r, nil
}
