// Package yandexauth is Gosling's one way to authenticate to Yandex Cloud:
// it picks the credentials (a service-account authorized key, a fixed IAM
// token, or the instance's service account from the metadata service) and
// builds the Yandex Cloud Go SDK (github.com/yandex-cloud/go-sdk/v2) over
// them. Lockbox (internal/secrets) calls gRPC services through the SDK;
// the store's YDB Document API mode (internal/store) sends the SDK's IAM
// tokens over HTTP as "Authorization: Bearer <IAM token>".
package yandexauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	ycsdk "github.com/yandex-cloud/go-sdk/v2"
	yccreds "github.com/yandex-cloud/go-sdk/v2/credentials"
	ycendpoints "github.com/yandex-cloud/go-sdk/v2/pkg/endpoints"
	"github.com/yandex-cloud/go-sdk/v2/pkg/iamkey"
	ycoptions "github.com/yandex-cloud/go-sdk/v2/pkg/options"
)

// DefaultEndpoint is the API endpoint the SDK discovers services from.
const DefaultEndpoint = "api.cloud.yandex.net:443"

// Options say how to reach Yandex Cloud and as whom. Credentials, first
// set wins: KeyFile, Key, IAMToken, else the service account of the instance
// from its metadata service ($YC_METADATA_ADDR overrides its address, as in
// the SDK).
type Options struct {
	// Endpoint is the API endpoint (default DefaultEndpoint).
	Endpoint string
	// Plaintext dials without TLS and sends every service to Endpoint, for
	// test servers that serve everything at one address.
	Plaintext bool
	// KeyFile is a service account's authorized key (JSON, as
	// `yc iam key create` writes it), exchanged for IAM tokens.
	KeyFile string
	// Key is such a key's JSON itself, as a secret URI resolves to it.
	Key string
	// IAMToken is a fixed IAM token (it expires after at most 12 hours).
	IAMToken string
}

// Environment variables FromEnv reads, as Yandex's tools name them.
const (
	EnvKeyFile  = "YC_SERVICE_ACCOUNT_KEY_FILE"
	EnvIAMToken = "YC_IAM_TOKEN"
	EnvEndpoint = "YC_ENDPOINT"
)

// FromEnv reads Options from the environment: $YC_SERVICE_ACCOUNT_KEY_FILE,
// $YC_IAM_TOKEN and $YC_ENDPOINT.
func FromEnv(getenv func(string) string) Options {
	return Options{Endpoint: getenv(EnvEndpoint), KeyFile: getenv(EnvKeyFile), IAMToken: getenv(EnvIAMToken)}
}

// ErrCredentials wraps a failure to read or use the credentials.
var ErrCredentials = errors.New("yandex cloud credentials")

// Credentials returns the SDK credentials o names.
func Credentials(o Options) (yccreds.Credentials, error) {
	switch {
	case o.KeyFile != "":
		c, err := yccreds.ServiceAccountKeyFile(o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: service-account key %s: %v", ErrCredentials, o.KeyFile, err)
		}
		return c, nil
	case o.Key != "":
		key, err := iamkey.ReadFromJSONBytes([]byte(o.Key))
		if err != nil {
			// The key's bytes are secret: the error names none of them.
			return nil, fmt.Errorf("%w: the service-account key is not an authorized key in JSON", ErrCredentials)
		}
		c, err := yccreds.ServiceAccountKey(key)
		if err != nil {
			return nil, fmt.Errorf("%w: service-account key %s: %v", ErrCredentials, key.GetId(), err)
		}
		return c, nil
	case o.IAMToken != "":
		return yccreds.IAMToken(o.IAMToken), nil
	default:
		return yccreds.InstanceServiceAccount(), nil
	}
}

// BuildSDK builds the SDK over creds; it discovers the service endpoints
// from o.Endpoint unless o.Plaintext.
func BuildSDK(ctx context.Context, o Options, creds yccreds.Credentials) (*ycsdk.SDK, error) {
	endpoint := o.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	opts := []ycoptions.Option{ycoptions.WithCredentials(creds), ycoptions.WithDiscoveryEndpoint(endpoint)}
	if o.Plaintext {
		// A test server: no TLS, and every service at its one address,
		// which the SDK's discovery (always over TLS) cannot reach.
		opts = append(opts, ycoptions.WithPlaintext(), ycoptions.WithEndpointsResolver(ycendpoints.NewPrefixEndpointsResolver(
			ycendpoints.PrefixToEndpoint{"yandex.cloud": ycendpoints.NewEndpointParams(endpoint, ycendpoints.Plaintext())})))
	}
	sdk, err := ycsdk.Build(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to Yandex Cloud at %s: %w", endpoint, err)
	}
	return sdk, nil
}

// TokenSource hands out IAM tokens for o's credentials and reuses one
// until it nears its expiry. Yandex IAM tokens live at most 12 hours and
// Yandex asks clients to get a new one at least every hour
// (https://yandex.cloud/en/docs/iam/concepts/authorization/iam-token), so a
// token is reused for at most RefreshAfter.
type TokenSource struct {
	opts  Options
	creds yccreds.Credentials
	now   func() time.Time

	mu      sync.Mutex
	sdk     *ycsdk.SDK
	token   string
	renewAt time.Time
}

// RefreshAfter is the longest a token is reused.
const RefreshAfter = time.Hour

// expiryMargin is how long before its expiry a token is no longer used.
const expiryMargin = 5 * time.Minute

// NewTokenSource checks o's credentials; it contacts nothing until the
// first Token call.
func NewTokenSource(o Options) (*TokenSource, error) {
	creds, err := Credentials(o)
	if err != nil {
		return nil, err
	}
	return &TokenSource{opts: o, creds: creds, now: time.Now}, nil
}

// Token returns a valid IAM token, getting a new one when the last is
// older than RefreshAfter or expires within five minutes. Errors wrap
// ErrCredentials.
func (t *TokenSource) Token(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.token != "" && now.Before(t.renewAt) {
		return t.token, nil
	}
	token, expires, err := t.fetch(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: get an IAM token: %v", ErrCredentials, err)
	}
	t.token = token
	t.renewAt = now.Add(RefreshAfter)
	if !expires.IsZero() && expires.Add(-expiryMargin).Before(t.renewAt) {
		t.renewAt = expires.Add(-expiryMargin)
	}
	return t.token, nil
}

// fetch gets a new token: a fixed token and the metadata service's hand
// theirs over directly; a key is exchanged at the IAM service, through the
// SDK (built on first need). It is called with t.mu held.
func (t *TokenSource) fetch(ctx context.Context) (string, time.Time, error) {
	if direct, ok := t.creds.(yccreds.NonExchangeableCredentials); ok {
		tok, err := direct.IAMToken(ctx)
		if err != nil {
			return "", time.Time{}, err
		}
		return tok.Token, tok.ExpiresAt, nil
	}
	if t.sdk == nil {
		sdk, err := BuildSDK(ctx, t.opts, t.creds)
		if err != nil {
			return "", time.Time{}, err
		}
		t.sdk = sdk
	}
	tok, err := t.sdk.CreateIAMToken(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	return tok.GetIamToken(), tok.GetExpiresAt(), nil
}

// Close releases the SDK's connections; a later Token builds them again.
func (t *TokenSource) Close(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sdk == nil {
		return nil
	}
	err := t.sdk.Shutdown(ctx)
	t.sdk, t.token = nil, ""
	return err
}
