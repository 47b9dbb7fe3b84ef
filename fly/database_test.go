package fly

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestDatabaseBlock(t *testing.T) {
	cases := []struct {
		dir  string
		want Database
	}{
		{"testdata/valid/dynamodb", Database{
			Engine: "dynamodb", TablePrefix: "gosling-prod", Region: "eu-north-1",
			Endpoint: "https://vpce-0abc.dynamodb.eu-north-1.vpce.amazonaws.com",
		}},
		{"testdata/valid/ydb", Database{
			Engine: "ydb", TablePrefix: "gosling_prod", Auth: "static",
			DocumentAPIEndpoint: "https://docapi.serverless.yandexcloud.net/ru-central1/b1gexample/etnexample",
		}},
		// The Document API endpoint follows from the database path.
		{filepath.Join("..", "examples", "nest"), Database{
			Engine: "ydb", Endpoint: "grpcs://ydb.serverless.yandexcloud.net:2135", Name: "/ru-central1/b1gexample/etnexample",
			TablePrefix: "gosling", Auth: "iam",
			DocumentAPIEndpoint: "https://docapi.serverless.yandexcloud.net/ru-central1/b1gexample/etnexample",
		}},
		{"testdata/valid/minimal", Database{Engine: "sqlite", Path: ".gosling/gosling.db"}},
	}
	for _, tc := range cases {
		nest, diags := LoadNest(tc.dir, Options{Getenv: testEnv})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", tc.dir, diags.Diagnostics)
		}
		got := nest.MotherGoose.Database
		if want := filepath.Join(tc.dir, "MG", "config.fly") + ":"; !strings.HasPrefix(got.At, want) {
			t.Errorf("%s: database block at %q, want it in %s", tc.dir, got.At, want)
		}
		got.At = ""
		if got != tc.want {
			t.Errorf("%s: database\n got %+v\nwant %+v", tc.dir, got, tc.want)
		}
	}
}

func TestValidTablePrefix(t *testing.T) {
	for p, ok := range map[string]bool{
		"gosling": true, "prod.gosling_v2-a": true, "": false, "with space": false, "ünï": false,
		string(make([]byte, 201)): false,
	} {
		if err := ValidTablePrefix(p); (err == nil) != ok {
			t.Errorf("ValidTablePrefix(%q) = %v, want ok %v", p, err, ok)
		}
	}
}
