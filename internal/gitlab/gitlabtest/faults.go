package gitlabtest

import (
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DropConnection, given to FailNext as the status, closes the connection
// without an answer: the client sees a transport error, as on a timeout or a
// proxy that gave up.
const DropConnection = 0

// RateLimitHeaders chooses the headers of an injected 429. The zero value
// sends none of them, as GitLab.com has been seen to do.
type RateLimitHeaders struct {
	// RetryAfter is sent verbatim as Retry-After: a number of seconds ("2")
	// or an HTTP date.
	RetryAfter string
	// Reset, when set, is sent as RateLimit-Reset (Unix seconds) and
	// RateLimit-ResetTime (HTTP date).
	Reset time.Time
	// Limit, when positive, is sent as RateLimit-Limit, with
	// RateLimit-Observed one above it and RateLimit-Remaining 0. client-go
	// sizes its own client-side limiter from the first RateLimit-Limit it
	// sees, so a small Limit slows every later request of that client.
	Limit int
}

// fault is one armed injection.
type fault struct {
	method      string
	pattern     string
	status      int
	times       int
	afterEffect bool
	rateLimit   bool
	headers     RateLimitHeaders
}

// FailNext makes the next times requests matching method and pathPattern
// answer status with a GitLab-style JSON error body (status DropConnection
// closes the connection instead). With afterEffect the request is carried
// out first and only its answer is replaced, which simulates a response lost
// on the way back: the runner exists, the client does not know it.
//
// method "" or "*" matches any method. pathPattern is matched with path.Match
// against the request's escaped path, with or without the /api/v4 prefix:
// "/user/runners", "/runners/*", "/projects/*/hooks".
func (s *Server) FailNext(method, pathPattern string, status, times int, afterEffect bool) {
	s.arm(&fault{method: method, pattern: pathPattern, status: status, times: times, afterEffect: afterEffect})
}

// RateLimitNext makes the next times requests matching method and
// pathPattern (as in FailNext) answer 429 with GitLab's "Retry later" body
// and the given headers. The requests have no effect.
func (s *Server) RateLimitNext(method, pathPattern string, times int, headers RateLimitHeaders) {
	s.arm(&fault{method: method, pattern: pathPattern, status: http.StatusTooManyRequests, times: times, rateLimit: true, headers: headers})
}

func (s *Server) arm(f *fault) {
	if f.times <= 0 {
		return
	}
	if _, err := path.Match(trimAPIPrefix(f.pattern), ""); err != nil {
		panic("gitlabtest: bad path pattern " + strconv.Quote(f.pattern) + ": " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// takeFault consumes one use of the first armed fault matching r.
func (s *Server) takeFault(r *http.Request) *fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if !matches(f.method, f.pattern, r.Method, r.URL.EscapedPath()) {
			continue
		}
		f.times--
		if f.times == 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		return f
	}
	return nil
}

func matches(method, pattern, reqMethod, reqPath string) bool {
	if method != "" && method != "*" && !strings.EqualFold(method, reqMethod) {
		return false
	}
	ok, _ := path.Match(trimAPIPrefix(pattern), trimAPIPrefix(reqPath))
	return ok
}

func trimAPIPrefix(p string) string {
	if rest, ok := strings.CutPrefix(p, apiPrefix); ok && (rest == "" || rest[0] == '/') {
		return rest
	}
	return p
}

// RequestRecord is one request the server answered.
type RequestRecord struct {
	Method string
	Path   string // escaped path as sent, /api/v4 included
	Query  string // raw query
	Status int    // 0 when the connection was dropped
}

// Requests returns every request answered so far, in the order they ended.
func (s *Server) Requests() []RequestRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// CountRequests counts answered requests matching method and pathPattern
// (as in FailNext).
func (s *Server) CountRequests(method, pathPattern string) int {
	n := 0
	for _, rec := range s.Requests() {
		if matches(method, pathPattern, rec.Method, rec.Path) {
			n++
		}
	}
	return n
}

// serve applies injected faults around the API and records the outcome.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if sw := (&statusWriter{ResponseWriter: w}); s.serveGit(sw, r) {
		s.record(r, sw.code())
		return
	}
	if status := s.serveWithFaults(w, r); status != recorded {
		s.record(r, status)
	}
}

// recorded is what serveWithFaults returns when it recorded the request
// itself.
const recorded = -1

func (s *Server) record(r *http.Request, status int) {
	s.mu.Lock()
	s.requests = append(s.requests, RequestRecord{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Status: status})
	s.mu.Unlock()
}

func (s *Server) serveWithFaults(w http.ResponseWriter, r *http.Request) int {
	f := s.takeFault(r)
	switch {
	case f == nil:
		sw := &statusWriter{ResponseWriter: w}
		s.mux.ServeHTTP(sw, r)
		return sw.code()
	case f.rateLimit:
		writeRateLimited(w, f.headers)
		return http.StatusTooManyRequests
	}
	if f.afterEffect {
		s.mux.ServeHTTP(httptest.NewRecorder(), r)
	}
	if f.status == DropConnection {
		// Recorded first: the client sees the drop at once and may look.
		s.record(r, DropConnection)
		dropConnection(w)
		return recorded
	}
	writeMessage(w, f.status, strconv.Itoa(f.status)+" "+http.StatusText(f.status))
	return f.status
}

// writeRateLimited answers like GitLab's Rack::Attack throttle.
func writeRateLimited(w http.ResponseWriter, h RateLimitHeaders) {
	hdr := w.Header()
	if h.Limit > 0 {
		hdr.Set("RateLimit-Name", "throttle_authenticated_api")
		hdr.Set("RateLimit-Limit", strconv.Itoa(h.Limit))
		hdr.Set("RateLimit-Observed", strconv.Itoa(h.Limit+1))
		hdr.Set("RateLimit-Remaining", "0")
	}
	if !h.Reset.IsZero() {
		hdr.Set("RateLimit-Reset", strconv.FormatInt(h.Reset.Unix(), 10))
		hdr.Set("RateLimit-ResetTime", h.Reset.UTC().Format(http.TimeFormat))
	}
	if h.RetryAfter != "" {
		hdr.Set("Retry-After", h.RetryAfter)
	}
	hdr.Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte("Retry later\n"))
}

func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streaming answers (Git's packs) through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// ClearFaults disarms every injected fault, dropped deliveries included.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	s.dropDeliveries = 0
}

// DropNextDeliveries makes the next times webhooks the server would send
// vanish unsent, as GitLab drops deliveries past a plan's web_hook_calls
// limit and only logs it. Deliveries records them as Dropped.
func (s *Server) DropNextDeliveries(times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropDeliveries += max(times, 0)
}
