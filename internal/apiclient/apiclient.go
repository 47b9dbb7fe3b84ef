// Package apiclient is a small typed client for MotherGoose's REST API
// (/api/v1), used by the gosling CLI. Errors from the API are *Error values
// carrying its {"error", "detail"} body and the status code.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/workflows/contract"

	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/gosling-ci/gosling/internal/store"
)

// DefaultTimeout bounds one request when no HTTP client is given.
const DefaultTimeout = 30 * time.Second

// Client talks to one API server with one bearer token. It is safe for
// concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// Option configures New.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (transport, TLS, timeout).
func WithHTTPClient(c *http.Client) Option { return func(cl *Client) { cl.http = c } }

// New returns a client of the API at baseURL (such as
// http://localhost:8080). An empty token sends no Authorization header, and
// the API answers 401.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api client: base URL %q must be http(s)://host[:port]", baseURL)
	}
	c := &Client{base: u, token: token, http: &http.Client{Timeout: DefaultTimeout}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Error is an error answer of the API.
type Error struct {
	StatusCode int    `json:"-"`
	Message    string `json:"error"`
	Detail     string `json:"detail,omitempty"`
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return fmt.Sprintf("api: %d %s", e.StatusCode, msg)
}

// IsAuth reports whether err is the API refusing the token (401 or 403).
func IsAuth(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden)
}

// IsNotFound reports whether err is a 404 from the API.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}

// do sends a request and decodes a 2xx answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, out any) error {
	return c.send(ctx, method, path, query, nil, out)
}

// send is do with a JSON body (none when in is nil).
func (c *Client) send(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var reqBody io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reqBody)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL holds no secret; the error names it so a wrong --api is
		// easy to see.
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("api: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := &Error{StatusCode: resp.StatusCode}
		if json.Unmarshal(body, apiErr) != nil || apiErr.Message == "" {
			apiErr.Message = http.StatusText(resp.StatusCode)
			if text := strings.TrimSpace(string(body)); text != "" && len(text) <= 200 && !strings.HasPrefix(text, "<") {
				apiErr.Detail = text
			}
		}
		return apiErr
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(out); err != nil {
		return fmt.Errorf("api: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// RunnerFilter selects runners; zero fields match everything.
type RunnerFilter struct {
	Egg   string
	State string // one state or several, comma-separated
	Cloud string
	// Limit is the page size (the API's default when 0, at most 500);
	// After the Next of the previous page.
	Limit int
	After string
}

// RunnerPage is one page of runners.
type RunnerPage struct {
	Runners []apiv1.Runner `json:"runners"`
	Next    string         `json:"next"`
}

func setIf(q url.Values, key, value string) {
	if value != "" {
		q.Set(key, value)
	}
}

func setLimit(q url.Values, limit int) {
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
}

// ListRunners lists one page of runners, ordered by ID.
func (c *Client) ListRunners(ctx context.Context, f RunnerFilter) (*RunnerPage, error) {
	q := url.Values{}
	setIf(q, "egg", f.Egg)
	setIf(q, "state", f.State)
	setIf(q, "cloud", f.Cloud)
	setIf(q, "after", f.After)
	setLimit(q, f.Limit)
	var out RunnerPage
	if err := c.do(ctx, http.MethodGet, "/api/v1/runners", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetRunner reads one runner.
func (c *Client) GetRunner(ctx context.Context, id string) (*apiv1.Runner, error) {
	var out apiv1.Runner
	if err := c.do(ctx, http.MethodGet, "/api/v1/runners/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DrainRunner pauses a runner in GitLab and moves it to draining; it
// returns the runner as it is now.
func (c *Client) DrainRunner(ctx context.Context, id string) (*apiv1.Runner, error) {
	var out apiv1.Runner
	if err := c.do(ctx, http.MethodPost, "/api/v1/runners/"+url.PathEscape(id)+"/drain", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteRunner starts the runner's teardown and returns the ID of the
// workflow doing it.
func (c *Client) DeleteRunner(ctx context.Context, id string) (string, error) {
	var out struct {
		WorkflowID string `json:"workflow_id"`
	}
	if err := c.do(ctx, http.MethodDelete, "/api/v1/runners/"+url.PathEscape(id), nil, &out); err != nil {
		return "", err
	}
	return out.WorkflowID, nil
}

// JobFilter selects job history, newest first.
type JobFilter struct {
	Egg    string
	Status string
	// Limit is the page size; Before the Next of the previous page.
	Limit  int
	Before string
}

// JobPage is one page of job history.
type JobPage struct {
	Jobs []apiv1.Job `json:"jobs"`
	Next string      `json:"next"`
}

// ListJobs lists one page of job history.
func (c *Client) ListJobs(ctx context.Context, f JobFilter) (*JobPage, error) {
	q := url.Values{}
	setIf(q, "egg", f.Egg)
	setIf(q, "status", f.Status)
	setIf(q, "before", f.Before)
	setLimit(q, f.Limit)
	var out JobPage
	if err := c.do(ctx, http.MethodGet, "/api/v1/jobs", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AuditFilter selects audit records, oldest first.
type AuditFilter struct {
	Egg    string
	Runner string
	Since  time.Time
	Limit  int
	After  string
}

// AuditPage is one page of the audit log.
type AuditPage struct {
	Audit []apiv1.AuditRecord `json:"audit"`
	Next  string              `json:"next"`
}

// ListAudit lists one page of the audit log.
func (c *Client) ListAudit(ctx context.Context, f AuditFilter) (*AuditPage, error) {
	q := url.Values{}
	setIf(q, "egg", f.Egg)
	setIf(q, "runner", f.Runner)
	setIf(q, "after", f.After)
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	setLimit(q, f.Limit)
	var out AuditPage
	if err := c.do(ctx, http.MethodGet, "/api/v1/audit", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Egg is an egg as the API shows it.
type Egg struct {
	Name          string                    `json:"name"`
	Kind          string                    `json:"kind"`
	ConfigVersion string                    `json:"config_version"`
	GitLabHost    string                    `json:"gitlab_host"`
	Runners       map[store.RunnerState]int `json:"runners"`
	// Raw is the whole answer, for fields this struct leaves out.
	Raw json.RawMessage `json:"-"`
}

// ListEggs lists the eggs of the server's current Nest.
func (c *Client) ListEggs(ctx context.Context) ([]Egg, error) {
	var out struct {
		Eggs []json.RawMessage `json:"eggs"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/eggs", nil, &out); err != nil {
		return nil, err
	}
	eggs := make([]Egg, 0, len(out.Eggs))
	for _, raw := range out.Eggs {
		var e Egg
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("api: decode egg: %w", err)
		}
		e.Raw = raw
		eggs = append(eggs, e)
	}
	return eggs, nil
}

// GetPool returns the status of an egg's pool, with its hit rate and
// what its idle runners cost.
func (c *Client) GetPool(ctx context.Context, egg string) (*apiv1.Pool, error) {
	var out apiv1.Pool
	if err := c.do(ctx, http.MethodGet, "/api/v1/pools/"+url.PathEscape(egg), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Cost returns the chargeback table of the jobs that finished since a
// time, by egg or by project (by: "egg" or "project").
func (c *Client) Cost(ctx context.Context, since time.Time, by string) (*apiv1.CostReport, error) {
	q := url.Values{}
	q.Set("since", since.UTC().Format(time.RFC3339))
	setIf(q, "by", by)
	var out apiv1.CostReport
	if err := c.do(ctx, http.MethodGet, "/api/v1/cost", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetGate returns the status of a serverless egg's gate: its running and
// waiting jobs, and the jobs no runner of the egg will take.
func (c *Client) GetGate(ctx context.Context, egg string) (*contract.GateStatus, error) {
	var out contract.GateStatus
	if err := c.do(ctx, http.MethodGet, "/api/v1/gates/"+url.PathEscape(egg), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ScalePool sets temporary limits on an egg's pool (and resumes a drained
// one); it returns the limits now in force.
func (c *Client) ScalePool(ctx context.Context, egg string, s contract.PoolScale) (*contract.PoolLimits, error) {
	var out struct {
		Result contract.PoolLimits `json:"result"`
	}
	if err := c.send(ctx, http.MethodPost, "/api/v1/pools/"+url.PathEscape(egg)+"/scale", nil, s, &out); err != nil {
		return nil, err
	}
	return &out.Result, nil
}

// DrainPool retires every runner of an egg's pool; it returns how many.
func (c *Client) DrainPool(ctx context.Context, egg string) (int, error) {
	var out struct {
		Result int `json:"result"`
	}
	if err := c.send(ctx, http.MethodPost, "/api/v1/pools/"+url.PathEscape(egg)+"/drain", nil, struct{}{}, &out); err != nil {
		return 0, err
	}
	return out.Result, nil
}
