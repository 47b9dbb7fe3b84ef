// Package gitlab is Gosling's thin client for GitLab's REST API v4, built on
// client-go with exactly the calls Gosling makes: runners (create, find,
// pause, reset, delete, their jobs), group projects, project hooks and jobs.
//
// Two rules shape it. Idempotent requests (GET, PUT, DELETE) are retried on
// 429, 5xx and transport errors, honouring Retry-After and RateLimit-Reset.
// POST is never retried blindly: client-go's own retry is configured to leave
// it alone, and CreateRunner reconciles (looks for the runner by its unique
// description) before it ever sends a second create.
//
// Tokens never reach a log line or an error.
package gitlab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	retryablehttp "github.com/hashicorp/go-retryablehttp"
	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

// Retry defaults: five retries, first wait about half a second, no wait
// longer than a minute (GitLab's rate-limit windows are a minute long).
const (
	DefaultRetryMax     = 5
	DefaultRetryWaitMin = 500 * time.Millisecond
	DefaultRetryWaitMax = 60 * time.Second
)

// DefaultHTTPTimeout bounds one HTTP attempt when no client is given.
const DefaultHTTPTimeout = 30 * time.Second

// perPage is GitLab's maximum page size.
const perPage = 100

// Client talks to one GitLab instance with one token. It is safe for
// concurrent use.
type Client struct {
	api    *gl.Client
	runner *gl.Client // no user token: speaks as a runner agent does
	log    *slog.Logger
	retry  retryPolicy
}

// Option configures New.
type Option func(*config)

type config struct {
	httpClient *http.Client
	logger     *slog.Logger
	retry      retryPolicy
}

// WithHTTPClient sets the HTTP client (transport, TLS, per-attempt timeout).
// The default times out an attempt after DefaultHTTPTimeout.
func WithHTTPClient(c *http.Client) Option {
	return func(cfg *config) { cfg.httpClient = c }
}

// WithLogger sets where retries and reconciliations are reported. The
// default discards them.
func WithLogger(l *slog.Logger) Option {
	return func(cfg *config) { cfg.logger = l }
}

// WithRetry sets how often idempotent requests are retried (max, 0 for
// never) and the bounds of the wait between attempts. The first wait of the
// exponential backoff is about minWait; maxWait also caps waits the server
// asks for through Retry-After or RateLimit-Reset, so a server asking for
// longer is asked again sooner and may answer 429 again. CreateRunner uses
// the same budget for its reconciled attempts.
func WithRetry(max int, minWait, maxWait time.Duration) Option {
	return func(cfg *config) { cfg.retry = retryPolicy{max: max, minWait: minWait, maxWait: maxWait} }
}

// New returns a client for the instance at baseURL (https://gitlab.com, or
// http://127.0.0.1:PORT for a test server; /api/v4 is added) authenticating
// with a personal, group or project access token. Creating runners needs the
// create_runner scope; reconciling them needs the token's user to own them
// (Maintainer of the project, Owner of the group, administrator for instance
// runners).
func New(baseURL, token string, opts ...Option) (*Client, error) {
	if token == "" {
		return nil, errors.New("gitlab client: empty token")
	}
	return build(baseURL, token, opts...)
}

// NewRunnerClient returns a client without an API token, for the calls a
// runner makes with its own runner token (VerifyRunner).
func NewRunnerClient(baseURL string, opts ...Option) (*Client, error) {
	return build(baseURL, "", opts...)
}

func build(baseURL, token string, opts ...Option) (*Client, error) {
	cfg := config{retry: retryPolicy{max: DefaultRetryMax, minWait: DefaultRetryWaitMin, maxWait: DefaultRetryWaitMax}}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.retry.validate(); err != nil {
		return nil, fmt.Errorf("gitlab client: %w", err)
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gitlab client: base URL %q must be http(s)://host[:port][/path]", baseURL)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.httpClient == nil {
		cfg.httpClient = &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			Timeout:   DefaultHTTPTimeout,
		}
	}
	c := &Client{log: cfg.logger, retry: cfg.retry}
	common := []gl.ClientOptionFunc{
		// Before WithBaseURL, so URL warnings go to our logger, not slog's default.
		gl.WithURLWarningLogger(cfg.logger),
		gl.WithBaseURL(baseURL),
		gl.WithHTTPClient(cfg.httpClient),
		gl.WithCustomRetryMax(cfg.retry.max),
		gl.WithCustomBackoff(c.retry.backoff),
		// Every call sets its own policy (see opts); this one only guards a
		// request that somehow does not, and never retries a POST.
		gl.WithCustomRetry(retryPolicyFor("")),
		gl.WithUserAgent("gosling"),
	}
	if c.api, err = gl.NewClient(token, common...); err != nil {
		return nil, fmt.Errorf("gitlab client: %w", err)
	}
	if c.runner, err = gl.NewAuthSourceClient(gl.Unauthenticated{}, common...); err != nil {
		return nil, fmt.Errorf("gitlab client: %w", err)
	}
	return c, nil
}

// opts are the request options of one call: its context and the retry
// policy its method allows.
func (c *Client) opts(ctx context.Context, method string) []gl.RequestOptionFunc {
	return []gl.RequestOptionFunc{gl.WithContext(ctx), gl.WithRequestRetry(c.logRetries(retryPolicyFor(method), method))}
}

// logRetries reports each retry client-go is about to make.
func (c *Client) logRetries(policy retryablehttp.CheckRetry, method string) retryablehttp.CheckRetry {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		retry, checkErr := policy(ctx, resp, err)
		if retry {
			attrs := []any{"method", method}
			if resp != nil {
				attrs = append(attrs, "path", apiPath(resp.Request), "status", resp.StatusCode)
			}
			if err != nil {
				attrs = append(attrs, "error", err)
			}
			c.log.InfoContext(ctx, "gitlab: retrying request", attrs...)
		}
		return retry, checkErr
	}
}

// retryPolicyFor returns client-go's retry check for method: retryablehttp's
// default policy (429, 5xx except 501, transport errors) for idempotent
// methods, nothing for the rest. client-go's own default would retry POST on
// 429 and 5xx, which can create a runner twice.
func retryPolicyFor(method string) retryablehttp.CheckRetry {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		m := method
		if m == "" && resp != nil && resp.Request != nil {
			m = resp.Request.Method
		}
		switch m {
		case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
			return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
		}
		return false, nil
	}
}

// apiPath is a request's path below /api/v4, for logs and errors.
func apiPath(r *http.Request) string {
	if r == nil || r.URL == nil {
		return ""
	}
	p := r.URL.EscapedPath()
	if _, rest, ok := strings.Cut(p, "/api/v4/"); ok {
		return "/" + rest
	}
	return p
}

// collect gathers every page of a list, following X-Next-Page rather than
// X-Total-Pages, which GitLab drops past 10,000 records.
func collect[T any](fetch func(page int64) ([]T, *gl.Response, error)) ([]T, error) {
	var out []T
	for page := int64(1); ; {
		items, resp, err := fetch(page)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if resp == nil || resp.NextPage == 0 {
			return out, nil
		}
		if resp.NextPage <= page {
			return nil, fmt.Errorf("pagination went from page %d back to %d", page, resp.NextPage)
		}
		page = resp.NextPage
	}
}
