package mothergoose

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"go.temporal.io/api/serviceerror"
)

// Kind classifies an Error for the callers that answer it (the API maps
// each to one HTTP status in one place).
type Kind string

// Error kinds.
const (
	// KindInvalid: the request or event is malformed (HTTP 400).
	KindInvalid Kind = "invalid"
	// KindUnauthorized: a token is missing or wrong (401).
	KindUnauthorized Kind = "unauthorized"
	// KindNotFound: what the request names does not exist (404).
	KindNotFound Kind = "not-found"
	// KindConflict: the request does not fit the current state (409).
	KindConflict Kind = "conflict"
	// KindRefused: a workflow's validator refused the request (422).
	KindRefused Kind = "refused"
	// KindUnavailable: a dependency (store, Temporal, secret backend,
	// GitLab) cannot be reached; the caller may retry (503).
	KindUnavailable Kind = "unavailable"
)

// Error is an error of MotherGoose with its kind, a short message, a detail
// that tells the caller what to do, and, for webhooks, the result label of
// the gosling_webhooks_total metric.
type Error struct {
	Kind   Kind
	Msg    string
	Detail string
	Result string
	Err    error
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(kind Kind, msg, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: msg, Detail: fmt.Sprintf(format, args...)}
}

// unavailable wraps the failure of a dependency.
func unavailable(msg, detail string, err error) *Error {
	return &Error{Kind: KindUnavailable, Msg: msg, Detail: detail, Result: "unavailable", Err: err}
}

// errNoTemporal is the error of a call made without a Temporal client.
var errNoTemporal = serviceerror.NewUnavailable("no Temporal client is configured")

// Unreachable tells whether a Temporal call failed because Temporal could
// not be reached (or answered too late) rather than because it refused.
func Unreachable(err error) bool {
	var (
		unavailable *serviceerror.Unavailable
		deadline    *serviceerror.DeadlineExceeded
		exhausted   *serviceerror.ResourceExhausted
		canceled    *serviceerror.Canceled
	)
	return errors.As(err, &unavailable) || errors.As(err, &deadline) || errors.As(err, &exhausted) ||
		errors.As(err, &canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, syscall.ECONNREFUSED)
}
