package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/mothergoose"
)

// errorBody is every error answer: {"error": "...", "detail": "..."}.
type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

// apiError is an error with its answer.
type apiError struct {
	Status int
	Msg    string
	Detail string
	// Result is the webhook metrics label; empty outside webhooks.
	Result string
	Err    error
}

func (e *apiError) Error() string {
	s := e.Msg
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *apiError) Unwrap() error { return e.Err }

// toAPIError maps an error to its answer. It is the one place errors become
// status codes; what it does not know is a 500 whose detail is not shown
// (it may name internals) but logged.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var me *mothergoose.Error
	if errors.As(err, &me) {
		return &apiError{Status: kindStatus[me.Kind], Msg: me.Msg, Detail: me.Detail, Result: me.Result, Err: me.Err}
	}
	var pe *PayloadError
	switch {
	case errors.Is(err, ErrUnauthorized):
		return &apiError{Status: http.StatusUnauthorized, Msg: "unauthorized", Detail: err.Error(), Result: "unauthorized"}
	case errors.Is(err, ErrAPIDisabled):
		return &apiError{Status: http.StatusServiceUnavailable, Msg: "api disabled", Detail: "no API tokens are configured (mothergoose.api_gateway.auth.tokens)"}
	case errors.Is(err, ErrUnknownEvent):
		return &apiError{Status: http.StatusUnprocessableEntity, Msg: "unknown event", Detail: err.Error(), Result: "bad_event"}
	case errors.As(err, &pe):
		return &apiError{Status: http.StatusBadRequest, Msg: "bad payload", Detail: pe.Error(), Result: "bad_request"}
	case errors.Is(err, store.ErrNotFound):
		return &apiError{Status: http.StatusNotFound, Msg: "not found", Detail: err.Error()}
	case errors.Is(err, store.ErrIllegalTransition), errors.Is(err, store.ErrConflict):
		return &apiError{Status: http.StatusConflict, Msg: "conflict", Detail: err.Error()}
	case isSecretsError(err):
		return &apiError{Status: http.StatusServiceUnavailable, Msg: "secrets unavailable", Detail: "a secret could not be resolved; see the server log", Result: "unavailable", Err: err}
	case mothergoose.Unreachable(err):
		return &apiError{Status: http.StatusServiceUnavailable, Msg: "temporal unavailable", Detail: "Temporal did not answer in time; retry later", Result: "unavailable", Err: err}
	}
	var gle *gitlab.APIError
	if errors.As(err, &gle) {
		return &apiError{Status: http.StatusBadGateway, Msg: "gitlab error", Detail: gle.Error(), Err: err}
	}
	return &apiError{Status: http.StatusInternalServerError, Msg: "internal error", Detail: "see the server log", Result: "error", Err: err}
}

// kindStatus is the HTTP status of each kind of MotherGoose error.
var kindStatus = map[mothergoose.Kind]int{
	mothergoose.KindInvalid:      http.StatusBadRequest,
	mothergoose.KindUnauthorized: http.StatusUnauthorized,
	mothergoose.KindNotFound:     http.StatusNotFound,
	mothergoose.KindConflict:     http.StatusConflict,
	mothergoose.KindRefused:      http.StatusUnprocessableEntity,
	mothergoose.KindUnavailable:  http.StatusServiceUnavailable,
}

// fail answers err and stops the handler chain. Server-side failures are
// logged with their cause.
func (s *Server) fail(c *gin.Context, err error) {
	ae := toAPIError(err)
	if ae.Status >= 500 {
		s.log.ErrorContext(c.Request.Context(), "request failed", "route", c.FullPath(), "status", ae.Status, "error", err)
	}
	if ae.Status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="gosling"`)
	}
	c.AbortWithStatusJSON(ae.Status, errorBody{Error: ae.Msg, Detail: ae.Detail})
}

func isSecretsError(err error) bool {
	var se *secretstore.Error
	return errors.As(err, &se) || errors.Is(err, errSecretsUnavailable)
}
