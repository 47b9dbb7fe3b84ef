// Package rift is Gosling's optional cache and remote container-engine
// server for runners (`gosling rift serve`). For every egg whose rift block
// is enabled it serves:
//
//   - a build cache: an S3-compatible bucket for gitlab-runner's
//     distributed cache (package s3);
//   - an image cache: a pull-through registry mirror of the egg's upstream
//     (package mirror, on CNCF Distribution);
//   - a remote engine: the Docker, Podman or containerd API socket of this
//     machine over mutual TLS (package engine), with client certificates
//     from Rift's own CA (package pki), issued for 24 hours to a runner
//     that presents its runner token;
//
// and evicts cache and mirror entries by the egg's max_age and cache size,
// least recently used first (package space), with Prometheus metrics.
//
// Listeners: the control API (HTTPS: /healthz, /metrics, /rift/v1/...),
// the S3 endpoint (HTTPS, or HTTP with S3Insecure), the mirror and the
// engine (both mutual TLS). A runner reaches only its own egg: another
// egg's token or certificate gets 403, a destroyed runner's 401.
package rift

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/engine"
	"github.com/gosling-ci/gosling/internal/rift/mirror"
	"github.com/gosling-ci/gosling/internal/rift/pki"
	"github.com/gosling-ci/gosling/internal/rift/s3"
	"github.com/gosling-ci/gosling/internal/rift/space"
)

// Defaults.
const (
	DefaultCertLifetime  = 24 * time.Hour
	DefaultSweepInterval = time.Minute
	// serverCertLifetime is how long a CA-issued server certificate is
	// valid; a new one is issued at every start.
	serverCertLifetime = 365 * 24 * time.Hour
	// liveFor is how long a runner found live is not asked about again.
	liveFor = 30 * time.Second
)

// Config configures a Server.
type Config struct {
	// Dir holds Rift's CA, keyring, cache buckets and mirrors.
	Dir  string
	Eggs []EggConfig
	Auth RunnerAuthenticator
	// Engines maps an engine (docker, podman, nerdctl) to its API socket
	// on this machine, such as /var/run/docker.sock. An egg whose engine
	// is not here gets no remote engine.
	Engines map[string]string
	// Hosts are the DNS names and IP addresses runners reach Rift by; the
	// CA-issued server certificate covers them, and the first one is the
	// host of the addresses runners are told.
	Hosts []string
	// ServerCert, when set, is the control and S3 listeners' certificate
	// (such as one a public CA issued); otherwise Rift's CA issues one.
	// The mirror and engine listeners always use a certificate of Rift's
	// CA, which runners trust.
	ServerCert *tls.Certificate
	// CertLifetime is how long a client certificate is valid (default 24h).
	CertLifetime time.Duration
	// S3Insecure serves the S3 endpoint over plain HTTP (gitlab-runner's
	// Insecure = true), for private networks whose job containers do not
	// trust Rift's CA.
	S3Insecure    bool
	SweepInterval time.Duration
	Clock         space.Clock
	Logger        *slog.Logger
	Metrics       *Metrics
}

// Listeners are where a Server serves; a nil listener turns its service off.
type Listeners struct {
	Control net.Listener
	S3      net.Listener
	Engine  net.Listener
	Mirror  net.Listener
}

type eggState struct {
	cfg   EggConfig
	space *space.Space
}

// Server is a running Rift.
type Server struct {
	cfg     Config
	log     *slog.Logger
	ca      *pki.CA
	metrics *Metrics
	eggs    map[string]*eggState
	s3      *s3.Server
	mirror  *mirror.Mirror
	riftTLS tls.Certificate // issued by Rift's CA
	pubTLS  tls.Certificate // control and S3

	mu    sync.Mutex
	ports map[string]int // listener -> port, known once serving
	live  map[string]time.Time
}

// New opens Rift's directory (making its CA on first start), loads every
// egg's cache and mirror into its books and starts the mirrors'
// registries. ctx bounds the registries' background work.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("rift: no directory")
	}
	if cfg.Auth == nil {
		return nil, errors.New("rift: no runner authenticator")
	}
	if cfg.Clock == nil {
		cfg.Clock = space.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.CertLifetime == 0 {
		cfg.CertLifetime = DefaultCertLifetime
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if len(cfg.Hosts) == 0 {
		cfg.Hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	ca, err := pki.LoadOrCreate(filepath.Join(cfg.Dir, "pki"), cfg.Clock.Now)
	if err != nil {
		return nil, err
	}
	riftTLS, err := ca.ServerCertificate(cfg.Hosts, serverCertLifetime)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, ca: ca, metrics: cfg.Metrics, eggs: map[string]*eggState{},
		riftTLS: riftTLS, pubTLS: riftTLS, ports: map[string]int{}, live: map[string]time.Time{}}
	if cfg.ServerCert != nil {
		s.pubTLS = *cfg.ServerCert
	}
	var buckets []s3.Bucket
	var keys []s3.Key
	var mirrors []mirror.Egg
	for _, e := range cfg.Eggs {
		if _, dup := s.eggs[e.Name]; dup {
			return nil, fmt.Errorf("rift: egg %s is configured twice", e.Name)
		}
		sp := space.New(e.Name, space.Limits{MaxBytes: e.CacheBytes, MaxAge: e.MaxAge}, space.Options{Clock: cfg.Clock, Observer: cfg.Metrics, Logger: cfg.Logger})
		s.eggs[e.Name] = &eggState{cfg: e, space: sp}
		buckets = append(buckets, s3.Bucket{Name: e.Bucket, Egg: e.Name, Dir: filepath.Join(cfg.Dir, "cache", e.Name), Space: sp})
		keys = append(keys, s3.Key{AccessKeyID: e.AccessKey, SecretAccessKey: e.SecretKey, Egg: e.Name})
		if e.Mirror != nil {
			mirrors = append(mirrors, mirror.Egg{Name: e.Name, Dir: filepath.Join(cfg.Dir, "mirror", e.Name), Upstream: *e.Mirror, Space: sp})
		}
	}
	if s.s3, err = s3.New(s3.Config{Buckets: buckets, Keys: keys, Now: cfg.Clock.Now, Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("rift: %w", err)
	}
	if s.mirror, err = mirror.New(ctx, mirrors, cfg.Logger); err != nil {
		return nil, fmt.Errorf("rift: %w", err)
	}
	// Entries loaded from disk may already be past the limits.
	for _, e := range s.eggs {
		e.space.Sweep(ctx)
	}
	return s, nil
}

// CA is Rift's certificate authority.
func (s *Server) CA() *pki.CA { return s.ca }

// Metrics is the server's registry.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Space returns an egg's books.
func (s *Server) Space(egg string) (*space.Space, bool) {
	e, ok := s.eggs[egg]
	if !ok {
		return nil, false
	}
	return e.space, true
}

// ControlTLS is the control and S3 listeners' TLS configuration.
func (s *Server) ControlTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{s.pubTLS}, MinVersion: tls.VersionTLS12, Time: s.cfg.Clock.Now}
}

// MutualTLS is the mirror and engine listeners' TLS configuration: Rift's
// server certificate, and client certificates of Rift's CA required.
func (s *Server) MutualTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{s.riftTLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    s.ca.Pool(),
		MinVersion:   tls.VersionTLS12,
		Time:         s.cfg.Clock.Now,
	}
}

// S3Handler serves the S3 endpoint.
func (s *Server) S3Handler() http.Handler { return s.s3 }

// MirrorHandler serves the image mirror to clients whose certificate the
// TLS layer verified.
func (s *Server) MirrorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			mirror.Challenge(w, "Gosling Rift", "present a client certificate from Rift's CA")
			return
		}
		id, err := pki.ClientIdentity(r.TLS.PeerCertificates[0])
		if err == nil {
			err = s.checkLive(r.Context(), id.RunnerID)
		}
		if err != nil {
			mirror.Challenge(w, "Gosling Rift", "this certificate's runner is not live")
			return
		}
		if _, ok := s.eggs[id.Egg]; !ok {
			http.Error(w, "egg "+id.Egg+" has no rift block", http.StatusForbidden)
			return
		}
		s.mirror.Serve(w, r, id.Egg)
	})
}

// EngineProxy is the remote engine's mutual-TLS proxy.
func (s *Server) EngineProxy() *engine.Proxy {
	return &engine.Proxy{TLS: s.MutualTLS(), Route: s.routeEngine, Logger: s.log}
}

func (s *Server) routeEngine(ctx context.Context, id pki.Identity) (string, string, error) {
	e, ok := s.eggs[id.Egg]
	if !ok {
		return "", "", &engine.Refusal{Status: http.StatusForbidden, Message: "rift: egg " + id.Egg + " has no rift block", HTTP: true}
	}
	speaksHTTP := e.cfg.Engine != engine.Nerdctl
	if err := s.checkLive(ctx, id.RunnerID); err != nil {
		if errors.Is(err, ErrUnauthenticated) {
			return "", "", &engine.Refusal{Status: http.StatusUnauthorized, Message: "rift: runner " + id.RunnerID + " is not live: its certificate is refused", HTTP: speaksHTTP}
		}
		return "", "", err
	}
	sock, ok := s.cfg.Engines[e.cfg.Engine]
	if !ok {
		return "", "", &engine.Refusal{Status: http.StatusForbidden, HTTP: speaksHTTP,
			Message: fmt.Sprintf("rift: this Rift serves no %s engine (egg %s's rift.engine); start it with --%s-socket", e.cfg.Engine, id.Egg, socketFlag(e.cfg.Engine))}
	}
	return "unix", strings.TrimPrefix(sock, "unix://"), nil
}

func socketFlag(engineName string) string {
	if engineName == engine.Nerdctl {
		return "containerd"
	}
	return engineName
}

// checkLive asks the authenticator, when it can tell, whether a runner
// still lives; a yes is remembered for liveFor.
func (s *Server) checkLive(ctx context.Context, runnerID string) error {
	lc, ok := s.cfg.Auth.(LiveChecker)
	if !ok {
		return nil
	}
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	until, seen := s.live[runnerID]
	s.mu.Unlock()
	if seen && now.Before(until) {
		return nil
	}
	if err := lc.Live(ctx, runnerID); err != nil {
		return err
	}
	s.mu.Lock()
	s.live[runnerID] = now.Add(liveFor)
	s.mu.Unlock()
	return nil
}

// Serve serves on the given listeners and sweeps every egg's books until
// ctx ends, then shuts the listeners down.
func (s *Server) Serve(ctx context.Context, l Listeners) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("rift %s listener: %w", name, err)
				cancel()
			}
		}()
	}
	httpServe := func(name string, ln net.Listener, h http.Handler, tc *tls.Config) {
		s.setPort(name, ln)
		// Caches and image layers are large: a transfer may take minutes,
		// never half an hour.
		hs := &http.Server{Handler: h, TLSConfig: tc, ReadHeaderTimeout: 30 * time.Second, ReadTimeout: 30 * time.Minute, WriteTimeout: 30 * time.Minute,
			IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
		run(name, func() error {
			if tc != nil {
				return hs.Serve(tls.NewListener(ln, tc))
			}
			return hs.Serve(ln)
		})
		context.AfterFunc(ctx, func() {
			sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
			defer c()
			_ = hs.Shutdown(sctx)
		})
	}
	if l.Control != nil {
		httpServe("control", l.Control, s.ControlHandler(), s.ControlTLS())
	}
	if l.S3 != nil {
		tc := s.ControlTLS()
		if s.cfg.S3Insecure {
			tc = nil
		}
		httpServe("s3", l.S3, s.S3Handler(), tc)
	}
	if l.Mirror != nil {
		httpServe("mirror", l.Mirror, s.MirrorHandler(), s.MutualTLS())
	}
	if l.Engine != nil {
		s.setPort("engine", l.Engine)
		p := s.EngineProxy()
		run("engine", func() error { return p.Serve(ctx, l.Engine) })
	}
	for _, e := range s.eggs {
		sp := e.space
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp.Run(ctx, s.cfg.SweepInterval)
		}()
	}
	<-ctx.Done()
	wg.Wait()
	close(errc)
	return errors.Join(collect(errc)...)
}

func collect(c chan error) []error {
	var out []error
	for err := range c {
		out = append(out, err)
	}
	return out
}

func (s *Server) setPort(name string, ln net.Listener) {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.mu.Lock()
		s.ports[name] = a.Port
		s.mu.Unlock()
	}
}

// address is host:port of a listener as runners reach it, "" when off.
func (s *Server) address(name string) string {
	s.mu.Lock()
	port, ok := s.ports[name]
	s.mu.Unlock()
	if !ok {
		return ""
	}
	return net.JoinHostPort(s.cfg.Hosts[0], strconv.Itoa(port))
}
