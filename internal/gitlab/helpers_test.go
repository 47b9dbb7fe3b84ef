package gitlab

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// Test waits are milliseconds: the retry tests exercise the logic, not the
// clock.
const (
	testRetryMax = 4
	testWaitMin  = time.Millisecond
	testWaitMax  = 20 * time.Millisecond
)

func newServer(t *testing.T) *gitlabtest.Server {
	t.Helper()
	s := gitlabtest.New()
	t.Cleanup(s.Close)
	return s
}

// logBuffer collects log output so tests can check no secret reached it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newClient(t *testing.T, s *gitlabtest.Server, opts ...Option) (*Client, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	base := []Option{
		WithRetry(testRetryMax, testWaitMin, testWaitMax),
		WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}
	c, err := New(s.URL(), s.Token(), append(base, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if out := logs.String(); strings.Contains(out, s.Token()) {
			t.Errorf("log output contains the API token:\n%s", out)
		}
		for _, r := range s.Runners() {
			if strings.Contains(logs.String(), r.Token) {
				t.Errorf("log output contains runner %d's token", r.ID)
			}
		}
	})
	return c, logs
}

func projectSpec(projectID int64, description string) RunnerSpec {
	return RunnerSpec{
		Type:           RunnerTypeProject,
		ProjectID:      projectID,
		Description:    description,
		Tags:           []string{"gosling", "linux"},
		MaximumTimeout: time.Hour,
	}
}
