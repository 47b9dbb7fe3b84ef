package runnerstandin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestMaskerCatchesSplitSecrets(t *testing.T) {
	m := newMasker([]string{"topsecret", "abc"}, nil)
	var out []byte
	for _, chunk := range []string{"x top", "sec", "ret y ab", "c z abx", "top"} {
		out = append(out, m.write([]byte(chunk))...)
	}
	out = append(out, m.flush()...)
	if got, want := string(out), "x [MASKED] y [MASKED] z abxtop"; got != want {
		t.Errorf("masked %q, want %q", got, want)
	}
}

// fakeTraceServer answers PATCH /jobs/1/trace like GitLab, keeping the log
// and, once, pretending to hold a different length.
type fakeTraceServer struct {
	mu       sync.Mutex
	log      []byte
	mismatch bool
	ranges   []string
}

func (f *fakeTraceServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	cr := r.Header.Get("Content-Range")
	f.ranges = append(f.ranges, cr)
	var start int
	fmt.Sscanf(cr, "%d-", &start)
	if f.mismatch || start != len(f.log) {
		f.mismatch = false
		w.Header().Set("Range", fmt.Sprintf("0-%d", len(f.log)))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	f.log = append(f.log, body...)
	w.Header().Set("Range", fmt.Sprintf("0-%d", len(f.log)))
	w.Header().Set("Job-Status", "running")
	w.Header().Set("X-GitLab-Trace-Update-Interval", "1")
	w.WriteHeader(http.StatusAccepted)
}

func TestMaskerMasksTokensByPrefix(t *testing.T) {
	m := newMasker(nil, []string{"glrt-"})
	var out []byte
	for _, chunk := range []string{"a glp", "at-abc", "DEF_1 b glrt-xyz\n", "glcbt-kept gl", "rt-", "end"} {
		out = append(out, m.write([]byte(chunk))...)
	}
	out = append(out, m.flush()...)
	if got, want := string(out), "a glpat-[MASKED] b glrt-[MASKED]\nglcbt-kept glrt-[MASKED]"; got != want {
		t.Errorf("masked %q, want %q", got, want)
	}
}

func TestTraceResyncsOn416(t *testing.T) {
	srv := &fakeTraceServer{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	rc := RunnerConfig{URL: hs.URL, Token: "glrt-test", OutputLimit: DefaultOutputLimitKB}
	job := &jobResponse{ID: 1, Token: "glcbt-job"}
	tr := newJobTrace(newNetwork(), rc, job, []string{"hunter2"}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	ctx := context.Background()

	tr.Printf("first part\n")
	if !tr.send(ctx) {
		t.Fatal("first send not complete")
	}
	// GitLab lost the first part: it answers 416 with Range 0-0, and the
	// next send starts over from there.
	srv.mu.Lock()
	srv.log, srv.mismatch = nil, true
	srv.mu.Unlock()
	tr.Printf("password hunter2\n")
	if tr.send(ctx) {
		t.Fatal("a 416 counted as sent")
	}
	full := tr.finish(ctx)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if string(srv.log) != string(full) || !strings.Contains(string(full), "first part\npassword [MASKED]\n") {
		t.Errorf("server log %q, runner log %q (ranges %v)", srv.log, full, srv.ranges)
	}
	if srv.ranges[0] != "0-10" || srv.ranges[len(srv.ranges)-1] != fmt.Sprintf("0-%d", len(full)-1) {
		t.Errorf("Content-Range sequence %v", srv.ranges)
	}
}

func TestOutputLimit(t *testing.T) {
	tr := newJobTrace(newNetwork(), RunnerConfig{OutputLimit: 1}, &jobResponse{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	tr.Write([]byte(strings.Repeat("x", 1000)))
	tr.Write([]byte(strings.Repeat("y", 1000)))
	tr.Write([]byte("z"))
	got := string(tr.buf)
	want := strings.Repeat("x", 1000) + strings.Repeat("y", 24) + "\nJob's log exceeded limit of 1024 bytes.\nJob execution will continue but no more output will be collected.\n"
	if got != want {
		t.Errorf("log of %d bytes ends %q", len(got), got[len(got)-120:])
	}
}

func TestBashQuote(t *testing.T) {
	for in, want := range map[string]string{
		`$ echo "it's"`: `$'$ echo "it\'s"'`,
		"a\\b\nc\x01":   `$'a\\b\nc\x01'`,
	} {
		if got := bashQuote(in); got != want {
			t.Errorf("bashQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
