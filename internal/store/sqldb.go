package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dialect holds what differs between the SQL engines; everything else in
// sqlStore is shared. Queries are written with ? placeholders and rewritten
// for engines that number their parameters.
type dialect struct {
	name string
	// numberedParams rewrites ? into $1, $2, ... (PostgreSQL).
	numberedParams bool
	// lockForUpdate is appended to the SELECT that starts a transition so a
	// concurrent transition waits for ours instead of reading a stale state.
	// SQLite has a single writer and needs nothing.
	lockForUpdate string
	// schemaTypes fills the type placeholders of the shared schema.
	schemaTypes *strings.Replacer
	// migrationLock runs first in the migration transaction so two processes
	// starting together do not both migrate. Empty when the transaction
	// itself already excludes other writers.
	migrationLock string
	// encodeTime turns a (UTC, microsecond) time into a query argument.
	encodeTime func(time.Time) any
}

// sqlStore implements Store on database/sql for every engine.
type sqlStore struct {
	dialect dialect
	// read serves queries outside transactions.
	read *sql.DB
	// write serves every write. For SQLite it holds a single connection, so
	// writers queue in Go instead of failing with SQLITE_BUSY; for
	// PostgreSQL it is the same pool as read.
	write *sql.DB
	// closers release what the engine opened, in order.
	closers   []func() error
	closeOnce sync.Once
	closeErr  error
}

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

// querier is a *sql.DB or *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// bind rewrites the ? placeholders of query for the engine. Queries in this
// package never contain a literal question mark.
func (d dialect) bind(query string) string {
	if !d.numberedParams {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// storedTime is t as the engines keep it: UTC, microseconds (PostgreSQL's
// precision), no monotonic reading. Values handed back to callers go through
// it so that what they hold equals what a later read returns.
func storedTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

func (d dialect) timeArg(t time.Time) any {
	return d.encodeTime(storedTime(t))
}

func (d dialect) nullableTimeArg(t *time.Time) any {
	if t == nil {
		return nil
	}
	return d.timeArg(*t)
}

// sqliteTimeLayout sorts as text in time order, which ListAudit's Since
// filter relies on.
const sqliteTimeLayout = "2006-01-02T15:04:05.000000Z"

// dbTime scans a time column of either engine: SQLite returns the text
// written with sqliteTimeLayout, PostgreSQL a time.Time.
type dbTime struct {
	time  time.Time
	valid bool
}

func (d *dbTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*d = dbTime{}
		return nil
	case time.Time:
		*d = dbTime{time: v.UTC(), valid: true}
		return nil
	case string:
		return d.parse(v)
	case []byte:
		return d.parse(string(v))
	default:
		return fmt.Errorf("scan time: unsupported column value of type %T", v)
	}
}

func (d *dbTime) parse(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("scan time %q: %w", s, err)
	}
	*d = dbTime{time: t.UTC(), valid: true}
	return nil
}

func (d dbTime) ptr() *time.Time {
	if !d.valid {
		return nil
	}
	t := d.time
	return &t
}

// jsonArg stores a JSON document as text, so its bytes come back unchanged.
// An empty document is stored as NULL and comes back nil.
func jsonArg(what string, doc json.RawMessage) (any, error) {
	if len(doc) == 0 {
		return nil, nil
	}
	if !json.Valid(doc) {
		return nil, fmt.Errorf("%s is not valid JSON", what)
	}
	return string(doc), nil
}

func jsonValue(s sql.NullString) json.RawMessage {
	if !s.Valid {
		return nil
	}
	return json.RawMessage(s.String)
}

// inTx runs fn in a write transaction and commits it when fn succeeds.
func (s *sqlStore) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		// The transaction's own error is the one worth reporting; a failed
		// rollback of an already failed transaction adds nothing.
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

func (s *sqlStore) Ping(ctx context.Context) error {
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s store: %w", s.dialect.name, err)
	}
	if s.write != s.read {
		if err := s.write.PingContext(ctx); err != nil {
			return fmt.Errorf("ping %s store: %w", s.dialect.name, err)
		}
	}
	return nil
}

// Close releases the store; closing it again is harmless.
func (s *sqlStore) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for _, closeFn := range s.closers {
			if err := closeFn(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("close %s store: %w", s.dialect.name, err)
		}
	})
	return s.closeErr
}

// migration is one step of the schema. Applied steps are recorded in
// schema_version and never run again, so a step is never edited once
// released: changes go into a new step.
type migration struct {
	version    int
	statements []string
}

// migrations is the schema shared by every engine. {key} is a text primary
// key that sorts by bytes, {int} a 64-bit integer, {float} a double,
// {time} a timestamp,
// {serial} an increasing integer primary key, {strict} the SQLite table
// option that makes it enforce column types.
var migrations = []migration{
	{version: 1, statements: []string{
		`CREATE TABLE runners (
			id               {key} PRIMARY KEY,
			egg              TEXT NOT NULL,
			cloud            TEXT NOT NULL,
			kind             TEXT NOT NULL,
			state            TEXT NOT NULL,
			gitlab_host      TEXT NOT NULL,
			gitlab_runner_id {int} NOT NULL,
			token_ref        TEXT NOT NULL,
			workspace        TEXT NOT NULL,
			workflow_id      TEXT NOT NULL,
			job_id           {int} NOT NULL,
			reason           TEXT NOT NULL,
			failures         {int} NOT NULL,
			last_heartbeat   {time},
			last_job_at      {time},
			created_at       {time} NOT NULL,
			updated_at       {time} NOT NULL,
			version          {int} NOT NULL
		){strict}`,
		`CREATE INDEX runners_by_egg ON runners (egg, id)`,
		`CREATE TABLE runner_transitions (
			id         {serial},
			runner_id  {key} NOT NULL REFERENCES runners (id),
			from_state TEXT NOT NULL,
			to_state   TEXT NOT NULL,
			reason     TEXT NOT NULL,
			actor      TEXT NOT NULL,
			at         {time} NOT NULL
		){strict}`,
		`CREATE INDEX runner_transitions_by_runner ON runner_transitions (runner_id, id)`,
		`CREATE TABLE egg_configs (
			name       {key} PRIMARY KEY,
			version    TEXT NOT NULL,
			spec       TEXT,
			updated_at {time} NOT NULL
		){strict}`,
		`CREATE TABLE policies (
			name       {key} PRIMARY KEY,
			version    TEXT NOT NULL,
			spec       TEXT,
			updated_at {time} NOT NULL
		){strict}`,
		`CREATE TABLE jobs (
			gitlab_host {key} NOT NULL,
			job_id      {int} NOT NULL,
			project_id  {int} NOT NULL,
			egg         TEXT NOT NULL,
			name        TEXT NOT NULL,
			ref         TEXT NOT NULL,
			pipeline_id {int} NOT NULL,
			status      TEXT NOT NULL,
			runner_id   TEXT NOT NULL,
			queued_at   {time},
			started_at  {time},
			finished_at {time},
			updated_at  {time} NOT NULL,
			PRIMARY KEY (gitlab_host, job_id)
		){strict}`,
		`CREATE INDEX jobs_newest ON jobs (job_id DESC)`,
		`CREATE INDEX jobs_by_egg ON jobs (egg, job_id DESC)`,
		`CREATE TABLE audit_log (
			id          {serial},
			at          {time} NOT NULL,
			actor       TEXT NOT NULL,
			action      TEXT NOT NULL,
			egg         TEXT NOT NULL,
			runner_id   TEXT NOT NULL,
			policy      TEXT NOT NULL,
			reason      TEXT NOT NULL,
			before_json TEXT,
			after_json  TEXT
		){strict}`,
		`CREATE INDEX audit_log_by_egg ON audit_log (egg, id)`,
		`CREATE INDEX audit_log_by_runner ON audit_log (runner_id, id)`,
	}},
	{version: 2, statements: []string{
		`CREATE TABLE webhook_deliveries (
			delivery_key {key} PRIMARY KEY,
			received_at  {time} NOT NULL
		){strict}`,
		`CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (received_at)`,
		`CREATE TABLE outbox (
			id              {serial},
			kind            TEXT NOT NULL,
			entry_key       TEXT NOT NULL,
			payload         TEXT NOT NULL,
			created_at      {time} NOT NULL,
			attempts        {int} NOT NULL,
			last_error      TEXT NOT NULL,
			next_attempt_at {time} NOT NULL,
			delivered_at    {time}
		){strict}`,
		// Only undelivered entries are ever looked up by time.
		`CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE delivered_at IS NULL`,
		`CREATE INDEX outbox_pending_by_key ON outbox (entry_key) WHERE delivered_at IS NULL`,
		`CREATE INDEX runners_by_state ON runners (egg, state)`,
	}},
	{version: 3, statements: []string{
		`ALTER TABLE audit_log ADD COLUMN dedupe_key TEXT`,
		`CREATE UNIQUE INDEX audit_log_dedupe ON audit_log (dedupe_key) WHERE dedupe_key IS NOT NULL`,
	}},
	// Queue time and cost per job (issue 24).
	{version: 4, statements: []string{
		`ALTER TABLE jobs ADD COLUMN project_path TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE jobs ADD COLUMN runner_started_at {time}`,
		`ALTER TABLE jobs ADD COLUMN queue_seconds {float} NOT NULL DEFAULT 0`,
		`ALTER TABLE jobs ADD COLUMN machine_seconds {float} NOT NULL DEFAULT 0`,
		`ALTER TABLE jobs ADD COLUMN cost {float} NOT NULL DEFAULT 0`,
		`ALTER TABLE jobs ADD COLUMN idle_cost {float} NOT NULL DEFAULT 0`,
		`CREATE INDEX jobs_by_runner ON jobs (runner_id, job_id DESC)`,
		`CREATE INDEX jobs_by_finished ON jobs (finished_at)`,
	}},
	// The machine's own agent credential (issue 22).
	{version: 5, statements: []string{
		`ALTER TABLE runners ADD COLUMN agent_ref TEXT NOT NULL DEFAULT ''`,
	}},
}

// migrate brings the schema up to date. It is safe to run on every open and
// from several processes at once.
func (s *sqlStore) migrate(ctx context.Context) error {
	latest := migrations[len(migrations)-1].version
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.dialect.migrationLock != "" {
			if _, err := tx.ExecContext(ctx, s.dialect.migrationLock); err != nil {
				return fmt.Errorf("lock schema: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)`); err != nil {
			return fmt.Errorf("create schema_version: %w", err)
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if current > latest {
			return fmt.Errorf("database schema version %d is newer than this build understands (%d): run a newer gosling", current, latest)
		}
		for _, m := range migrations {
			if m.version <= current {
				continue
			}
			for _, stmt := range m.statements {
				if _, err := tx.ExecContext(ctx, s.dialect.schemaTypes.Replace(stmt)); err != nil {
					return fmt.Errorf("apply schema version %d: %w", m.version, err)
				}
			}
			if _, err := tx.ExecContext(ctx, s.dialect.bind(`INSERT INTO schema_version (version) VALUES (?)`), m.version); err != nil {
				return fmt.Errorf("record schema version %d: %w", m.version, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate %s schema: %w", s.dialect.name, err)
	}
	return nil
}

// storedTimePtr gives the caller back the value a read would return.
func storedTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := storedTime(*t)
	return &v
}

// filter builds a list query's WHERE clause and its arguments from the
// conditions a filter sets.
type filter struct {
	conds []string
	args  []any
}

// add adds cond (with ? for each of args) when set is true.
func (f *filter) add(set bool, cond string, args ...any) {
	if set {
		f.conds = append(f.conds, cond)
		f.args = append(f.args, args...)
	}
}

// where is the WHERE clause, empty when no condition is set.
func (f *filter) where() string {
	if len(f.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(f.conds, " AND ")
}

// limit bounds a page, adding its argument last; a limit of 0 or less
// means no bound.
func (f *filter) limit(n int) string {
	if n <= 0 {
		return ""
	}
	f.args = append(f.args, n)
	return " LIMIT ?"
}
