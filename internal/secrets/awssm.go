package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

// AWSSecretsManager is the aws-sm://{secret-name}/{key} backend. A secret's
// SecretString is a JSON object and the key names one of its fields.
// Versions are the secret's versions (one per write of any key); ?version=
// takes a version ID or a staging label such as AWSPREVIOUS.
type AWSSecretsManager struct {
	client *secretsmanager.Client
}

// AWSOptions configure the Secrets Manager backend.
type AWSOptions struct {
	// Region overrides the region of the default chain.
	Region string
	// Endpoint overrides the service endpoint (a VPC endpoint, a test server).
	Endpoint string
}

// NewAWSSecretsManager builds the backend with the default credential chain:
// environment, shared config and profiles, web identity, ECS and EC2 roles.
func NewAWSSecretsManager(ctx context.Context, o AWSOptions) (*AWSSecretsManager, error) {
	var opts []func(*config.LoadOptions) error
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws-sm: load AWS configuration: %w", err)
	}
	if o.Endpoint != "" {
		cfg.BaseEndpoint = aws.String(o.Endpoint)
	}
	return NewAWSSecretsManagerFromConfig(cfg), nil
}

// NewAWSSecretsManagerFromConfig builds the backend from a loaded AWS
// configuration; its BaseEndpoint, if set, overrides the endpoint.
func NewAWSSecretsManagerFromConfig(cfg aws.Config) *AWSSecretsManager {
	return &AWSSecretsManager{client: secretsmanager.NewFromConfig(cfg)}
}

// Scheme implements Backend.
func (a *AWSSecretsManager) Scheme() string { return fly.SchemeAWSSM }

// awsVersionInput fills VersionId or VersionStage: version IDs are
// UUID-like tokens of 32 to 64 characters, stages are short labels.
func awsVersionInput(v string) (id, stage *string) {
	if v == "" {
		return nil, nil
	}
	if len(v) >= 32 {
		return aws.String(v), nil
	}
	return nil, aws.String(v)
}

func (a *AWSSecretsManager) read(ctx context.Context, name, version string) (map[string]any, string, error) {
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)}
	in.VersionId, in.VersionStage = awsVersionInput(version)
	out, err := a.client.GetSecretValue(ctx, in)
	if err != nil {
		return nil, "", awsError(err, version != "")
	}
	if out.SecretString == nil {
		return nil, "", fmt.Errorf("%w: the secret holds binary data, not a JSON object", secretstore.ErrKeyNotFound)
	}
	var m map[string]any
	if json.Unmarshal([]byte(*out.SecretString), &m) != nil || m == nil {
		// The decoder's message may quote the value: leave it out.
		return nil, "", fmt.Errorf("%w: the secret's value is not a JSON object", secretstore.ErrKeyNotFound)
	}
	return m, aws.ToString(out.VersionId), nil
}

// Get implements Backend.
func (a *AWSSecretsManager) Get(ctx context.Context, u fly.SecretURI) (string, error) {
	m, _, err := a.read(ctx, u.Path, u.Version)
	if err != nil {
		return "", err
	}
	return secretstore.JSONField(m, u.Key)
}

// Put implements Backend: it writes the secret's JSON with the key set as
// a new AWSCURRENT version, creating the secret if needed. Other keys are
// kept; a concurrent write to another key of the same secret can be lost.
func (a *AWSSecretsManager) Put(ctx context.Context, u fly.SecretURI, value string) (string, error) {
	if u.Version != "" {
		return "", fmt.Errorf("%w: a write cannot name a version", secretstore.ErrReadOnlyPath)
	}
	m, _, err := a.read(ctx, u.Path, "")
	create := errors.Is(err, secretstore.ErrNotFound)
	if err != nil && !create {
		return "", err
	}
	if m == nil {
		m = map[string]any{}
	}
	m[u.Key] = value
	return a.write(ctx, u.Path, m, create)
}

func (a *AWSSecretsManager) write(ctx context.Context, name string, m map[string]any, create bool) (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if create {
		out, err := a.client.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
			Name: aws.String(name), SecretString: aws.String(string(b)),
			Description: aws.String("Written by Gosling"),
		})
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ResourceExistsException" {
			// The secret exists with no value yet (gosling deploy makes
			// them so): its first value is a new version.
			return a.write(ctx, name, m, false)
		}
		if err != nil {
			return "", awsError(err, false)
		}
		return aws.ToString(out.VersionId), nil
	}
	out, err := a.client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: aws.String(name), SecretString: aws.String(string(b)),
	})
	if err != nil {
		return "", awsError(err, false)
	}
	return aws.ToString(out.VersionId), nil
}

// Delete implements Backend: a new version without the key. Earlier
// versions keep it until Secrets Manager expires them.
func (a *AWSSecretsManager) Delete(ctx context.Context, u fly.SecretURI) error {
	m, _, err := a.read(ctx, u.Path, "")
	if errors.Is(err, secretstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, ok := m[u.Key]; !ok {
		return nil
	}
	delete(m, u.Key)
	_, err = a.write(ctx, u.Path, m, false)
	return err
}

// ListVersions implements Versioner with ListSecretVersionIds, including
// the versions without a staging label that Secrets Manager still keeps.
func (a *AWSSecretsManager) ListVersions(ctx context.Context, u fly.SecretURI) ([]secretstore.Version, error) {
	var out []secretstore.Version
	p := secretsmanager.NewListSecretVersionIdsPaginator(a.client, &secretsmanager.ListSecretVersionIdsInput{
		SecretId: aws.String(u.Path), IncludeDeprecated: aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, awsError(err, false)
		}
		for _, v := range page.Versions {
			out = append(out, secretstore.Version{
				ID: aws.ToString(v.VersionId), Created: aws.ToTime(v.CreatedDate),
				Current: slices.Contains(v.VersionStages, "AWSCURRENT"), Labels: v.VersionStages,
			})
		}
	}
	slices.SortStableFunc(out, func(x, y secretstore.Version) int { return x.Created.Compare(y.Created) })
	return out, nil
}

// awsError maps Secrets Manager's error codes onto this package's errors;
// AWS error messages name resources, never values.
func awsError(err error, pinned bool) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return err
	}
	var kind error
	switch code := ae.ErrorCode(); {
	case code == "ResourceNotFoundException" && pinned:
		kind = fmt.Errorf("%w (or the secret does not exist)", secretstore.ErrVersion)
	case code == "ResourceNotFoundException":
		kind = secretstore.ErrNotFound
	case code == "AccessDeniedException" || code == "DecryptionFailure":
		kind = secretstore.ErrPermission
	case code == "UnrecognizedClientException" || code == "InvalidSignatureException" ||
		code == "ExpiredTokenException" || code == "InvalidClientTokenId":
		kind = secretstore.ErrAuth
	case strings.Contains(code, "Throttl") || code == "TooManyRequestsException" || code == "RequestLimitExceeded":
		kind = secretstore.ErrThrottled
	default:
		return fmt.Errorf("%s: %s", code, ae.ErrorMessage())
	}
	return fmt.Errorf("%w: %s: %s", kind, ae.ErrorCode(), ae.ErrorMessage())
}
