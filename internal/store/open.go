package store

import (
	"context"
	"fmt"
	"strings"
)

// Open opens the store a DSN names and brings its schema up to date; data
// already in it is kept, so a restarted server finds its view where it left
// it. The DSN forms are:
//
//	sqlite:///abs/path.db        SQLite file at an absolute path
//	sqlite://relative/path.db    SQLite file relative to the working directory
//	sqlite::memory:              SQLite in memory, gone when the store closes
//	file:path.db, file::memory:  the same, in SQLite's own spelling
//	postgres://... postgresql://...   PostgreSQL (pgx connection string)
//	dynamodb://TABLE_PREFIX?region=REGION&endpoint=URL
//	                             DynamoDB; region and endpoint are optional
//	                             (the SDK's region, the service's endpoint)
//	ydb://HOST/PATH?table_prefix=P&auth=iam|static&key_file=F
//	                             a YDB database through its Document API at
//	                             https://HOST/PATH; all parameters optional
//
// SQLite files and their directories are created when missing; so is the
// DynamoDB or YDB table (TABLE_PREFIX-store, TABLE_PREFIX default
// "gosling"). DynamoDB credentials come from the AWS SDK's default chain
// (environment, shared config and profiles with role_arn, web identity,
// instance and task roles). YDB with auth=iam (the default) gets IAM tokens
// for the key in key_file or $YC_SERVICE_ACCOUNT_KEY_FILE, else
// $YC_IAM_TOKEN, else the instance's service account; auth=static signs
// with a service account's static access key from the AWS chain
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). insecure=true speaks plain
// HTTP, for local stand-ins only.
func Open(ctx context.Context, dsn string) (Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return OpenPostgres(ctx, dsn)
	case strings.HasPrefix(dsn, "dynamodb://"), strings.HasPrefix(dsn, "ydb://"):
		o, err := parseDynamoDSN(dsn, envGetenv)
		if err != nil {
			scheme, _, _ := strings.Cut(dsn, ":")
			return nil, fmt.Errorf("open store: %s DSN: %w", scheme, err)
		}
		return OpenDynamoDB(ctx, o)
	case strings.HasPrefix(dsn, "sqlite:"), strings.HasPrefix(dsn, "file:"):
		path, err := sqlitePathFromDSN(dsn)
		if err != nil {
			return nil, fmt.Errorf("open store %q: %w", dsn, err)
		}
		return OpenSQLite(ctx, path)
	default:
		// Only the scheme is shown: an unknown DSN may still carry a password.
		scheme, _, _ := strings.Cut(dsn, ":")
		return nil, fmt.Errorf("open store: unknown DSN scheme %q: use sqlite:///path/to/gosling.db, sqlite::memory:, postgres://user@host/db, dynamodb://gosling?region=eu-central-1 or ydb://docapi.serverless.yandexcloud.net/ru-central1/<cloud ID>/<database ID>", scheme)
	}
}
