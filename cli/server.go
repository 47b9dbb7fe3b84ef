package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/spf13/cobra"
)

// ServerOptions are the inputs of `gosling server`.
type ServerOptions struct {
	IO       *IOStreams
	Logger   *slog.Logger
	Masker   *secretstore.Masker
	Getenv   func(string) (string, bool)
	Nest     string
	Vars     map[string]string
	Addr     string
	Temporal TemporalFlags
	Runtime  RuntimeFlags
	// TLSCert and TLSKey are PEM files, or secret URIs holding the PEM.
	TLSCert string
	TLSKey  string
	// NestSync is how often the Nest repository's head is checked (0: never).
	NestSync    time.Duration
	PrintConfig bool
	// WebhookBodyLimit is the largest webhook body read (a size: 1MiB).
	WebhookBodyLimit string
	// MetricsToken, when set, is a secret URI of the bearer token
	// /metrics requires.
	MetricsToken string
}

// NewCmdServer builds `gosling server`.
func NewCmdServer(f *Factory, runF func(*ServerOptions) error) *cobra.Command {
	opts := &ServerOptions{IO: f.IO, Logger: f.Logger, Masker: f.Masker, Getenv: f.Getenv}
	var vars []string
	env := func(name, def string) string {
		if v, ok := f.Getenv(name); ok && v != "" {
			return v
		}
		return def
	}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run MotherGoose's API: GitLab webhooks, the REST API and the agents' endpoints",
		Long: `Server runs MotherGoose's HTTP API, configured from the Nest's MG/config.fly:

  POST /webhooks/gitlab            GitLab's project and group hooks
  /api/v1/...                      the REST API (bearer tokens from
                                   mothergoose.api_gateway.auth.tokens)
  POST /agent/v1/runners/ID/...    runner agents, with their machine's own agent credential
  /healthz /readyz /metrics        probes and Prometheus metrics

It takes webhooks even while Temporal is down: what it accepts waits in the
store's outbox and is delivered, in order, once Temporal answers. At start it
applies the Nest (egg configurations, pools, UglyFox's schedules); a push to
the Nest repository (mothergoose.nest) makes it fetch the Nest at the pushed
commit through the GitLab API and apply it when it validates; every replica
also follows the repository's head every --nest-sync.

Run any number of replicas behind a load balancer, and gosling worker
--queue mothergoose and --queue uglyfox beside them. Flags and GOSLING_*
variables override MG/config.fly; --print-config shows the result.`,
		Example: `  gosling server --nest ./nest
  gosling server --nest ./nest --addr :8443 --tls-cert /etc/gosling/tls.crt --tls-key /etc/gosling/tls.key
  gosling server --nest ./nest --tls-cert vault://gosling/tls/cert --tls-key vault://gosling/tls/key
  gosling server --nest ./nest --print-config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Vars, err = parseVars(vars); err != nil {
				return err
			}
			if (opts.TLSCert == "") != (opts.TLSKey == "") {
				return flagErrorf("--tls-cert and --tls-key go together")
			}
			if _, err := webhookBodyLimit(opts.WebhookBodyLimit); err != nil {
				return flagErrorf("--webhook-body-limit: %v", err)
			}
			if runF != nil {
				return runF(opts)
			}
			return serverRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	nestFlag(fl, &opts.Nest, f.Getenv, "the Nest whose MG/config.fly configures the server", "")
	fl.StringArrayVar(&vars, "var", nil, "set a Nest variable: --var name=value (repeatable)")
	fl.StringVar(&opts.Addr, "addr", env("GOSLING_ADDR", defaultAddr(f.Getenv)), "address to listen on ($GOSLING_ADDR; default :$PORT when the platform sets PORT, as Serverless Containers and Cloud Run do, else :8080)")
	fl.StringVar(&opts.TLSCert, "tls-cert", env("GOSLING_TLS_CERT", ""), "serve HTTPS with this certificate: a PEM file or a secret URI ($GOSLING_TLS_CERT)")
	fl.StringVar(&opts.TLSKey, "tls-key", env("GOSLING_TLS_KEY", ""), "the certificate's key: a PEM file or a secret URI ($GOSLING_TLS_KEY)")
	fl.DurationVar(&opts.NestSync, "nest-sync", time.Minute, "how often to check the Nest repository's head (0: only on push)")
	fl.BoolVar(&opts.PrintConfig, "print-config", false, "print the effective configuration (secrets as their URIs) and exit")
	fl.StringVar(&opts.MetricsToken, "metrics-token", env("GOSLING_METRICS_TOKEN", ""), "a secret URI: /metrics then needs Authorization: Bearer <its value> (default: open) ($GOSLING_METRICS_TOKEN)")
	fl.StringVar(&opts.WebhookBodyLimit, "webhook-body-limit", env("GOSLING_WEBHOOK_BODY_LIMIT", "1MiB"),
		"the largest webhook body read, after the token was checked; larger ones get 413 ($GOSLING_WEBHOOK_BODY_LIMIT)")
	opts.Temporal.register(fl, f.Getenv)
	opts.Runtime.register(cmd, f.Getenv, runtimeStore)
	return cmd
}

// ServerConfig is the effective configuration of `gosling server`, as
// --print-config shows it. Secrets appear as their URIs, never as values.
type ServerConfig struct {
	Nest       string                         `json:"nest"`
	Addr       string                         `json:"addr"`
	TLS        *ServerTLS                     `json:"tls,omitempty"`
	Temporal   mothergoose.TemporalConnection `json:"temporal"`
	Store      string                         `json:"store"`
	Secrets    fly.Secrets                    `json:"secrets"`
	APITokens  []fly.SecretRef                `json:"api_tokens"`
	NestSource fly.NestSource                 `json:"nest_source"`
	NestSync   string                         `json:"nest_sync"`
	Providers  map[string]fly.Provider        `json:"providers"`
	Eggs       []string                       `json:"eggs"`
	StateDir   string                         `json:"state_dir"`
}

// ServerTLS names the certificate and key: files or secret URIs.
type ServerTLS struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// effectiveServerConfig merges the Nest's MG block with the flags.
func effectiveServerConfig(opts *ServerOptions, nest *fly.Nest) ServerConfig {
	mg := nest.MotherGoose
	conn := opts.Temporal.Connection().WithDefaults(mg.Temporal)
	if conn.APIKeyValue != "" {
		conn.APIKey = fly.SecretRef("env:" + opts.Temporal.APIKeyEnv)
	}
	cfg := ServerConfig{
		Nest: opts.Nest, Addr: opts.Addr, Temporal: conn, Secrets: mg.Secrets, APITokens: mg.APIGateway.Auth.Tokens,
		NestSource: mg.Nest, NestSync: opts.NestSync.String(), Providers: mg.Providers, StateDir: opts.Runtime.StateDir,
	}
	switch {
	case opts.Runtime.Store != "":
		cfg.Store = redactDSN(opts.Runtime.Store) + " (--store)"
	case mg.Database.Engine == "postgresql":
		cfg.Store = "postgresql: " + string(mg.Database.DSN)
	case mg.Database.Engine == "sqlite" || mg.Database.Engine == "":
		cfg.Store = "sqlite://" + mg.Database.Path
	default:
		cfg.Store = mg.Database.Engine + " (" + mg.Database.At + ")"
	}
	if opts.TLSCert != "" {
		cfg.TLS = &ServerTLS{Cert: opts.TLSCert, Key: opts.TLSKey}
	}
	for _, e := range nest.Eggs {
		cfg.Eggs = append(cfg.Eggs, e.Name)
	}
	return cfg
}

// defaultAddr is :$PORT when the platform names the port to listen on (a
// Yandex Serverless Container, Cloud Run, ...), else :8080.
func defaultAddr(getenv func(string) (string, bool)) string {
	if p, ok := getenv("PORT"); ok && strings.TrimSpace(p) != "" {
		return ":" + strings.TrimSpace(p)
	}
	return ":8080"
}

// webhookBodyLimit reads --webhook-body-limit: a size from 64KiB to 25MB,
// GitLab's own limit.
func webhookBodyLimit(s string) (int64, error) {
	if s == "" {
		return api.DefaultMaxWebhookBody, nil
	}
	size, err := fly.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("%w (a size such as 1MiB)", err)
	}
	if size < 64*fly.KiB || size > 25_000_000 {
		return 0, fmt.Errorf("%s is outside 64KiB to 25MB", s)
	}
	return int64(size), nil
}

// redactDSN hides a DSN's password.
func redactDSN(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return dsn
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return dsn
	}
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return scheme + "://" + user + ":" + secretstore.Masked + "@" + host
	}
	return dsn
}

func serverRun(ctx context.Context, opts *ServerOptions) error {
	if opts.PrintConfig {
		nest, err := loadNest(opts.Nest, opts.Vars, opts.Getenv, opts.IO)
		if err != nil {
			return err
		}
		return printJSON(opts.IO.Out, effectiveServerConfig(opts, nest))
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("%s is not free (%v): choose another with --addr", opts.Addr, err)
	}
	defer ln.Close()
	limit, err := webhookBodyLimit(opts.WebhookBodyLimit)
	if err != nil {
		return flagErrorf("--webhook-body-limit: %v", err)
	}
	p, err := openProcess(ctx, processOptions{
		NestDir: opts.Nest, Vars: opts.Vars, Getenv: opts.Getenv, Temporal: opts.Temporal, Runtime: opts.Runtime,
		Logger: opts.Logger, Masker: opts.Masker, LazyTemporal: true, ErrOut: opts.IO,
		API: func(nest *fly.Nest) api.Config {
			return api.Config{APITokens: nest.MotherGoose.APIGateway.Auth.Tokens, MaxWebhookBody: limit, MetricsToken: fly.SecretRef(opts.MetricsToken)}
		},
	})
	if err != nil {
		return err
	}
	defer p.Close()
	mg, srv := p.MG, p.API
	if opts.TLSCert != "" {
		cert, err := loadCertificate(ctx, mg.Secrets(), opts.TLSCert, opts.TLSKey)
		if err != nil {
			return err
		}
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})
	}
	go mg.RunOutbox(ctx)
	// The Nest is applied in the background: a Temporal that is not up yet
	// only queues the pools' starts in the outbox.
	go func() {
		res, err := mg.NestSync().ApplyNest(ctx, p.Nest, "", "server start")
		if err != nil {
			opts.Logger.Error("apply the Nest", "error", err)
			return
		}
		opts.Logger.Info("Nest applied", "eggs", res.Eggs, "pools", res.Pools, "warnings", len(res.Warnings))
	}()
	if opts.NestSync > 0 && p.Nest.MotherGoose.Nest.Project != "" {
		go mg.NestSync().RunNestSync(ctx, opts.NestSync)
	}
	scheme := "http"
	if opts.TLSCert != "" {
		scheme = "https"
	}
	opts.Logger.Info("MotherGoose API listening", "url", scheme+"://"+ln.Addr().String(), "nest", opts.Nest, "eggs", len(p.Nest.Eggs))
	err = srv.Serve(ctx, ln)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// loadCertificate reads a certificate and its key, each a PEM file or a
// secret URI holding the PEM.
func loadCertificate(ctx context.Context, res *secretstore.Resolver, cert, key string) (tls.Certificate, error) {
	read := func(what, v string) ([]byte, error) {
		if strings.Contains(v, "://") {
			s, err := res.Resolve(ctx, fly.SecretRef(v))
			if err != nil {
				return nil, fmt.Errorf("TLS %s: %w", what, err)
			}
			return []byte(s), nil
		}
		b, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("TLS %s: %w", what, err)
		}
		return b, nil
	}
	c, err := read("certificate", cert)
	if err != nil {
		return tls.Certificate{}, err
	}
	k, err := read("key", key)
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS certificate and key: %w", err)
	}
	return pair, nil
}
