package workflows

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
)

func interrupt(runner string, jobs ...int64) InterruptReported {
	m := contract.RunnerInterrupted{RunnerID: runner, Source: "shutdown", At: planNow}
	for _, id := range jobs {
		m.Jobs = append(m.Jobs, contract.JobRef{JobID: id, ProjectID: 3})
	}
	return InterruptReported{Report: m}
}

// An interrupted runner takes no new job and is retired; the job it was
// running is retried once it is gone, and only once; a late webhook of
// the interrupted job makes no runner.
func TestPlanPoolInterruption(t *testing.T) {
	for _, tc := range []struct {
		name   string
		st     contract.PoolState
		events []PoolEvent
		want   string
		retry  string
	}{
		{
			name: "running job retried after the runner is gone",
			st:   planState(apex(1, 7), apex(2)),
			events: []PoolEvent{
				interrupt("web-p1", 7),
				RetireReported{Report: contract.RunnerRetired{RunnerID: "web-p1"}},
				JobRetryEnded{JobID: 7, Result: activities.RetryJobResult{Outcome: activities.RetryOutcomeRetried, NewJobID: 8}},
			},
			want:  "retire:web-p1 retry-job:web-p1",
			retry: "7 on web-p1: retried as 8",
		},
		{
			name: "a repeated notice and a late pending make nothing more",
			st:   planState(apex(1, 7)),
			events: []PoolEvent{
				interrupt("web-p1", 7),
				interrupt("web-p1", 7),
				RetireReported{Report: contract.RunnerRetired{RunnerID: "web-p1"}},
				RetireReported{Report: contract.RunnerRetired{RunnerID: "web-p1"}},
				demand(7),
			},
			want:  "retire:web-p1 retry-job:web-p1",
			retry: "7 on web-p1: asked as 0",
		},
		{
			name: "the retry's pending is served by another runner",
			st:   planState(apex(1, 7), apex(2)),
			events: []PoolEvent{
				interrupt("web-p1", 7),
				RetireReported{Report: contract.RunnerRetired{RunnerID: "web-p1"}},
				JobRetryEnded{JobID: 7, Result: activities.RetryJobResult{Outcome: activities.RetryOutcomeRetried, NewJobID: 8}},
				demand(8),
			},
			want:  "retire:web-p1 retry-job:web-p1",
			retry: "7 on web-p1: retried as 8",
		},
		{
			name: "a failed retry is not asked again",
			st:   planState(apex(1, 7)),
			events: []PoolEvent{
				interrupt("web-p1", 7),
				RetireReported{Report: contract.RunnerRetired{RunnerID: "web-p1"}},
				JobRetryEnded{JobID: 7, Err: "403 Forbidden - Job is not retryable"},
				TickElapsed{},
			},
			want:  "retire:web-p1 retry-job:web-p1",
			retry: "7 on web-p1: failed as 0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, acts := plan(t, tc.st, planRun, tc.events...)
			var kept []string
			for _, a := range acts {
				if strings.HasPrefix(a, "retire:") || strings.HasPrefix(a, "retry-job:") || strings.HasPrefix(a, "provision:") {
					kept = append(kept, a)
				}
			}
			if got := strings.Join(kept, " "); got != tc.want {
				t.Errorf("actions = %s, want %s (all: %v)", got, tc.want, acts)
			}
			var retry []string
			for _, x := range st.Interrupted {
				retry = append(retry, strings.Join([]string{itoa(x.Job.JobID), "on", x.RunnerID + ":", x.Retry, "as", itoa(x.NewJobID)}, " "))
			}
			if got := strings.Join(retry, ", "); got != tc.retry {
				t.Errorf("interrupted = %q, want %q", got, tc.retry)
			}
			if tc.name == "the retry's pending is served by another runner" && !strings.Contains(jobsOf(st), "web-p2:apex[8]") {
				t.Errorf("runners = %s, want web-p2 serving job 8", jobsOf(st))
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
