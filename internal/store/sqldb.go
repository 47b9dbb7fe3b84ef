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
// key that sorts by bytes, {int} a 64-bit integer, {time} a timestamp,
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

// runnerColumns is the column order scanRunner expects.
const runnerColumns = `id, egg, cloud, kind, state, gitlab_host, gitlab_runner_id, token_ref,
	workspace, workflow_id, job_id, reason, failures, last_heartbeat, last_job_at,
	created_at, updated_at, version`

func scanRunner(row rowScanner) (*Runner, error) {
	var (
		r                                      Runner
		lastHeartbeat, lastJobAt, created, upd dbTime
	)
	err := row.Scan(&r.ID, &r.Egg, &r.Cloud, &r.Kind, &r.State, &r.GitLabHost, &r.GitLabRunnerID,
		&r.TokenRef, &r.Workspace, &r.WorkflowID, &r.JobID, &r.Reason, &r.Failures,
		&lastHeartbeat, &lastJobAt, &created, &upd, &r.Version)
	if err != nil {
		return nil, err
	}
	r.LastHeartbeat = lastHeartbeat.ptr()
	r.LastJobAt = lastJobAt.ptr()
	r.CreatedAt = created.time
	r.UpdatedAt = upd.time
	return &r, nil
}

func (s *sqlStore) CreateRunner(ctx context.Context, r *Runner) error {
	if r.ID == "" {
		return errors.New("create runner: empty ID")
	}
	state := r.State
	if state == "" {
		state = StateProvisioning
	}
	if !state.Valid() {
		return fmt.Errorf("create runner %s: unknown state %q", r.ID, state)
	}
	now := storedTime(time.Now())
	created, updated := now, now
	if !r.CreatedAt.IsZero() {
		created = storedTime(r.CreatedAt)
	}
	if !r.UpdatedAt.IsZero() {
		updated = storedTime(r.UpdatedAt)
	}
	d := s.dialect
	res, err := s.write.ExecContext(ctx, d.bind(`INSERT INTO runners (`+runnerColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`),
		r.ID, r.Egg, r.Cloud, r.Kind, string(state), r.GitLabHost, r.GitLabRunnerID, r.TokenRef,
		r.Workspace, r.WorkflowID, r.JobID, r.Reason, r.Failures,
		d.nullableTimeArg(r.LastHeartbeat), d.nullableTimeArg(r.LastJobAt),
		d.timeArg(created), d.timeArg(updated), 1)
	if err != nil {
		return fmt.Errorf("create runner %s: %w", r.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("create runner %s: %w", r.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("create runner %s: %w", r.ID, ErrExists)
	}
	r.State = state
	r.CreatedAt, r.UpdatedAt = created, updated
	r.LastHeartbeat = storedTimePtr(r.LastHeartbeat)
	r.LastJobAt = storedTimePtr(r.LastJobAt)
	r.Version = 1
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

func (s *sqlStore) GetRunner(ctx context.Context, id string) (*Runner, error) {
	r, err := s.getRunner(ctx, s.read, id, "")
	if err != nil {
		return nil, fmt.Errorf("get runner %s: %w", id, err)
	}
	return r, nil
}

// getRunner reads one runner; ErrNotFound (unwrapped) when it is missing.
func (s *sqlStore) getRunner(ctx context.Context, q querier, id, suffix string) (*Runner, error) {
	row := q.QueryRowContext(ctx, s.dialect.bind(`SELECT `+runnerColumns+` FROM runners WHERE id = ?`+suffix), id)
	r, err := scanRunner(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return r, err
}

func (s *sqlStore) ListRunners(ctx context.Context, f RunnerFilter) ([]Runner, error) {
	var (
		where []string
		args  []any
	)
	if f.Egg != "" {
		where = append(where, "egg = ?")
		args = append(args, f.Egg)
	}
	if f.Cloud != "" {
		where = append(where, "cloud = ?")
		args = append(args, f.Cloud)
	}
	if f.GitLabHost != "" {
		where = append(where, "gitlab_host = ?")
		args = append(args, f.GitLabHost)
	}
	if f.GitLabRunnerID != 0 {
		where = append(where, "gitlab_runner_id = ?")
		args = append(args, f.GitLabRunnerID)
	}
	if len(f.States) > 0 {
		where = append(where, "state IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(f.States)), ", ")+")")
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	if f.After != "" {
		where = append(where, "id > ?")
		args = append(args, f.After)
	}
	query := `SELECT ` + runnerColumns + ` FROM runners` + whereClause(where) + ` ORDER BY id` + limitClause(f.Limit, &args)
	rows, err := s.read.QueryContext(ctx, s.dialect.bind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	defer rows.Close()
	var out []Runner
	for rows.Next() {
		r, err := scanRunner(rows)
		if err != nil {
			return nil, fmt.Errorf("list runners: %w", err)
		}
		out = append(out, *r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	return out, nil
}

func whereClause(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// limitClause bounds a page; a limit of 0 or less means no bound.
func limitClause(limit int, args *[]any) string {
	if limit <= 0 {
		return ""
	}
	*args = append(*args, limit)
	return " LIMIT ?"
}

// runnerUpdateSet lists the columns UpdateRunner and Transition write; the
// arguments come from runnerUpdateArgs in the same order. State, ID and
// CreatedAt are absent: the lifecycle owns the first, the others never change.
const runnerUpdateSet = `egg = ?, cloud = ?, kind = ?, gitlab_host = ?, gitlab_runner_id = ?,
	token_ref = ?, workspace = ?, workflow_id = ?, job_id = ?, reason = ?, failures = ?,
	last_heartbeat = ?, last_job_at = ?, updated_at = ?`

func (s *sqlStore) runnerUpdateArgs(r *Runner, updated time.Time) []any {
	d := s.dialect
	return []any{r.Egg, r.Cloud, r.Kind, r.GitLabHost, r.GitLabRunnerID,
		r.TokenRef, r.Workspace, r.WorkflowID, r.JobID, r.Reason, r.Failures,
		d.nullableTimeArg(r.LastHeartbeat), d.nullableTimeArg(r.LastJobAt), d.timeArg(updated)}
}

func (s *sqlStore) UpdateRunner(ctx context.Context, r *Runner) error {
	now := storedTime(time.Now())
	args := append(s.runnerUpdateArgs(r, now), r.ID, r.Version)
	var (
		state   RunnerState
		created dbTime
	)
	// RETURNING hands back what UpdateRunner does not write, so r ends up
	// equal to the stored row even if the caller changed r.State.
	err := s.write.QueryRowContext(ctx, s.dialect.bind(`UPDATE runners
		SET `+runnerUpdateSet+`, version = version + 1
		WHERE id = ? AND version = ?
		RETURNING state, created_at`), args...).Scan(&state, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("update runner %s: %w", r.ID, s.missingOrConflict(ctx, r.ID, r.Version))
	}
	if err != nil {
		return fmt.Errorf("update runner %s: %w", r.ID, err)
	}
	r.State = state
	r.CreatedAt = created.time
	r.UpdatedAt = now
	r.LastHeartbeat = storedTimePtr(r.LastHeartbeat)
	r.LastJobAt = storedTimePtr(r.LastJobAt)
	r.Version++
	return nil
}

// missingOrConflict explains why a versioned update matched no row.
func (s *sqlStore) missingOrConflict(ctx context.Context, id string, readVersion int64) error {
	var stored int64
	err := s.read.QueryRowContext(ctx, s.dialect.bind(`SELECT version FROM runners WHERE id = ?`), id).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return err
	default:
		return fmt.Errorf("%w (read version %d, stored version %d)", ErrConflict, readVersion, stored)
	}
}

func (s *sqlStore) Transition(ctx context.Context, req TransitionRequest) (*Runner, error) {
	var result *Runner
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := s.getRunner(ctx, tx, req.RunnerID, s.dialect.lockForUpdate)
		if err != nil {
			return err
		}
		if req.Version != 0 && req.Version != cur.Version {
			return fmt.Errorf("%w (read version %d, stored version %d)", ErrConflict, req.Version, cur.Version)
		}
		if req.To == cur.State {
			result = cur
			return nil
		}
		if !CanTransition(cur.State, req.To) {
			return IllegalTransitionError(cur.State, req.To)
		}
		next := *cur
		if req.Update != nil {
			req.Update(&next)
		}
		// Update may touch any field; the identity, the lifecycle and the
		// version stay under the store's control.
		next.ID, next.CreatedAt = cur.ID, cur.CreatedAt
		next.State, next.Reason = req.To, req.Reason
		next.UpdatedAt = storedTime(time.Now())
		next.LastHeartbeat = storedTimePtr(next.LastHeartbeat)
		next.LastJobAt = storedTimePtr(next.LastJobAt)
		next.Version = cur.Version + 1

		args := append(s.runnerUpdateArgs(&next, next.UpdatedAt), string(next.State), next.Version, cur.ID, cur.Version)
		res, err := tx.ExecContext(ctx, s.dialect.bind(`UPDATE runners
			SET `+runnerUpdateSet+`, state = ?, version = ?
			WHERE id = ? AND version = ?`), args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w (read version %d)", ErrConflict, cur.Version)
		}
		_, err = tx.ExecContext(ctx, s.dialect.bind(`INSERT INTO runner_transitions
			(runner_id, from_state, to_state, reason, actor, at) VALUES (?, ?, ?, ?, ?, ?)`),
			cur.ID, string(cur.State), string(next.State), req.Reason, req.Actor, s.dialect.timeArg(next.UpdatedAt))
		if err != nil {
			return fmt.Errorf("record transition: %w", err)
		}
		result = &next
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("transition runner %s to %s: %w", req.RunnerID, req.To, err)
	}
	return result, nil
}

func (s *sqlStore) RunnerHistory(ctx context.Context, id string) ([]Transition, error) {
	var exists int
	err := s.read.QueryRowContext(ctx, s.dialect.bind(`SELECT 1 FROM runners WHERE id = ?`), id).Scan(&exists)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("runner history %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("runner history %s: %w", id, err)
	}
	rows, err := s.read.QueryContext(ctx, s.dialect.bind(`SELECT runner_id, from_state, to_state, reason, actor, at
		FROM runner_transitions WHERE runner_id = ? ORDER BY id`), id)
	if err != nil {
		return nil, fmt.Errorf("runner history %s: %w", id, err)
	}
	defer rows.Close()
	var out []Transition
	for rows.Next() {
		var (
			t  Transition
			at dbTime
		)
		if err := rows.Scan(&t.RunnerID, &t.From, &t.To, &t.Reason, &t.Actor, &at); err != nil {
			return nil, fmt.Errorf("runner history %s: %w", id, err)
		}
		t.At = at.time
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("runner history %s: %w", id, err)
	}
	return out, nil
}

// putSpec upserts a named, versioned JSON document (egg configs, policies).
func (s *sqlStore) putSpec(ctx context.Context, table, name, version string, spec json.RawMessage, updated time.Time) error {
	if name == "" {
		return errors.New("empty name")
	}
	specArg, err := jsonArg("spec", spec)
	if err != nil {
		return err
	}
	if updated.IsZero() {
		updated = time.Now()
	}
	_, err = s.write.ExecContext(ctx, s.dialect.bind(`INSERT INTO `+table+` (name, version, spec, updated_at)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET version = excluded.version, spec = excluded.spec, updated_at = excluded.updated_at`),
		name, version, specArg, s.dialect.timeArg(updated))
	return err
}

// specRow is the shape shared by egg configs and policies.
type specRow struct {
	name, version string
	spec          json.RawMessage
	updatedAt     time.Time
}

func scanSpec(row rowScanner) (specRow, error) {
	var (
		r       specRow
		spec    sql.NullString
		updated dbTime
	)
	if err := row.Scan(&r.name, &r.version, &spec, &updated); err != nil {
		return specRow{}, err
	}
	r.spec = jsonValue(spec)
	r.updatedAt = updated.time
	return r, nil
}

func (s *sqlStore) listSpecs(ctx context.Context, table string) ([]specRow, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT name, version, spec, updated_at FROM `+table+` ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []specRow
	for rows.Next() {
		r, err := scanSpec(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *sqlStore) PutEggConfig(ctx context.Context, c EggConfig) error {
	if err := s.putSpec(ctx, "egg_configs", c.Name, c.Version, c.Spec, c.UpdatedAt); err != nil {
		return fmt.Errorf("put egg config %s: %w", c.Name, err)
	}
	return nil
}

func (s *sqlStore) GetEggConfig(ctx context.Context, name string) (*EggConfig, error) {
	r, err := scanSpec(s.read.QueryRowContext(ctx, s.dialect.bind(`SELECT name, version, spec, updated_at
		FROM egg_configs WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get egg config %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get egg config %s: %w", name, err)
	}
	return &EggConfig{Name: r.name, Version: r.version, Spec: r.spec, UpdatedAt: r.updatedAt}, nil
}

func (s *sqlStore) ListEggConfigs(ctx context.Context) ([]EggConfig, error) {
	rows, err := s.listSpecs(ctx, "egg_configs")
	if err != nil {
		return nil, fmt.Errorf("list egg configs: %w", err)
	}
	out := make([]EggConfig, 0, len(rows))
	for _, r := range rows {
		out = append(out, EggConfig{Name: r.name, Version: r.version, Spec: r.spec, UpdatedAt: r.updatedAt})
	}
	return out, nil
}

func (s *sqlStore) PutPolicy(ctx context.Context, p Policy) error {
	if err := s.putSpec(ctx, "policies", p.Name, p.Version, p.Spec, p.UpdatedAt); err != nil {
		return fmt.Errorf("put policy %s: %w", p.Name, err)
	}
	return nil
}

func (s *sqlStore) ListPolicies(ctx context.Context) ([]Policy, error) {
	rows, err := s.listSpecs(ctx, "policies")
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	out := make([]Policy, 0, len(rows))
	for _, r := range rows {
		out = append(out, Policy{Name: r.name, Version: r.version, Spec: r.spec, UpdatedAt: r.updatedAt})
	}
	return out, nil
}

// jobColumns is the column order scanJob expects.
const jobColumns = `gitlab_host, job_id, project_id, egg, name, ref, pipeline_id, status,
	runner_id, queued_at, started_at, finished_at, updated_at`

func scanJob(row rowScanner) (*JobRecord, error) {
	var (
		j                                  JobRecord
		queued, started, finished, updated dbTime
	)
	err := row.Scan(&j.GitLabHost, &j.JobID, &j.ProjectID, &j.Egg, &j.Name, &j.Ref, &j.PipelineID,
		&j.Status, &j.RunnerID, &queued, &started, &finished, &updated)
	if err != nil {
		return nil, err
	}
	j.QueuedAt, j.StartedAt, j.FinishedAt = queued.ptr(), started.ptr(), finished.ptr()
	j.UpdatedAt = updated.time
	return &j, nil
}

func (s *sqlStore) RecordJob(ctx context.Context, j JobRecord) (JobRecord, error) {
	if j.GitLabHost == "" || j.JobID == 0 {
		return JobRecord{}, fmt.Errorf("record job %s#%d: a job needs its GitLab host and job ID", j.GitLabHost, j.JobID)
	}
	if j.UpdatedAt.IsZero() {
		j.UpdatedAt = time.Now()
	}
	// Read, merge and write in one transaction, the row locked (PostgreSQL)
	// or the database's one writer held (SQLite), so concurrent deliveries
	// about one job are merged one after the other. Two first records race
	// on the insert; the loser merges into the winner's row.
	for range 5 {
		var (
			out  JobRecord
			done bool
		)
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			cur, err := scanJob(tx.QueryRowContext(ctx, s.dialect.bind(`SELECT `+jobColumns+`
				FROM jobs WHERE gitlab_host = ? AND job_id = ?`+s.dialect.lockForUpdate), j.GitLabHost, j.JobID))
			if errors.Is(err, sql.ErrNoRows) {
				out = MergeJob(nil, j)
				done, err = s.insertJob(ctx, tx, out)
				return err
			}
			if err != nil {
				return err
			}
			out, done = MergeJob(cur, j), true
			if sameJobRecord(out, *cur) {
				return nil
			}
			return s.updateJob(ctx, tx, out)
		})
		if err != nil {
			return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, err)
		}
		if done {
			return out, nil
		}
	}
	return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, ErrConflict)
}

// insertJob inserts a new job; false when another writer inserted it first.
func (s *sqlStore) insertJob(ctx context.Context, tx *sql.Tx, j JobRecord) (bool, error) {
	d := s.dialect
	res, err := tx.ExecContext(ctx, d.bind(`INSERT INTO jobs (`+jobColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (gitlab_host, job_id) DO NOTHING`),
		j.GitLabHost, j.JobID, j.ProjectID, j.Egg, j.Name, j.Ref, j.PipelineID, j.Status, j.RunnerID,
		d.nullableTimeArg(j.QueuedAt), d.nullableTimeArg(j.StartedAt), d.nullableTimeArg(j.FinishedAt),
		d.timeArg(j.UpdatedAt))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (s *sqlStore) updateJob(ctx context.Context, tx *sql.Tx, j JobRecord) error {
	d := s.dialect
	_, err := tx.ExecContext(ctx, d.bind(`UPDATE jobs SET project_id = ?, egg = ?, name = ?, ref = ?,
		pipeline_id = ?, status = ?, runner_id = ?, queued_at = ?, started_at = ?, finished_at = ?, updated_at = ?
		WHERE gitlab_host = ? AND job_id = ?`),
		j.ProjectID, j.Egg, j.Name, j.Ref, j.PipelineID, j.Status, j.RunnerID,
		d.nullableTimeArg(j.QueuedAt), d.nullableTimeArg(j.StartedAt), d.nullableTimeArg(j.FinishedAt),
		d.timeArg(j.UpdatedAt), j.GitLabHost, j.JobID)
	return err
}

func (s *sqlStore) GetJob(ctx context.Context, host string, jobID int64) (*JobRecord, error) {
	j, err := scanJob(s.read.QueryRowContext(ctx, s.dialect.bind(`SELECT `+jobColumns+`
		FROM jobs WHERE gitlab_host = ? AND job_id = ?`), host, jobID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get job %s#%d: %w", host, jobID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s#%d: %w", host, jobID, err)
	}
	return j, nil
}

func (s *sqlStore) ListJobs(ctx context.Context, f JobFilter) ([]JobRecord, error) {
	var (
		where []string
		args  []any
	)
	if f.Egg != "" {
		where = append(where, "egg = ?")
		args = append(args, f.Egg)
	}
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, f.Status)
	}
	if f.BeforeJobID > 0 {
		where = append(where, "job_id < ?")
		args = append(args, f.BeforeJobID)
	}
	query := `SELECT ` + jobColumns + ` FROM jobs` + whereClause(where) +
		` ORDER BY job_id DESC, gitlab_host` + limitClause(f.Limit, &args)
	rows, err := s.read.QueryContext(ctx, s.dialect.bind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []JobRecord
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		out = append(out, *j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}

func (s *sqlStore) AppendAudit(ctx context.Context, a AuditRecord) (int64, error) {
	if a.Actor == "" || a.Action == "" {
		return 0, fmt.Errorf("append audit: a record needs an actor and an action (got actor %q, action %q)", a.Actor, a.Action)
	}
	before, err := jsonArg("before", a.Before)
	if err != nil {
		return 0, fmt.Errorf("append audit %s by %s: %w", a.Action, a.Actor, err)
	}
	after, err := jsonArg("after", a.After)
	if err != nil {
		return 0, fmt.Errorf("append audit %s by %s: %w", a.Action, a.Actor, err)
	}
	at := a.At
	if at.IsZero() {
		at = time.Now()
	}
	var key any
	if a.Key != "" {
		key = a.Key
	}
	var id int64
	err = s.write.QueryRowContext(ctx, s.dialect.bind(`INSERT INTO audit_log
		(at, actor, action, egg, runner_id, policy, reason, before_json, after_json, dedupe_key)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id`),
		s.dialect.timeArg(at), a.Actor, a.Action, a.Egg, a.RunnerID, a.Policy, a.Reason, before, after, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) && a.Key != "" {
		// Written before under this key: that record stands.
		err = s.write.QueryRowContext(ctx, s.dialect.bind(`SELECT id FROM audit_log WHERE dedupe_key = ?`), a.Key).Scan(&id)
	}
	if err != nil {
		return 0, fmt.Errorf("append audit %s by %s: %w", a.Action, a.Actor, err)
	}
	return id, nil
}

func (s *sqlStore) RecordHeartbeat(ctx context.Context, id string, at time.Time) error {
	res, err := s.write.ExecContext(ctx, s.dialect.bind(`UPDATE runners SET last_heartbeat = ? WHERE id = ?`), s.dialect.timeArg(at), id)
	if err != nil {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, ErrNotFound)
	}
	return nil
}

func (s *sqlStore) ExpireAudit(ctx context.Context, before time.Time) (int64, error) {
	if before.IsZero() {
		return 0, errors.New("expire audit: no cut-off time")
	}
	res, err := s.write.ExecContext(ctx, s.dialect.bind(`DELETE FROM audit_log WHERE at < ?`), s.dialect.timeArg(before))
	if err != nil {
		return 0, fmt.Errorf("expire audit before %s: %w", before.Format(time.RFC3339), err)
	}
	return res.RowsAffected()
}

func (s *sqlStore) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	var (
		where []string
		args  []any
	)
	if f.Egg != "" {
		where = append(where, "egg = ?")
		args = append(args, f.Egg)
	}
	if f.RunnerID != "" {
		where = append(where, "runner_id = ?")
		args = append(args, f.RunnerID)
	}
	if !f.Since.IsZero() {
		where = append(where, "at >= ?")
		args = append(args, s.dialect.timeArg(f.Since))
	}
	if f.AfterID > 0 {
		where = append(where, "id > ?")
		args = append(args, f.AfterID)
	}
	query := `SELECT id, at, actor, action, egg, runner_id, policy, reason, before_json, after_json
		FROM audit_log` + whereClause(where) + ` ORDER BY id` + limitClause(f.Limit, &args)
	rows, err := s.read.QueryContext(ctx, s.dialect.bind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var (
			a             AuditRecord
			at            dbTime
			before, after sql.NullString
		)
		if err := rows.Scan(&a.ID, &at, &a.Actor, &a.Action, &a.Egg, &a.RunnerID, &a.Policy, &a.Reason, &before, &after); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		a.At = at.time
		a.Before, a.After = jsonValue(before), jsonValue(after)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}

func (s *sqlStore) CountRunners(ctx context.Context) (map[string]map[RunnerState]int, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT egg, state, COUNT(*) FROM runners GROUP BY egg, state`)
	if err != nil {
		return nil, fmt.Errorf("count runners: %w", err)
	}
	defer rows.Close()
	out := map[string]map[RunnerState]int{}
	for rows.Next() {
		var (
			egg   string
			state RunnerState
			n     int
		)
		if err := rows.Scan(&egg, &state, &n); err != nil {
			return nil, fmt.Errorf("count runners: %w", err)
		}
		if out[egg] == nil {
			out[egg] = map[RunnerState]int{}
		}
		out[egg][state] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count runners: %w", err)
	}
	return out, nil
}

func (s *sqlStore) RecordDelivery(ctx context.Context, key string, at time.Time) (bool, error) {
	if key == "" {
		return false, errors.New("record delivery: empty key")
	}
	if at.IsZero() {
		at = time.Now()
	}
	// ON CONFLICT DO NOTHING settles races inside the database: of several
	// concurrent inserts of one key exactly one affects a row.
	res, err := s.write.ExecContext(ctx, s.dialect.bind(`INSERT INTO webhook_deliveries (delivery_key, received_at)
		VALUES (?, ?) ON CONFLICT (delivery_key) DO NOTHING`), key, s.dialect.timeArg(at))
	if err != nil {
		return false, fmt.Errorf("record delivery: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record delivery: %w", err)
	}
	return n == 1, nil
}

func (s *sqlStore) ForgetDelivery(ctx context.Context, key string) error {
	if _, err := s.write.ExecContext(ctx, s.dialect.bind(`DELETE FROM webhook_deliveries WHERE delivery_key = ?`), key); err != nil {
		return fmt.Errorf("forget delivery: %w", err)
	}
	return nil
}

func (s *sqlStore) PruneDeliveries(ctx context.Context, olderThan time.Time) (int64, error) {
	res, err := s.write.ExecContext(ctx, s.dialect.bind(`DELETE FROM webhook_deliveries WHERE received_at < ?`), s.dialect.timeArg(olderThan))
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	return n, nil
}

func (s *sqlStore) PruneOutbox(ctx context.Context, olderThan time.Time) (int64, error) {
	res, err := s.write.ExecContext(ctx, s.dialect.bind(`DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?`), s.dialect.timeArg(olderThan))
	if err != nil {
		return 0, fmt.Errorf("prune outbox: %w", err)
	}
	return res.RowsAffected()
}

func (s *sqlStore) EnqueueOutbox(ctx context.Context, e OutboxEntry) (int64, error) {
	if e.Kind == "" {
		return 0, errors.New("enqueue outbox: an entry needs a kind")
	}
	if len(e.Payload) == 0 || !json.Valid(e.Payload) {
		return 0, fmt.Errorf("enqueue outbox %s %s: the payload is not valid JSON", e.Kind, e.Key)
	}
	created := e.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	next := e.NextAttemptAt
	if next.IsZero() {
		next = created
	}
	d := s.dialect
	var id int64
	err := s.write.QueryRowContext(ctx, d.bind(`INSERT INTO outbox
		(kind, entry_key, payload, created_at, attempts, last_error, next_attempt_at, delivered_at)
		VALUES (?, ?, ?, ?, 0, '', ?, NULL) RETURNING id`),
		e.Kind, e.Key, string(e.Payload), d.timeArg(created), d.timeArg(next)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("enqueue outbox %s %s: %w", e.Kind, e.Key, err)
	}
	return id, nil
}

func (s *sqlStore) DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxEntry, error) {
	args := []any{s.dialect.timeArg(now)}
	query := `SELECT id, kind, entry_key, payload, created_at, attempts, last_error, next_attempt_at, delivered_at
		FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ? ORDER BY id` + limitClause(limit, &args)
	rows, err := s.read.QueryContext(ctx, s.dialect.bind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("due outbox: %w", err)
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var (
			e                        OutboxEntry
			payload                  string
			created, next, delivered dbTime
		)
		if err := rows.Scan(&e.ID, &e.Kind, &e.Key, &payload, &created, &e.Attempts, &e.LastError, &next, &delivered); err != nil {
			return nil, fmt.Errorf("due outbox: %w", err)
		}
		e.Payload = json.RawMessage(payload)
		e.CreatedAt, e.NextAttemptAt, e.DeliveredAt = created.time, next.time, delivered.ptr()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due outbox: %w", err)
	}
	return out, nil
}

// updateOutbox runs an UPDATE of one outbox entry; ErrNotFound when the ID
// names none.
func (s *sqlStore) updateOutbox(ctx context.Context, query string, args ...any) error {
	res, err := s.write.ExecContext(ctx, s.dialect.bind(query), args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *sqlStore) MarkOutboxDelivered(ctx context.Context, id int64, at time.Time) error {
	if at.IsZero() {
		at = time.Now()
	}
	if err := s.updateOutbox(ctx, `UPDATE outbox SET delivered_at = ? WHERE id = ?`, s.dialect.timeArg(at), id); err != nil {
		return fmt.Errorf("mark outbox entry %d delivered: %w", id, err)
	}
	return nil
}

func (s *sqlStore) MarkOutboxFailed(ctx context.Context, id int64, errMsg string, next time.Time) error {
	err := s.updateOutbox(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?`,
		errMsg, s.dialect.timeArg(next), id)
	if err != nil {
		return fmt.Errorf("mark outbox entry %d failed: %w", id, err)
	}
	return nil
}

func (s *sqlStore) OutboxDepth(ctx context.Context) (int64, error) {
	var n int64
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox depth: %w", err)
	}
	return n, nil
}

func (s *sqlStore) OutboxPending(ctx context.Context, key string) (bool, error) {
	var one int
	err := s.read.QueryRowContext(ctx, s.dialect.bind(`SELECT 1 FROM outbox WHERE entry_key = ? AND delivered_at IS NULL LIMIT 1`), key).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("outbox pending %s: %w", key, err)
	}
	return true, nil
}
