package runnerstandin

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"
)

// Masked replaces a masked variable's value in a job log, as gitlab-runner
// writes it.
const Masked = "[MASKED]"

// masker replaces secret values in a stream, and the body of any token
// that starts with one of GitLab's token prefixes (glpat-[MASKED]), holding
// back the tail that could be the start of either so a value split across
// writes is still caught.
type masker struct {
	secrets  [][]byte // longest first
	prefixes [][]byte
	pending  []byte
}

// defaultTokenPrefixes are masked even when GitLab names none, as
// gitlab-runner always masks personal access tokens.
var defaultTokenPrefixes = []string{"glpat-"}

// tokenChar is the alphabet of a token's body after its prefix.
func tokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '='
}

func newMasker(values, prefixes []string) *masker {
	m := &masker{}
	seen := map[string]bool{}
	for _, v := range values {
		if v != "" && !seen[v] {
			seen[v] = true
			m.secrets = append(m.secrets, []byte(v))
		}
	}
	sort.Slice(m.secrets, func(i, j int) bool { return len(m.secrets[i]) > len(m.secrets[j]) })
	for _, p := range append(slices.Clone(defaultTokenPrefixes), prefixes...) {
		if p != "" && !seen["prefix:"+p] {
			seen["prefix:"+p] = true
			m.prefixes = append(m.prefixes, []byte(p))
		}
	}
	return m
}

// write takes the next bytes and returns what can be shown now.
func (m *masker) write(p []byte) []byte {
	m.pending = append(m.pending, p...)
	return m.emit(false)
}

// flush returns what was held back, masked.
func (m *masker) flush() []byte {
	return m.emit(true)
}

func (m *masker) emit(final bool) []byte {
	for _, s := range m.secrets {
		m.pending = bytes.ReplaceAll(m.pending, s, []byte(Masked))
	}
	buf := m.pending
	hold := len(buf)
	if !final {
		// The longest tail that may begin a secret or a token prefix.
		keep := 0
		for _, s := range append(slices.Clone(m.secrets), m.prefixes...) {
			for n := min(len(s)-1, len(buf)); n > keep; n-- {
				if bytes.HasSuffix(buf, s[:n]) {
					keep = n
					break
				}
			}
		}
		hold = len(buf) - keep
	}
	var out []byte
	last := 0
	for i := 0; i < hold; {
		plen := 0
		for _, p := range m.prefixes {
			if bytes.HasPrefix(buf[i:], p) {
				plen = len(p)
				break
			}
		}
		if plen == 0 {
			i++
			continue
		}
		j := i + plen
		for j < len(buf) && tokenChar(buf[j]) {
			j++
		}
		if j == len(buf) && !final {
			// The token may go on in the next write.
			hold = i
			break
		}
		if j > i+plen {
			out = append(out, buf[last:i+plen]...)
			out = append(out, Masked...)
			last = j
		}
		i = j
	}
	hold = max(hold, last)
	out = append(out, buf[last:hold]...)
	m.pending = bytes.Clone(buf[hold:])
	return out
}

// jobTrace is a job's log: masked, capped at the output limit, and sent to
// GitLab with PATCH /jobs/:id/trace from the offset GitLab acknowledged.
type jobTrace struct {
	net *network
	rc  RunnerConfig
	job *jobResponse
	log *slog.Logger

	mu        sync.Mutex
	masker    *masker
	buf       []byte
	sent      int
	limit     int
	truncated bool
	interval  time.Duration
	lastSent  time.Time
	// onCancel is called once when GitLab says the job is no longer
	// running (canceled, failed by someone else, erased).
	onCancel   func(jobStatus string)
	cancelSeen bool
}

// defaultTraceInterval is gitlab-runner's update interval until GitLab
// names another one.
const defaultTraceInterval = 3 * time.Second

// With nothing to send for an update interval, PUT state running tells
// GitLab the job still runs and learns of a cancel from its 403. (Real
// gitlab-runner touches the job less often; the stand-in favours seeing a
// cancel within seconds on a development machine.)

func newJobTrace(n *network, rc RunnerConfig, job *jobResponse, masked []string, log *slog.Logger, onCancel func(string)) *jobTrace {
	return &jobTrace{
		net: n, rc: rc, job: job, log: log, masker: newMasker(masked, job.Features.TokenMaskPrefixes),
		limit: rc.OutputLimit * 1024, interval: defaultTraceInterval, onCancel: onCancel, lastSent: time.Now(),
	}
}

// Write adds output to the log; it never fails, as a lost log line must not
// fail the job.
func (t *jobTrace) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.append(t.masker.write(p))
	return len(p), nil
}

// Printf writes a line of the runner's own.
func (t *jobTrace) Printf(format string, args ...any) {
	_, _ = t.Write(fmt.Appendf(nil, format, args...))
}

func (t *jobTrace) append(b []byte) {
	if t.truncated {
		return
	}
	if t.limit > 0 && len(t.buf)+len(b) > t.limit {
		b = b[:max(0, t.limit-len(t.buf))]
		t.buf = append(t.buf, b...)
		t.buf = fmt.Appendf(t.buf, "\nJob's log exceeded limit of %d bytes.\nJob execution will continue but no more output will be collected.\n", t.limit)
		t.truncated = true
		return
	}
	t.buf = append(t.buf, b...)
}

// run sends the log every interval until ctx ends. A patch under way when
// ctx ends is let finish (within 30 s): cut short, GitLab may have
// appended it while the runner never learned, and the final send would
// start from the wrong offset.
func (t *jobTrace) run(ctx context.Context) {
	for {
		t.mu.Lock()
		wait := t.interval
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		t.send(rctx)
		t.mu.Lock()
		idle := time.Since(t.lastSent) >= t.interval
		t.mu.Unlock()
		if idle {
			t.keepAlive(rctx)
		}
		cancel()
	}
}

// send patches what GitLab has not got yet; true when it has it all.
func (t *jobTrace) send(ctx context.Context) bool {
	t.mu.Lock()
	offset := t.sent
	data := bytes.Clone(t.buf[t.sent:])
	t.mu.Unlock()
	if len(data) == 0 {
		return true
	}
	res, err := t.net.patchTrace(ctx, t.rc, t.job, offset, data)
	if err != nil {
		t.log.Warn("Appending trace to coordinator... error", "job", t.job.ID, "error", err)
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if res.interval > 0 {
		t.interval = res.interval
	}
	switch {
	case res.status == http.StatusAccepted:
		t.sent = offset + len(data)
		t.lastSent = time.Now()
		return t.sent == len(t.buf)
	case res.status == http.StatusRequestedRangeNotSatisfiable && res.remoteSize >= 0:
		// GitLab holds another length: resend from there.
		t.log.Warn("Appending trace to coordinator... range mismatch", "job", t.job.ID, "sent-log", fmt.Sprintf("%d-%d", offset, offset+len(data)-1), "job-log", fmt.Sprintf("0-%d", res.remoteSize))
		t.sent = min(res.remoteSize, len(t.buf))
		return false
	case res.status == http.StatusForbidden:
		t.canceled(res.jobStatus)
		return true
	}
	t.log.Warn("Appending trace to coordinator... failed", "job", t.job.ID, "code", res.status)
	return false
}

// keepAlive is PUT state running, which also tells of a cancel.
func (t *jobTrace) keepAlive(ctx context.Context) {
	res, err := t.net.updateJob(ctx, t.rc, t.job, "running", "", 0, nil)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastSent = time.Now()
	if res.status == http.StatusForbidden {
		t.canceled(res.jobStatus)
	}
}

// canceled is called with t.mu held.
func (t *jobTrace) canceled(jobStatus string) {
	if t.cancelSeen {
		return
	}
	t.cancelSeen = true
	if t.onCancel != nil {
		go t.onCancel(jobStatus)
	}
}

// finish flushes the masker and sends the rest of the log, retrying a few
// times; it returns the whole log.
func (t *jobTrace) finish(ctx context.Context) []byte {
	t.mu.Lock()
	t.append(t.masker.flush())
	t.mu.Unlock()
	for attempt := 0; attempt < 10 && !t.send(ctx); attempt++ {
		select {
		case <-ctx.Done():
			attempt = 10
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf)
}

func crc32Hex(b []byte) string {
	return fmt.Sprintf("%08x", crc32.ChecksumIEEE(b))
}
