package gitlab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

// APIError is an answer from GitLab with an error status. It never carries a
// token: paths hold IDs only and GitLab's error bodies do not echo secrets.
type APIError struct {
	StatusCode int
	Method     string
	Path       string // below /api/v4, such as /runners/42
	Message    string // GitLab's message or error, or the status text
	// RetryAfter is the wait the server asked for (Retry-After or
	// RateLimit-Reset), 0 if none; useful to schedule a retry of a request
	// this client did not retry itself, such as a POST.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	return fmt.Sprintf("gitlab: %s %s: %d %s", e.Method, e.Path, e.StatusCode, e.Message)
}

// Errors to test with errors.Is.
var (
	// ErrInvalidRunnerToken: GitLab refused a runner authentication token
	// (403 from POST /runners/verify). The *APIError is wrapped too.
	ErrInvalidRunnerToken = errors.New("runner token rejected")
	// ErrAmbiguousDescription: several runners carry a description that
	// Gosling promises is unique, so reconciliation cannot choose.
	ErrAmbiguousDescription = errors.New("runner description is not unique")
)

// IsNotFound reports whether err is a 404 from GitLab.
func IsNotFound(err error) bool { return hasStatus(err, http.StatusNotFound) }

// IsForbidden reports whether err is a 403 from GitLab.
func IsForbidden(err error) bool { return hasStatus(err, http.StatusForbidden) }

// IsRateLimited reports whether err is a 429 from GitLab (after any retries).
func IsRateLimited(err error) bool { return hasStatus(err, http.StatusTooManyRequests) }

func hasStatus(err error, status int) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.StatusCode == status
}

// fail turns what client-go returned for a call into an *APIError for an
// answer from GitLab, or a transport error wrapped with the call.
func fail(method, path string, resp *gl.Response, err error) error {
	var er *gl.ErrorResponse
	if !errors.As(err, &er) {
		return fmt.Errorf("gitlab: %s %s: %w", method, path, err)
	}
	apiErr := &APIError{StatusCode: er.StatusCode, Method: method, Path: path, Message: errorMessage(er.Body)}
	if resp != nil && resp.Response != nil {
		// client-go answers every 404 with one shared value without a body.
		apiErr.StatusCode = resp.StatusCode
		if d, ok := serverWait(resp.Header, time.Now()); ok {
			apiErr.RetryAfter = d
		}
	}
	if apiErr.Message == "" {
		apiErr.Message = http.StatusText(apiErr.StatusCode)
	}
	return apiErr
}

// errorMessage reads GitLab's error bodies: {"message": "..."}, {"message":
// {"field": ["..."]}} from model validation, {"error": "..."} from parameter
// validation and OAuth. Short plain-text bodies ("Retry later") are kept;
// HTML pages from proxies are not.
func errorMessage(body []byte) string {
	text := strings.TrimSpace(string(body))
	if text == "" {
		return ""
	}
	var doc struct {
		Message          json.RawMessage `json:"message"`
		Error            json.RawMessage `json:"error"`
		ErrorDescription string          `json:"error_description"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		if len(text) <= 200 && !strings.HasPrefix(text, "<") {
			return text
		}
		return ""
	}
	msg := flatten(doc.Message)
	if msg == "" {
		msg = flatten(doc.Error)
	}
	if doc.ErrorDescription != "" {
		msg = strings.TrimSpace(msg + ": " + doc.ErrorDescription)
	}
	return msg
}

// flatten renders a message that may be a string, a list or an object of
// field errors as one line.
func flatten(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		parts := make([]string, 0, len(list))
		for _, e := range list {
			parts = append(parts, flatten(e))
		}
		return strings.Join(parts, ", ")
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) == nil {
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+" "+flatten(fields[k]))
		}
		return strings.Join(parts, "; ")
	}
	return string(raw)
}
