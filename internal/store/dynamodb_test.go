package store_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gosling-ci/gosling/internal/secrets/lockboxtest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/store/dynamotest"
	"github.com/gosling-ci/gosling/internal/store/storetest"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

// iamServer is the Yandex IAM stand-in of internal/secrets: it exchanges
// service-account keys for IAM tokens and hands tokens to the metadata
// service it serves.
func iamServer(t *testing.T) *lockboxtest.Server {
	t.Helper()
	srv, err := lockboxtest.New("t1.fixed-iam-token")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// serviceAccountKey writes an authorized key as `yc iam key create` does.
func serviceAccountKey(t *testing.T) string {
	t.Helper()
	pk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&pk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := json.Marshal(map[string]string{
		"id": "ajekeyid", "service_account_id": "ajeserviceaccount", "key_algorithm": "RSA_2048",
		"created_at":  "2024-01-01T00:00:00Z",
		"public_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(file, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestYDBDocumentAPI runs the contract through the YDB Document API mode:
// IAM tokens for a service-account key from the IAM stand-in, sent as
// Bearer tokens to the Document API stand-in, which checks them.
func TestYDBDocumentAPI(t *testing.T) {
	t.Parallel()
	iam := iamServer(t)
	keyFile := serviceAccountKey(t)
	ydb := dynamotest.StartYDBDocAPI(t, dynamotest.Start(t), dynamotest.YDBOptions{AcceptToken: iam.Accepts})
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.OpenDynamoDB(context.Background(), store.DynamoOptions{
			TablePrefix: dynamotest.TablePrefix(), Endpoint: ydb.Endpoint, Region: store.YDBRegion,
			YDB: &store.YDBOptions{IAM: yandexauth.Options{Endpoint: iam.Addr, Plaintext: true, KeyFile: keyFile}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	t.Cleanup(func() {
		if ydb.Bearer.Load() == 0 || ydb.SigV4.Load() != 0 {
			t.Errorf("stand-in saw %d Bearer and %d SigV4 requests, want only Bearer", ydb.Bearer.Load(), ydb.SigV4.Load())
		}
	})
}

// openAndUse opens dsn and writes and reads a runner through it.
func openAndUse(t *testing.T, dsn string) error {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer s.Close()
	r := &store.Runner{ID: "r-1", Egg: "egg-a", Cloud: "yandex", Kind: "vm"}
	if err := s.CreateRunner(ctx, r); err != nil {
		return err
	}
	if _, err := s.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, Version: r.Version, To: store.StateRegistering}); err != nil {
		return err
	}
	got, err := s.GetRunner(ctx, r.ID)
	if err != nil {
		return err
	}
	if got.State != store.StateRegistering || got.Version != 2 {
		t.Errorf("runner through %s: %+v", dsn, got)
	}
	return s.Ping(ctx)
}

// The ydb:// DSN's credentials: a fixed token, a key file, the metadata
// service, and a static access key.
func TestYDBDSNCredentials(t *testing.T) {
	iam := iamServer(t)
	ydb := dynamotest.StartYDBDocAPI(t, dynamotest.Start(t), dynamotest.YDBOptions{
		AcceptToken: iam.Accepts, KeyID: "YCAJEstatickey", Secret: "YCstatic-secret",
	})
	for _, k := range []string{yandexauth.EnvKeyFile, yandexauth.EnvIAMToken, yandexauth.EnvEndpoint, "YC_METADATA_ADDR"} {
		t.Setenv(k, "")
	}

	t.Run("IAM token", func(t *testing.T) {
		t.Setenv(yandexauth.EnvIAMToken, "t1.fixed-iam-token")
		before := ydb.Bearer.Load()
		if err := openAndUse(t, ydb.DSN()); err != nil {
			t.Fatal(err)
		}
		if ydb.Bearer.Load() == before {
			t.Error("no request carried the IAM token")
		}
		t.Setenv(yandexauth.EnvIAMToken, "t1.revoked")
		err := openAndUse(t, ydb.DSN())
		if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "ydb.editor") {
			t.Errorf("revoked IAM token: %v", err)
		}
	})

	t.Run("metadata service", func(t *testing.T) {
		md := iam.MetadataServer()
		defer md.Close()
		t.Setenv("YC_METADATA_ADDR", strings.TrimPrefix(md.URL, "http://"))
		if err := openAndUse(t, ydb.DSN()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("key file", func(t *testing.T) {
		// The key file is read on open; exchanging it needs the IAM
		// service, which only Open's options can point at a plaintext
		// stand-in (TestYDBDocumentAPI does), so here a missing file is
		// the check.
		missing := filepath.Join(t.TempDir(), "missing.json")
		_, err := store.Open(context.Background(), ydb.DSN("key_file="+url.QueryEscape(missing)))
		if !errors.Is(err, yandexauth.ErrCredentials) || !strings.Contains(err.Error(), missing) {
			t.Errorf("missing key file: %v", err)
		}
	})

	t.Run("static key", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "YCAJEstatickey")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "YCstatic-secret")
		before := ydb.SigV4.Load()
		if err := openAndUse(t, ydb.DSN("auth=static")); err != nil {
			t.Fatal(err)
		}
		if ydb.SigV4.Load() == before {
			t.Error("no request was signed with the static key")
		}
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
		err := openAndUse(t, ydb.DSN("auth=static"))
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("wrong static secret: %v", err)
		}
	})
}

func TestDynamoDBOpenErrors(t *testing.T) {
	endpoint := dynamotest.Start(t)
	ctx := context.Background()

	t.Run("DSN", func(t *testing.T) {
		for dsn, want := range map[string]string{
			"dynamodb://gosling?regoin=eu-central-1":                                    `unknown dynamodb DSN parameter "regoin"`,
			"dynamodb://bad prefix!?region=eu-central-1":                                "table prefix",
			"dynamodb://gosling?region=x&endpoint=ftp://example":                        "not an http:// or https:// URL",
			"ydb://docapi.serverless.yandexcloud.net":                                   "names the database's Document API endpoint",
			"ydb://docapi.serverless.yandexcloud.net/ru-central1/b1g/etn?auth=password": `auth="password"`,
			"ydb://docapi.serverless.yandexcloud.net/ru-central1/b1g/etn?region=x":      `unknown ydb DSN parameter "region"`,
		} {
			_, err := store.Open(ctx, dsn)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Open(%q) = %v, want an error with %q", dsn, err, want)
			}
		}
	})

	t.Run("no region", func(t *testing.T) {
		t.Setenv("AWS_REGION", "")
		t.Setenv("AWS_DEFAULT_REGION", "")
		t.Setenv("AWS_PROFILE", "")
		t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
		_, err := store.Open(ctx, "dynamodb://"+dynamotest.TablePrefix()+"?endpoint="+url.QueryEscape(endpoint))
		if err == nil || !strings.Contains(err.Error(), "no AWS region") || !strings.Contains(err.Error(), "?region=") {
			t.Errorf("no region: %v", err)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		_, err := store.Open(ctx, "dynamodb://gosling?region=us-east-1&endpoint=http://127.0.0.1:1")
		if err == nil || !strings.Contains(err.Error(), "cannot reach dynamodb at http://127.0.0.1:1") {
			t.Errorf("unreachable endpoint: %v", err)
		}
	})

	t.Run("permission denied", func(t *testing.T) {
		// The stand-in refuses what it cannot authenticate, as DynamoDB
		// refuses what IAM does not allow.
		denying := dynamotest.StartYDBDocAPI(t, endpoint, dynamotest.YDBOptions{})
		_, err := store.Open(ctx, "dynamodb://gosling?region=us-east-1&endpoint="+url.QueryEscape(denying.Endpoint))
		if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "dynamodb:Query") ||
			!strings.Contains(err.Error(), "gosling-store") {
			t.Errorf("denied: %v", err)
		}
	})

	client := rawClient(t, endpoint)
	t.Run("newer layout", func(t *testing.T) {
		prefix := dynamotest.TablePrefix()
		dsn := "dynamodb://" + prefix + "?region=us-east-1&endpoint=" + url.QueryEscape(endpoint)
		s := openDSN(t, dsn)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_, err := client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(prefix + "-store"), Item: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "meta"}, "sk": &types.AttributeValueMemberS{Value: "schema"},
			"version": &types.AttributeValueMemberN{Value: "1000"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = store.Open(ctx, dsn)
		if err == nil || !strings.Contains(err.Error(), "newer") {
			t.Errorf("opening a table from a newer build: %v", err)
		}
	})

	t.Run("foreign table", func(t *testing.T) {
		prefix := dynamotest.TablePrefix()
		_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:            aws.String(prefix + "-store"),
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
			BillingMode:          types.BillingModePayPerRequest,
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = store.Open(ctx, "dynamodb://"+prefix+"?region=us-east-1&endpoint="+url.QueryEscape(endpoint))
		if err == nil || !strings.Contains(err.Error(), "another key schema") {
			t.Errorf("a table of another shape: %v", err)
		}
	})

	t.Run("closed", func(t *testing.T) {
		s := openDSN(t, dynamotest.DSN(t))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := s.Ping(ctx); err == nil {
			t.Error("Ping succeeded on a closed store")
		}
		if _, err := s.GetRunner(ctx, "r"); err == nil {
			t.Error("GetRunner succeeded on a closed store")
		}
	})
}

// TestDynamoDBRestart is what a restarted server does with a table made
// by another process: it finds the data and the table as they were.
func TestDynamoDBRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := dynamotest.DSN(t)
	first := openDSN(t, dsn)
	second := openDSN(t, dsn) // opening an existing table
	defer second.Close()
	r := &store.Runner{ID: "r-1", Egg: "egg-a", State: store.StateProvisioning}
	if err := first.CreateRunner(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := second.GetRunner(ctx, r.ID)
	if err != nil || got.Version != 1 {
		t.Fatalf("runner from the other process: %+v, %v", got, err)
	}
	if err := second.RecordHeartbeat(ctx, r.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func rawClient(t *testing.T, endpoint string) *dynamodb.Client {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion(dynamotest.Region))
	if err != nil {
		t.Fatal(err)
	}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(endpoint) })
}
