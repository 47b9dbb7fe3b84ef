package tofu

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
)

// State backends (Backend.Kind).
const (
	// BackendLocal keeps each workspace's state in its directory on this
	// worker's disk: one worker only (gosling dev, or a single worker on
	// SQLite). A teardown that lands on another worker finds no state.
	BackendLocal = "local"
	// BackendPG keeps every workspace's state in PostgreSQL (OpenTofu's
	// built-in pg backend), locked with PostgreSQL advisory locks held by
	// the OpenTofu process's session: a killed apply's lock ends with its
	// connection.
	BackendPG = "pg"
	// BackendS3 keeps states in an S3 bucket (AWS S3, Yandex Object
	// Storage), locked by a lock file written with a conditional PUT
	// (use_lockfile): a killed apply leaves its lock behind, which the
	// retry that owns it releases (Executor.Apply's LockOwner).
	BackendS3 = "s3"
)

// Backend says where workspaces keep their OpenTofu state. Every worker
// replica must share one remote backend: a runner's machine made by one
// worker is torn down by whichever worker runs the teardown. Each runner is
// an OpenTofu workspace of its own, named after it.
type Backend struct {
	Kind string
	// Block is the backend block of every workspace's configuration. It
	// holds no secret: credentials go in Env, which is never written to
	// disk.
	Block map[string]any
	// Env are the variables the backend reads its credentials from
	// (PG_CONN_STR; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
	Env map[string]string
	// prepare, when set, readies the backend's storage once before the
	// first run (the pg backend's schema, table and index).
	prepare func(ctx context.Context) error
	// lockID, when set, reads the ID of the lock held on a workspace's
	// state ("" when none is): backends whose lock outlives a killed run.
	lockID func(ctx context.Context, workspace string) (string, error)
}

// Remote tells whether the backend is shared by every worker.
func (b Backend) Remote() bool { return b.Kind != "" && b.Kind != BackendLocal }

// PGSchema is the PostgreSQL schema OpenTofu's states live in, beside the
// store's tables.
const PGSchema = "gosling_tofu"

// PGBackend keeps states in the PostgreSQL database of dsn (a postgres://
// URL; its password reaches OpenTofu through PG_CONN_STR only), in schema
// PGSchema.
func PGBackend(dsn string) (Backend, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" && u.Query().Get("host") == "" {
		return Backend{}, fmt.Errorf("pg state backend: %q is not a postgres:// URL", redact(dsn))
	}
	return Backend{
		Kind: BackendPG,
		// Gosling makes the schema itself (preparePG): OpenTofu's own
		// CREATE ... IF NOT EXISTS fails when two workers' first runs
		// race on a new database.
		Block: map[string]any{"schema_name": PGSchema, "skip_schema_creation": true, "skip_table_creation": true, "skip_index_creation": true},
		Env:   map[string]string{"PG_CONN_STR": dsn},
		prepare: func(ctx context.Context) error {
			return preparePG(ctx, dsn)
		},
	}, nil
}

// pgPrepareLock serialises the schema's creation across workers (a
// transaction-scoped advisory lock).
const pgPrepareLock = 0x676f736c696e67 // "gosling"

// preparePG makes what OpenTofu's pg backend keeps states in, exactly as
// the backend itself would (opentofu internal/backend/remote-state/pg:
// schema PGSchema, the public.global_states_id_seq sequence, table states
// with a unique name, index states_by_name), in one transaction under an
// advisory lock, so workers starting together do not race.
func preparePG(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("pg state backend: connect: %w", err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pg state backend: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	schema := pgx.Identifier{PGSchema}.Sanitize()
	for _, q := range []string{
		fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", pgPrepareLock),
		"CREATE SCHEMA IF NOT EXISTS " + schema,
		"CREATE SEQUENCE IF NOT EXISTS public.global_states_id_seq AS bigint",
		"CREATE TABLE IF NOT EXISTS " + schema + ".states (id bigint NOT NULL DEFAULT nextval('public.global_states_id_seq') PRIMARY KEY, name text UNIQUE, data text)",
		"CREATE UNIQUE INDEX IF NOT EXISTS states_by_name ON " + schema + ".states (name)",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("pg state backend: prepare schema %s: %w", PGSchema, err)
		}
	}
	return tx.Commit(ctx)
}

// S3Config says where an S3 backend keeps its states.
type S3Config struct {
	Bucket string
	// Prefix starts every state's key (default gosling/runners).
	Prefix string
	Region string
	// Endpoint is the S3 API's URL for S3-compatible storage (Yandex
	// Object Storage: https://storage.yandexcloud.net); empty for AWS.
	Endpoint string
	// PathStyle addresses the bucket in the path (needed by most
	// S3-compatible servers).
	PathStyle bool
	// Env are the credentials' variables (AWS_ACCESS_KEY_ID, ...); empty
	// uses the worker's own identity (instance profile, task role).
	Env map[string]string
}

// S3Backend keeps states in a bucket, each runner's under
// <prefix>/<runner>/terraform.tfstate, locked with use_lockfile.
func S3Backend(c S3Config) (Backend, error) {
	if c.Bucket == "" {
		return Backend{}, fmt.Errorf("s3 state backend: no bucket")
	}
	if c.Region == "" {
		return Backend{}, fmt.Errorf("s3 state backend: no region")
	}
	prefix := strings.Trim(c.Prefix, "/")
	if prefix == "" {
		prefix = "gosling/runners"
	}
	block := map[string]any{
		"bucket": c.Bucket, "region": c.Region, "key": "terraform.tfstate",
		"workspace_key_prefix": prefix, "use_lockfile": true,
	}
	if c.Endpoint == "" {
		block["encrypt"] = true
	} else {
		block["endpoints"] = map[string]any{"s3": c.Endpoint}
		// S3-compatible storage has no STS or account to check.
		block["skip_credentials_validation"] = true
		block["skip_requesting_account_id"] = true
		block["skip_region_validation"] = true
		block["skip_metadata_api_check"] = true
		block["skip_s3_checksum"] = true
	}
	if c.PathStyle {
		block["use_path_style"] = true
	}
	return Backend{Kind: BackendS3, Block: block, Env: maps.Clone(c.Env), lockID: s3LockID(c, prefix, "terraform.tfstate")}, nil
}

// redact hides a URL's password.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
