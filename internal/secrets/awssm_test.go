package secrets_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secrets/awssmtest"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

func TestAWSSecretsManager(t *testing.T) {
	srv := awssmtest.New(t)
	testContract(t, secrets.NewAWSSecretsManagerFromConfig(srv.Config()), srv, "aws-sm://ci/runners/web", "aws-sm://ci/locked", nil)
}

func TestAWSSecretsManagerDefaultChainAndStages(t *testing.T) {
	srv := awssmtest.New(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret-key")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	ctx := context.Background()
	b, err := secrets.NewAWSSecretsManager(ctx, secrets.AWSOptions{Region: "eu-central-1", Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	r := secretstore.NewResolver(b)
	if _, err := r.Put(ctx, "aws-sm://db/main/password", "first-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(ctx, "aws-sm://db/main/password", "second-password"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Resolve(ctx, "aws-sm://db/main/password?version=AWSPREVIOUS"); err != nil || got != "first-password" {
		t.Errorf("AWSPREVIOUS = %q, %v", got, err)
	}
	srv.SetSecretString(t, "db/plain", "not json")
	if _, err := r.Resolve(ctx, "aws-sm://db/plain/password"); !errors.Is(err, secretstore.ErrKeyNotFound) {
		t.Errorf("non-JSON secret: %v", err)
	}
	srv.SetSecretString(t, "db/typed", `{"port": 5432}`)
	if got, err := r.Resolve(ctx, fly.SecretRef("aws-sm://db/typed/port")); err != nil || got != "5432" {
		t.Errorf("number field = %q, %v", got, err)
	}
}

// A secret made with no value (as gosling deploy makes them) takes its
// first value through Put as its first version.
func TestAWSSecretsManagerPutIntoEmptySecret(t *testing.T) {
	srv := awssmtest.New(t)
	ctx := context.Background()
	sm := secretsmanager.NewFromConfig(srv.Config())
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("gosling/api")}); err != nil {
		t.Fatal(err)
	}
	r := secretstore.NewResolver(secrets.NewAWSSecretsManagerFromConfig(srv.Config()))
	if _, err := r.Resolve(ctx, "aws-sm://gosling/api/token"); !errors.Is(err, secretstore.ErrNotFound) {
		t.Fatalf("an empty secret reads as not found, got %v", err)
	}
	if _, err := r.Put(ctx, "aws-sm://gosling/api/token", "first-token"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Resolve(ctx, "aws-sm://gosling/api/token"); err != nil || got != "first-token" {
		t.Errorf("after put: %q, %v", got, err)
	}
}
