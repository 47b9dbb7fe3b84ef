package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// jobKey sorts jobs by ID (any int64, shifted to unsigned), then host.
func jobKey(jobID int64, host string) string { return jobIDKey(jobID) + "#" + host }

func jobIDKey(jobID int64) string { return fmt.Sprintf("%020d", uint64(jobID)^(1<<63)) }

func decodeJob(it *item) (JobRecord, error) {
	j := JobRecord{
		GitLabHost: it.str("gitlab_host"), JobID: it.int("job_id"), ProjectID: it.int("project_id"),
		Egg: it.str("egg"), Name: it.str("name"), Ref: it.str("ref"), PipelineID: it.int("pipeline_id"),
		Status: it.str("status"), RunnerID: it.str("runner_id"),
		QueuedAt: it.timePtr("queued_at"), StartedAt: it.timePtr("started_at"), FinishedAt: it.timePtr("finished_at"),
		UpdatedAt: it.time("updated_at"), ProjectPath: it.str("project_path"), RunnerStartedAt: it.timePtr("runner_started_at"),
		QueueSeconds: it.float("queue_seconds"), MachineSeconds: it.float("machine_seconds"), Cost: it.float("cost"),
		IdleCost: it.float("idle_cost"),
	}
	if it.err != nil {
		return JobRecord{}, fmt.Errorf("decode job %s#%d: %w", j.GitLabHost, j.JobID, it.err)
	}
	return j, nil
}

func (s *dynamoStore) RecordJob(ctx context.Context, j JobRecord) (JobRecord, error) {
	if err := s.check(); err != nil {
		return JobRecord{}, err
	}
	if j.UpdatedAt.IsZero() {
		j.UpdatedAt = time.Now()
	}
	// Read, merge, and write back on the condition that nobody wrote in
	// between (the item's rev is the one read); a writer that lost the
	// race reads again and merges into the winner's record, after a short
	// random pause so that a burst of events about one job does not retry
	// in lockstep.
	sk := jobKey(j.JobID, j.GitLabHost)
	for attempt := range recordJobAttempts {
		if attempt > 0 {
			if err := conflictPause(ctx, attempt); err != nil {
				return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, err)
			}
		}
		it, err := s.getItem(ctx, partJob, sk)
		var (
			stored *JobRecord
			rev    int64
			e      = &expr{}
			cond   string
		)
		switch {
		case errors.Is(err, ErrNotFound):
			cond = e.notExists("pk")
		case err != nil:
			return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, err)
		default:
			cur, err := decodeJob(it)
			if err != nil {
				return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, err)
			}
			stored, rev = &cur, it.int("rev")
			if it.has("rev") {
				cond = e.cond("rev", "=", avN(rev))
			} else {
				cond = e.notExists("rev") // written before revs were kept
			}
		}
		out := MergeJob(stored, j)
		if stored != nil && sameJobRecord(out, *stored) {
			return out, nil
		}
		err = s.putItem(ctx, jobItem(out, sk, rev+1), e, cond)
		if isConditionFailed(err) {
			continue
		}
		if err != nil {
			return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, err)
		}
		return out, nil
	}
	return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, ErrConflict)
}

// recordJobAttempts bounds RecordJob's read-merge-write rounds.
const recordJobAttempts = 16

// jobItem is a job's whole item; rev counts its writes.
func jobItem(j JobRecord, sk string, rev int64) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{
		"pk": avS(partJob), "sk": avS(sk), "rev": avN(rev),
		"gitlab_host": avS(j.GitLabHost), "job_id": avN(j.JobID), "project_id": avN(j.ProjectID),
		"egg": avS(j.Egg), "name": avS(j.Name), "ref": avS(j.Ref), "pipeline_id": avN(j.PipelineID),
		"status": avS(j.Status), "runner_id": avS(j.RunnerID), "updated_at": avTime(j.UpdatedAt),
	}
	for attr, t := range map[string]*time.Time{"queued_at": j.QueuedAt, "started_at": j.StartedAt, "finished_at": j.FinishedAt,
		"runner_started_at": j.RunnerStartedAt} {
		if t != nil {
			m[attr] = avTime(*t)
		}
	}
	if j.ProjectPath != "" {
		m["project_path"] = avS(j.ProjectPath)
	}
	for attr, v := range map[string]float64{"queue_seconds": j.QueueSeconds, "machine_seconds": j.MachineSeconds, "cost": j.Cost, "idle_cost": j.IdleCost} {
		if v != 0 {
			m[attr] = avF(v)
		}
	}
	return m
}

func (s *dynamoStore) GetJob(ctx context.Context, host string, jobID int64) (*JobRecord, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	it, err := s.getItem(ctx, partJob, jobKey(jobID, host))
	if err != nil {
		return nil, fmt.Errorf("get job %s#%d: %w", host, jobID, err)
	}
	j, err := decodeJob(it)
	if err != nil {
		return nil, fmt.Errorf("get job %s#%d: %w", host, jobID, err)
	}
	return &j, nil
}

func (s *dynamoStore) ListJobs(ctx context.Context, f JobFilter) ([]JobRecord, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	q := query{pk: partJob, e: &expr{}, backward: true}
	var filters []string
	if f.Egg != "" {
		filters = append(filters, q.e.cond("egg", "=", avS(f.Egg)))
	}
	if f.Status != "" {
		filters = append(filters, q.e.cond("status", "=", avS(f.Status)))
	}
	if f.RunnerID != "" {
		filters = append(filters, q.e.cond("runner_id", "=", avS(f.RunnerID)))
	}
	if !f.FinishedSince.IsZero() {
		// Times are text that sorts in time order; an absent one fails
		// the comparison.
		filters = append(filters, q.e.cond("finished_at", ">=", avTime(f.FinishedSince)))
	}
	if f.BeforeJobID > 0 {
		q.skCond = q.e.cond("sk", "<", avS(jobIDKey(f.BeforeJobID)))
	}
	q.filter = strings.Join(filters, " AND ")
	// Newest job first, hosts of one job ID in byte order, as the SQL
	// engines list them. The sort key orders hosts backwards here, so the
	// last job ID of a page is read whole and reordered.
	var out []JobRecord
	err := s.query(ctx, q, func(it *item) (bool, error) {
		j, err := decodeJob(it)
		if err != nil {
			return false, err
		}
		if f.Limit > 0 && len(out) >= f.Limit && j.JobID != out[len(out)-1].JobID {
			return false, nil
		}
		out = append(out, j)
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	slices.SortStableFunc(out, func(a, b JobRecord) int {
		if a.JobID != b.JobID {
			if a.JobID > b.JobID {
				return -1
			}
			return 1
		}
		return strings.Compare(a.GitLabHost, b.GitLabHost)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}
