package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/gosling-ci/gosling/fly"
)

// DSNFromDatabase turns MG/config.fly's database block (as fly decoded and
// checked it) into the DSN Open takes, so servers open the store the Nest
// names:
//
//	sqlite      sqlite://PATH (a relative path stays relative to the working directory)
//	postgresql  the connection string in the secret db.DSN names, read with resolve
//	dynamodb    dynamodb://TABLE_PREFIX?region=REGION[&endpoint=URL]
//	ydb         ydb://HOST/PATH?table_prefix=P&auth=iam|static, from the
//	            Document API endpoint (insecure=true for an http:// one)
//
// resolve may be nil when the block names no secret. The returned DSN may
// hold a password (PostgreSQL's): never log it.
func DSNFromDatabase(ctx context.Context, db fly.Database, resolve func(context.Context, fly.SecretRef) (string, error)) (string, error) {
	switch db.Engine {
	case "sqlite":
		if db.Path == "" {
			return "", errors.New("database: sqlite needs a path")
		}
		if strings.ContainsAny(db.Path, "?#") {
			return "", fmt.Errorf("database: sqlite path %q holds '?' or '#', which a sqlite DSN cannot carry", db.Path)
		}
		return "sqlite://" + db.Path, nil
	case "postgresql":
		if db.DSN.IsZero() {
			return "", errors.New("database: postgresql needs dsn, a secret URI holding the connection string")
		}
		if resolve == nil {
			return "", fmt.Errorf("database: no secret resolver to read dsn %s", db.DSN)
		}
		dsn, err := resolve(ctx, db.DSN)
		if err != nil {
			return "", fmt.Errorf("database: read dsn %s: %w", db.DSN, err)
		}
		dsn = strings.TrimSpace(dsn)
		if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
			// The value is a secret: say what is wrong without showing it.
			return "", fmt.Errorf("database: the secret %s does not hold a postgres:// connection string", db.DSN)
		}
		return dsn, nil
	case "dynamodb":
		if err := CheckTablePrefix(db.TablePrefix); err != nil {
			return "", fmt.Errorf("database: %w", err)
		}
		q := url.Values{}
		if db.Region != "" {
			q.Set("region", db.Region)
		}
		if db.Endpoint != "" {
			if err := checkEndpoint(db.Endpoint); err != nil {
				return "", fmt.Errorf("database: %w", err)
			}
			q.Set("endpoint", db.Endpoint)
		}
		return "dynamodb://" + db.TablePrefix + encodeQuery(q), nil
	case "ydb":
		endpoint := db.DocumentAPIEndpoint
		if endpoint == "" && db.Name != "" {
			endpoint = fly.YDBDocumentAPIHost + db.Name
		}
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") == "" {
			return "", fmt.Errorf("database: ydb needs its Document API endpoint (%s/ru-central1/<cloud ID>/<database ID>); got %q", fly.YDBDocumentAPIHost, endpoint)
		}
		if err := CheckTablePrefix(db.TablePrefix); err != nil {
			return "", fmt.Errorf("database: %w", err)
		}
		q := url.Values{}
		q.Set("table_prefix", db.TablePrefix)
		if db.Auth != "" {
			q.Set("auth", db.Auth)
		}
		if u.Scheme == "http" {
			q.Set("insecure", "true")
		}
		return "ydb://" + u.Host + "/" + strings.Trim(u.Path, "/") + encodeQuery(q), nil
	default:
		return "", fmt.Errorf("database: unknown engine %q: use sqlite, postgresql, dynamodb or ydb", db.Engine)
	}
}

func encodeQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}
