package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/mothergoose"
)

// Config is what the HTTP server needs.
type Config struct {
	// MotherGoose does the work behind every route.
	MotherGoose *mothergoose.MotherGoose
	// APITokens are the REST API's bearer tokens, resolved through
	// MotherGoose's secret cache at request time. Empty: the REST API
	// answers 503.
	APITokens []fly.SecretRef
	// Logger defaults to MotherGoose's.
	Logger *slog.Logger
	// Extra, when set, serves the paths under its prefix (gosling dev adds
	// its simulation endpoints under /dev/).
	Extra       http.Handler
	ExtraPrefix string
	// MetricsToken, when set, is the bearer token /metrics requires (a
	// secret URI); unset, /metrics is open.
	MetricsToken fly.SecretRef
	// MaxWebhookBody is the largest webhook body read, in bytes
	// (DefaultMaxWebhookBody when 0); a larger one is answered 413.
	MaxWebhookBody int64
}

// Server is MotherGoose's HTTP server: it decodes, authenticates, calls
// MotherGoose and maps errors to status codes.
type Server struct {
	cfg Config
	mg  *mothergoose.MotherGoose
	// The flows the handlers call: webhooks go to ingest, runner agents
	// to agents, the REST API's actions to ops.
	ingest *mothergoose.Ingest
	agents *mothergoose.Agents
	ops    *mothergoose.Operations
	log    *slog.Logger
	auth   *Authorizer
	engine *gin.Engine
}

// New builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.MotherGoose == nil {
		return nil, errors.New("api: Config.MotherGoose is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.MotherGoose.Logger()
	}
	// The API's /metrics carries the gauges read at scrape time.
	if err := cfg.MotherGoose.CollectGauges(); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	mg := cfg.MotherGoose
	s := &Server{cfg: cfg, mg: mg, ingest: mg.Ingest(), agents: mg.Agents(), ops: mg.Operations(), log: cfg.Logger}
	s.auth = &Authorizer{tokens: cfg.APITokens, cache: s.mg.SecretCache()}
	s.engine = s.routes()
	return s, nil
}

// Authorize checks an Authorization header against the API tokens; see
// Authorizer.Authorize.
func (s *Server) Authorize(ctx context.Context, header string) error {
	return s.auth.Authorize(ctx, header)
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }

// Serve answers requests on ln until ctx ends, then shuts down gracefully:
// requests in flight get up to 15 seconds to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.engine,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("api: shut down: %w", err)
	}
	return nil
}

func (s *Server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// ClientIP (logged) is the peer's address: forwarded-for headers are
	// anyone's to write.
	_ = r.SetTrustedProxies(nil)
	r.Use(s.observe(), s.recovery())
	if s.cfg.Extra != nil && s.cfg.ExtraPrefix != "" {
		r.Any(strings.TrimSuffix(s.cfg.ExtraPrefix, "/")+"/*path", gin.WrapH(s.cfg.Extra))
	}
	r.NoRoute(func(c *gin.Context) {
		s.fail(c, &apiError{Status: http.StatusNotFound, Msg: "not found", Detail: "no route " + c.Request.URL.Path + "; see /api/v1/openapi.json"})
	})
	r.NoMethod(func(c *gin.Context) {
		s.fail(c, &apiError{Status: http.StatusMethodNotAllowed, Msg: "method not allowed", Detail: c.Request.Method + " is not served on " + c.Request.URL.Path})
	})

	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.GET("/metrics", gin.WrapH(s.metricsHandler()))
	r.POST("/webhooks/gitlab", s.webhook)
	r.POST("/agent/v1/runners/:id/heartbeat", plainText(s), s.heartbeat)
	r.POST("/agent/v1/runners/:id/ready", plainText(s), s.agentReady)
	r.POST("/agent/v1/runners/:id/jobs", plainText(s), s.agentJob)
	r.POST("/agent/v1/runners/:id/interruption", plainText(s), s.agentInterruption)

	v1 := r.Group("/api/v1", s.requireToken, plainText(s))
	v1.GET("/openapi.json", s.openAPI)
	v1.GET("/runners", s.listRunners)
	v1.GET("/runners/:id", s.getRunner)
	v1.POST("/runners/:id/drain", s.drainRunner)
	v1.DELETE("/runners/:id", s.deleteRunner)
	v1.GET("/eggs", s.listEggs)
	v1.GET("/eggs/:name", s.getEgg)
	v1.GET("/eggs/:name/jobs", s.listEggJobs)
	v1.GET("/jobs", s.listJobs)
	v1.GET("/audit", s.listAudit)
	v1.GET("/cost", s.getCost)
	v1.GET("/pools/:name", s.getPool)
	v1.GET("/gates/:name", s.getGate)
	v1.POST("/pools/:name/scale", s.scalePool)
	v1.POST("/pools/:name/drain", s.drainPool)
	return r
}

// metricsHandler serves the metrics, behind Config.MetricsToken when set.
func (s *Server) metricsHandler() http.Handler {
	h := s.mg.Metrics().Handler()
	if s.cfg.MetricsToken.IsZero() {
		return h
	}
	ref, cache := s.cfg.MetricsToken, s.mg.SecretCache()
	return metrics.RequireBearer(h, func(ctx context.Context, token string) (bool, error) {
		return cache.Match(ctx, ref, token)
	})
}

// plainText refuses, with 400, path parameters and query strings that are
// not UTF-8 text or hold a NUL byte: no runner, egg or job is named so,
// and PostgreSQL fails a query that compares text with them.
func plainText(s *Server) gin.HandlerFunc {
	return func(c *gin.Context) {
		for _, p := range c.Params {
			if !isPlainText(p.Value) {
				s.fail(c, badRequest("the path parameter "+p.Key+" must be UTF-8 text without NUL bytes"))
				return
			}
		}
		if raw := c.Request.URL.RawQuery; raw != "" {
			q, err := url.QueryUnescape(raw)
			if err != nil || !isPlainText(q) {
				s.fail(c, badRequest("the query string must be URL-encoded UTF-8 text without NUL bytes"))
				return
			}
		}
		c.Next()
	}
}

func isPlainText(v string) bool { return utf8.ValidString(v) && !strings.ContainsRune(v, 0) }

// observe logs every request and records its latency. It never logs
// headers, query strings or bodies: they carry tokens.
func (s *Server) observe() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		d := time.Since(start)
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		status := c.Writer.Status()
		s.mg.Metrics().ObserveHTTP(c.Request.Method, route, status, d)
		level := slog.LevelInfo
		switch {
		case status >= 500:
			level = slog.LevelError
		case route == "/healthz" || route == "/readyz" || route == "/metrics",
			route == "/agent/v1/runners/:id/heartbeat" && status < 300:
			level = slog.LevelDebug
		}
		s.log.LogAttrs(c.Request.Context(), level, "http request",
			slog.String("method", c.Request.Method), slog.String("route", route), slog.String("path", c.Request.URL.Path),
			slog.Int("status", status), slog.Duration("duration", d), slog.String("client", c.ClientIP()),
			slog.Int("bytes", c.Writer.Size()))
	}
}

// recovery turns a panic into a 500 and a log line with the stack; unlike
// gin.Recovery it never dumps the request, whose headers carry tokens.
func (s *Server) recovery() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.ErrorContext(c.Request.Context(), "panic in handler", "route", c.FullPath(), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if c.Writer.Written() {
				c.Abort()
				return
			}
			c.AbortWithStatusJSON(http.StatusInternalServerError, errorBody{Error: "internal error", Detail: "the server failed; see its log"})
		}()
		c.Next()
	}
}
