package api

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/mothergoose"
)

// DefaultMaxWebhookBody is the largest webhook body read when
// Config.MaxWebhookBody is 0: 1 MiB. GitLab may send up to 25 MB, but the
// hooks Gosling acts on (job, push, merge request, project events) are a
// few KiB, and a pipeline hook grows by well under 1 KiB per job.
const DefaultMaxWebhookBody = 1 << 20

// HookResponse is the answer to an accepted delivery.
type HookResponse = mothergoose.Result

// Webhook answer statuses (HookResponse.Status).
const (
	StatusAccepted  = mothergoose.StatusAccepted
	StatusQueued    = mothergoose.StatusQueued
	StatusDuplicate = mothergoose.StatusDuplicate
	StatusIgnored   = mothergoose.StatusIgnored
)

func (s *Server) webhook(c *gin.Context) {
	event := c.GetHeader("X-Gitlab-Event")
	resp, err := s.handleWebhook(c)
	if err != nil {
		ae := toAPIError(err)
		result := ae.Result
		if result == "" {
			result = "error"
		}
		s.mg.Metrics().ObserveWebhook(eventLabel(event), result)
		s.fail(c, ae)
		return
	}
	s.mg.Metrics().ObserveWebhook(eventLabel(event), resp.Status)
	code := http.StatusAccepted
	if resp.Status == StatusDuplicate {
		code = http.StatusOK
	}
	c.JSON(code, resp)
}

// handleWebhook authenticates a delivery by its headers, then reads at most
// Config.MaxWebhookBody bytes of it, decodes it and hands it to
// MotherGoose, which checks the token again against the egg the body names
// and acts on it (mothergoose.Receive). A request with a wrong token costs
// its headers only: its body is never read.
func (s *Server) handleWebhook(c *gin.Context) (*HookResponse, error) {
	r := c.Request
	if err := s.ingest.AuthenticateToken(r.Context(), hostOf(r.Header.Get("X-Gitlab-Instance")), r.Header.Get("X-Gitlab-Token")); err != nil {
		// Close rather than drain what the client still sends.
		c.Header("Connection", "close")
		return nil, err
	}
	limit := s.maxBody()
	if r.ContentLength > limit {
		c.Header("Connection", "close")
		return nil, tooLarge(limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		return nil, &apiError{Status: http.StatusBadRequest, Msg: "bad payload", Detail: "reading the body failed", Result: "bad_request", Err: err}
	}
	d, err := DecodeDelivery(r.Header, body)
	if err != nil {
		return nil, err
	}
	d.URL = receivedURL(r)
	return s.ingest.Receive(r.Context(), d)
}

// receivedURL is the URL a delivery was sent to, as GitLab's hook names
// it: behind a proxy, the X-Forwarded-Proto and X-Forwarded-Host it sets.
func receivedURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0])); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if h := strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Host"), ",")[0]); h != "" {
		host = h
	}
	return (&url.URL{Scheme: scheme, Host: host, Path: r.URL.Path}).String()
}

// maxBody is the webhook body limit in bytes.
func (s *Server) maxBody() int64 {
	if s.cfg.MaxWebhookBody > 0 {
		return s.cfg.MaxWebhookBody
	}
	return DefaultMaxWebhookBody
}

func tooLarge(limit int64) error {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Msg: "payload too large",
		Detail: fmt.Sprintf("webhook bodies are limited to %d bytes (gosling server --webhook-body-limit)", limit), Result: "too_large"}
}

// hostOf is the GitLab host of a base URL (https://gitlab.com), lower case,
// without the scheme's default port; "" if base is no http(s) URL.
func hostOf(base string) string {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	host := strings.ToLower(u.Host)
	if h, port, err := net.SplitHostPort(host); err == nil &&
		((u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80")) {
		host = h
	}
	return host
}
