package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMigrateFromVersion1 opens a database written by a build that knew only
// schema version 1, as an upgraded server does: its data stays, the newer
// tables appear.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`CREATE TABLE schema_version (version INTEGER PRIMARY KEY)`)
	for _, stmt := range migrations[0].statements {
		exec(sqliteDialect.schemaTypes.Replace(stmt))
	}
	exec(`INSERT INTO schema_version (version) VALUES (1)`)
	now := time.Now().UTC().Format(sqliteTimeLayout)
	// The columns of version 1: runnerColumns less what later versions added.
	v1Columns := strings.TrimSuffix(runnerColumns, ", agent_ref")
	exec(`INSERT INTO runners (`+v1Columns+`) VALUES ('r-old', 'egg-a', 'aws', 'vm', 'active', 'h', 0, '', '', '', 0, '', 0, NULL, NULL, ?, ?, 1)`, now, now)
	exec(`INSERT INTO jobs (gitlab_host, job_id, project_id, egg, name, ref, pipeline_id, status, runner_id, queued_at, started_at, finished_at, updated_at)
		VALUES ('h', 42, 7, 'egg-a', 'unit', 'main', 9, 'success', 'r-old', NULL, NULL, ?, ?)`, now, now)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version int
	if err := s.(validated).Store.(*sqlStore).read.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if want := migrations[len(migrations)-1].version; version != want {
		t.Errorf("schema version %d, want %d", version, want)
	}
	if _, err := s.GetRunner(ctx, "r-old"); err != nil {
		t.Errorf("runner of version 1 lost: %v", err)
	}
	counts, err := s.CountRunners(ctx)
	if err != nil || counts["egg-a"][StateActive] != 1 {
		t.Errorf("CountRunners after upgrade = %v, %v", counts, err)
	}
	if j, err := s.GetJob(ctx, "h", 42); err != nil || j.Status != "success" || j.Cost != 0 || j.RunnerStartedAt != nil || j.ProjectPath != "" {
		t.Errorf("job of version 1 after upgrade: %+v, %v", j, err)
	}
	if jobs, err := s.ListJobs(ctx, JobFilter{RunnerID: "r-old"}); err != nil || len(jobs) != 1 {
		t.Errorf("jobs of a runner after upgrade: %v, %v", jobs, err)
	}
	if first, err := s.RecordDelivery(ctx, "k", time.Now()); err != nil || !first {
		t.Errorf("RecordDelivery after upgrade: %v %v", first, err)
	}
	if _, err := s.EnqueueOutbox(ctx, OutboxEntry{Kind: "signal", Payload: []byte(`{}`)}); err != nil {
		t.Errorf("EnqueueOutbox after upgrade: %v", err)
	}
}
