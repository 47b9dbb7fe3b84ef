package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/client"
)

// Defaults of the optional Config fields.
const (
	DefaultTemporalTimeout  = 3 * time.Second
	DefaultSecretTTL        = 30 * time.Second
	DefaultOutboxInterval   = time.Second
	DefaultOutboxMaxBackoff = 30 * time.Second
	// GitLab lets a delivery be resent by hand for a few days; a week of
	// keys catches those resends.
	DefaultDeliveryRetention = 7 * 24 * time.Hour
)

// maxWebhookBody is the largest body GitLab sends.
const maxWebhookBody = 25 << 20

// webhookDeadline bounds the processing of one delivery: GitLab gives up
// after 10 seconds.
const webhookDeadline = 8 * time.Second

// Config is what the server needs.
type Config struct {
	// Nest returns the current Nest; the dev mode rewrites egg hosts.
	Nest  func() *fly.Nest
	Store store.Store
	// Temporal may be nil (every call is then queued in the outbox); see
	// Server.SetTemporal.
	Temporal client.Client
	Secrets  *secrets.Resolver
	// Metrics is created when nil; the server adds the store's gauges.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// APITokens are the REST API's bearer tokens, resolved through Secrets
	// at request time and cached for SecretTTL. Empty: the REST API
	// answers 503.
	APITokens []fly.SecretRef
	// Reload reloads the Nest after a push to the Nest repository; nil
	// ignores such pushes.
	Reload func(ctx context.Context) error
	Now    func() time.Time

	// Dispatch maps job events to Temporal calls (ByRunnerKind when nil).
	Dispatch Dispatch
	// TemporalTimeout bounds one Temporal call of a request
	// (DefaultTemporalTimeout when 0).
	TemporalTimeout time.Duration
	// SecretTTL is how long resolved tokens and webhook secrets are cached
	// (DefaultSecretTTL when 0).
	SecretTTL time.Duration
	// OutboxInterval is how often RunOutbox looks for due entries, and
	// OutboxMaxBackoff the longest wait before retrying one.
	OutboxInterval   time.Duration
	OutboxMaxBackoff time.Duration
	// DeliveryRetention is how long webhook delivery keys are kept for
	// deduplication (DefaultDeliveryRetention when 0); RunOutbox prunes
	// older ones hourly.
	DeliveryRetention time.Duration
	// GitLabOptions configure the GitLab clients (group lookups, drain).
	GitLabOptions []gitlab.Option
}

// Server is MotherGoose's HTTP server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	temporal atomic.Pointer[temporalRef]
	auth     *Authorizer
	secrets  *secretCache
	groups   *groupCache
	engine   *gin.Engine
}

type temporalRef struct{ c client.Client }

// New checks cfg, writes the Nest's egg configurations to the store and
// builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.Nest == nil || cfg.Store == nil || cfg.Secrets == nil {
		return nil, errors.New("api: Config needs Nest, Store and Secrets")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.Dispatch == nil {
		cfg.Dispatch = ByRunnerKind
	}
	cfg.TemporalTimeout = orDefault(cfg.TemporalTimeout, DefaultTemporalTimeout)
	cfg.SecretTTL = orDefault(cfg.SecretTTL, DefaultSecretTTL)
	cfg.OutboxInterval = orDefault(cfg.OutboxInterval, DefaultOutboxInterval)
	cfg.OutboxMaxBackoff = orDefault(cfg.OutboxMaxBackoff, DefaultOutboxMaxBackoff)
	cfg.DeliveryRetention = orDefault(cfg.DeliveryRetention, DefaultDeliveryRetention)
	// The store's gauges may be registered already by whoever shares the
	// registry; once is enough.
	if err := cfg.Metrics.CollectStore(cfg.Store); err != nil && !errors.Is(err, metrics.ErrStoreCollected) {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.secrets = newSecretCache(cfg.Secrets, cfg.SecretTTL)
	s.auth = &Authorizer{tokens: cfg.APITokens, cache: s.secrets}
	s.groups = &groupCache{paths: map[groupKey]string{}}
	s.SetTemporal(cfg.Temporal)
	var dup prometheus.AlreadyRegisteredError
	if err := cfg.Metrics.CollectPools(s.poolSamples); err != nil && !errors.As(err, &dup) {
		return nil, fmt.Errorf("api: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.syncEggConfigs(ctx); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.engine = s.routes()
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// SetTemporal replaces the Temporal client, for a process that reconnects.
func (s *Server) SetTemporal(c client.Client) { s.temporal.Store(&temporalRef{c}) }

// Temporal is the current Temporal client, nil if there is none.
func (s *Server) Temporal() client.Client { return s.temporal.Load().c }

// Authorize checks an Authorization header against the API tokens; see
// Authorizer.Authorize.
func (s *Server) Authorize(ctx context.Context, header string) error {
	return s.auth.Authorize(ctx, header)
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// nest is the current Nest, never nil.
func (s *Server) nest() *fly.Nest {
	if n := s.cfg.Nest(); n != nil {
		return n
	}
	return &fly.Nest{}
}

// syncEggConfigs writes the current Nest's eggs to the store, so runners
// and workflows can read the configuration they were made with.
func (s *Server) syncEggConfigs(ctx context.Context) error {
	for _, egg := range s.nest().Eggs {
		spec, err := json.Marshal(egg)
		if err != nil {
			return fmt.Errorf("encode egg %s: %w", egg.Name, err)
		}
		if err := s.cfg.Store.PutEggConfig(ctx, store.EggConfig{Name: egg.Name, Version: egg.Version, Spec: spec, UpdatedAt: s.now()}); err != nil {
			return err
		}
	}
	return nil
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
	r.NoRoute(func(c *gin.Context) {
		s.fail(c, &apiError{Status: http.StatusNotFound, Msg: "not found", Detail: "no route " + c.Request.URL.Path + "; see /api/v1/openapi.json"})
	})
	r.NoMethod(func(c *gin.Context) {
		s.fail(c, &apiError{Status: http.StatusMethodNotAllowed, Msg: "method not allowed", Detail: c.Request.Method + " is not served on " + c.Request.URL.Path})
	})

	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.GET("/metrics", gin.WrapH(s.cfg.Metrics.Handler()))
	r.POST("/webhooks/gitlab", s.webhook)
	r.POST("/agent/v1/runners/:id/heartbeat", s.heartbeat)

	v1 := r.Group("/api/v1", s.requireToken)
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
	v1.GET("/pools/:name", s.getPool)
	v1.POST("/pools/:name/scale", s.scalePool)
	v1.POST("/pools/:name/drain", s.drainPool)
	return r
}

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
		s.cfg.Metrics.ObserveHTTP(c.Request.Method, route, status, d)
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
