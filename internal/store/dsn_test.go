package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/store/dynamotest"
)

func TestDSNFromDatabase(t *testing.T) {
	ctx := context.Background()
	secrets := map[fly.SecretRef]string{
		"vault://gosling/postgres/dsn": " postgres://gosling:hunter2@db.internal/gosling?sslmode=require\n",
		"vault://gosling/not-a-dsn":    "hunter2",
	}
	resolve := func(_ context.Context, ref fly.SecretRef) (string, error) {
		v, ok := secrets[ref]
		if !ok {
			return "", errors.New("no such secret")
		}
		return v, nil
	}
	cases := []struct {
		db      fly.Database
		want    string
		wantErr string
	}{
		{db: fly.Database{Engine: "sqlite", Path: ".gosling/gosling.db"}, want: "sqlite://.gosling/gosling.db"},
		{db: fly.Database{Engine: "sqlite", Path: "/var/lib/gosling/gosling.db"}, want: "sqlite:///var/lib/gosling/gosling.db"},
		{db: fly.Database{Engine: "postgresql", DSN: "vault://gosling/postgres/dsn"}, want: "postgres://gosling:hunter2@db.internal/gosling?sslmode=require"},
		{db: fly.Database{Engine: "dynamodb", TablePrefix: "gosling", Region: "eu-central-1"}, want: "dynamodb://gosling?region=eu-central-1"},
		{db: fly.Database{Engine: "dynamodb", TablePrefix: "prod", Region: "eu-north-1", Endpoint: "http://127.0.0.1:8000"},
			want: "dynamodb://prod?endpoint=http%3A%2F%2F127.0.0.1%3A8000&region=eu-north-1"},
		{db: fly.Database{Engine: "ydb", Name: "/ru-central1/b1gx/etny", TablePrefix: "gosling", Auth: "iam"},
			want: "ydb://docapi.serverless.yandexcloud.net/ru-central1/b1gx/etny?auth=iam&table_prefix=gosling"},
		{db: fly.Database{Engine: "ydb", DocumentAPIEndpoint: "https://docapi.example/ru-central1/b1gx/etny/", TablePrefix: "g", Auth: "static"},
			want: "ydb://docapi.example/ru-central1/b1gx/etny?auth=static&table_prefix=g"},
		{db: fly.Database{Engine: "postgresql", DSN: "vault://gosling/not-a-dsn"}, wantErr: "does not hold a postgres:// connection string"},
		{db: fly.Database{Engine: "postgresql", DSN: "vault://gosling/missing"}, wantErr: "no such secret"},
		{db: fly.Database{Engine: "ydb", TablePrefix: "gosling"}, wantErr: "Document API endpoint"},
		{db: fly.Database{Engine: "dynamodb", TablePrefix: "no spaces"}, wantErr: "table prefix"},
		{db: fly.Database{Engine: "mysql"}, wantErr: "unknown engine"},
	}
	for _, tc := range cases {
		got, err := store.DSNFromDatabase(ctx, tc.db, resolve)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%+v: got %q, %v; want an error with %q", tc.db, got, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("%+v: the error shows the secret: %v", tc.db, err)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.db, err)
		case got != tc.want:
			t.Errorf("%+v:\n got %s\nwant %s", tc.db, got, tc.want)
		}
	}
}

// TestDSNFromNest opens the store the Nest's database block names.
func TestDSNFromNest(t *testing.T) {
	ctx := context.Background()
	endpoint := dynamotest.Start(t)
	db := fly.Database{Engine: "dynamodb", TablePrefix: dynamotest.TablePrefix(), Region: dynamotest.Region, Endpoint: endpoint}
	dsn, err := store.DSNFromDatabase(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := openDSN(t, dsn)
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	ydb := dynamotest.StartYDBDocAPI(t, endpoint, dynamotest.YDBOptions{AcceptToken: func(tok string) bool { return tok == "t1.nest" }})
	t.Setenv("YC_IAM_TOKEN", "t1.nest")
	dsn, err = store.DSNFromDatabase(ctx, fly.Database{Engine: "ydb", DocumentAPIEndpoint: ydb.Endpoint, TablePrefix: dynamotest.TablePrefix(), Auth: "iam"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dsn, "insecure=true") {
		t.Errorf("an http:// Document API endpoint gave %s", dsn)
	}
	s2 := openDSN(t, dsn)
	defer s2.Close()
	if err := s2.Ping(ctx); err != nil || ydb.Bearer.Load() == 0 {
		t.Fatalf("ping through the ydb DSN: %v (%d Bearer requests)", err, ydb.Bearer.Load())
	}
}
