package gitlab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// retryPolicy bounds retries of idempotent requests and of CreateRunner's
// reconciled attempts.
type retryPolicy struct {
	max     int
	minWait time.Duration
	maxWait time.Duration
}

func (p retryPolicy) validate() error {
	switch {
	case p.max < 0:
		return fmt.Errorf("retry max %d is negative", p.max)
	case p.minWait <= 0:
		return fmt.Errorf("retry minimum wait %s must be positive", p.minWait)
	case p.maxWait < p.minWait:
		return fmt.Errorf("retry maximum wait %s is below the minimum %s", p.maxWait, p.minWait)
	}
	return nil
}

// backoff has client-go's Backoff signature; it ignores the bounds
// retryablehttp passes in favour of the policy's own.
func (p retryPolicy) backoff(_, _ time.Duration, attempt int, resp *http.Response) time.Duration {
	return p.wait(attempt, resp, time.Now())
}

// wait is how long to wait before retry number attempt (from 0) after resp,
// which is nil after a transport error. A wait the server asked for comes
// first (Retry-After, else RateLimit-Reset), plus a little jitter so that
// many workers told the same reset time do not return at the same instant;
// without one, capped exponential backoff with jitter. Either way the wait
// stays within [minWait/2, maxWait].
func (p retryPolicy) wait(attempt int, resp *http.Response, now time.Time) time.Duration {
	if resp != nil {
		if d, ok := serverWait(resp.Header, now); ok {
			return p.asked(d)
		}
	}
	return p.exponential(attempt)
}

// waitAfter is wait for a call that failed with err, which may be an
// *APIError carrying the server's requested wait.
func (p retryPolicy) waitAfter(attempt int, err error) time.Duration {
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.RetryAfter > 0 {
		return p.asked(apiErr.RetryAfter)
	}
	return p.exponential(attempt)
}

// asked bounds a wait the server asked for and adds jitter of up to minWait.
func (p retryPolicy) asked(d time.Duration) time.Duration {
	d = max(d, p.minWait) + rand.N(p.minWait)
	return min(d, p.maxWait)
}

// exponential is capped exponential backoff with equal jitter.
func (p retryPolicy) exponential(attempt int) time.Duration {
	base := p.maxWait
	if attempt < 32 {
		if b := p.minWait << attempt; b > 0 && b < p.maxWait {
			base = b
		}
	}
	return base/2 + rand.N(base/2+1)
}

// serverWait reads how long the server asked the client to wait: Retry-After
// in seconds or as an HTTP date, else RateLimit-Reset. GitLab sends
// RateLimit-Reset as a Unix time; small values are read as seconds from now,
// as in the IETF RateLimit header draft other proxies follow.
func serverWait(h http.Header, now time.Time) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	if v := strings.TrimSpace(h.Get("RateLimit-Reset")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			if n < 1_000_000_000 {
				return time.Duration(n) * time.Second, true
			}
			return max(time.Unix(n, 0).Sub(now), 0), true
		}
	}
	return 0, false
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// outcomeUnknown reports whether a POST that failed with err may or may not
// have taken effect, so that it can only be repeated after looking: 5xx, 429
// and transport errors (an HTTP client timeout included), but not the
// caller's context ending (the caller gave up) or a 4xx (GitLab refused it).
func outcomeUnknown(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode == http.StatusTooManyRequests || apiErr.StatusCode >= 500
	}
	return true
}
