// Package mothergoose is MotherGoose's logic and its one composition root.
//
// Open builds a MotherGoose from a plain Config: it opens the store, the
// secret resolver, the Temporal client and the metrics registry (each one
// only when the Config does not hand over one already open), and keeps the
// Nest in force. Every process is built with it: `gosling server` (the
// API), `gosling worker`, `gosling dev` and the end-to-end tests.
//
// What MotherGoose does, apart from HTTP, lives here: applying a Nest (egg
// configurations into the store, pools started and given their new specs,
// UglyFox's schedules), taking GitLab's events (job history, failure
// counting, dispatch of jobs to workflows), the outbox that keeps Temporal
// calls while Temporal cannot be reached, and the requests of the REST API
// and of runner agents. Side effects on runners (draining, deleting, pool
// changes) are made by workflows that this package starts or signals.
package mothergoose

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/prometheus/client_golang/prometheus"
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

// Config is what MotherGoose is built from. Nest is required; every other
// dependency is opened from the Nest's MG block (and the fields that
// override it) unless one already open is handed over.
type Config struct {
	// Nest is the Nest in force at start; Vars are the Nest variables it
	// was loaded with, used again when it is reloaded.
	Nest *fly.Nest
	Vars map[string]string

	// Store, when set, is used and left open by Close. Otherwise the
	// store StoreDSN names is opened, or, when StoreDSN is empty, the one
	// the MG block's database names (see StoreDSN).
	Store    store.Store
	StoreDSN string

	// Secrets, when set, is the resolver to use. Otherwise one is opened
	// from the MG block's secrets block, with local:// served from
	// SecretsDir when that is set.
	Secrets    *secretstore.Resolver
	SecretsDir string
	// Masker, when set, is shared by the opened resolver and the logs.
	Masker *secretstore.Masker
	// Getenv reads the environment for secret backends (os.LookupEnv when nil).
	Getenv func(string) (string, bool)

	// Temporal, when set, is the client to use (and Close leaves it
	// open). Otherwise TemporalConnection (whose empty fields take the MG
	// block's temporal values) is dialled: lazily when LazyTemporal is set,
	// so a server starts, and queues calls in the outbox, while Temporal
	// is down.
	Temporal           client.Client
	TemporalConnection TemporalConnection
	LazyTemporal       bool

	// Metrics is created when nil.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// GitLabOptions configure the GitLab clients (group lookups, Nest
	// fetches, pauses).
	GitLabOptions []gitlab.Option
	Now           func() time.Time

	// Dispatch maps job events to Temporal calls (ByRunnerKind when nil).
	Dispatch Dispatch
	// FetchNest loads the Nest at a commit of the Nest repository after a
	// push; nil fetches it through the GitLab API (see FetchNestFromGitLab).
	FetchNest NestFetcher

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
	// deduplication (DefaultDeliveryRetention when 0).
	DeliveryRetention time.Duration

	// WebhookURL, when set, overrides the MG block's sweep.webhook_url:
	// the URL the eggs' project hooks post to, which sweeps keep in place.
	WebhookURL string
	// SweepInterval, when set, overrides sweep.interval (and turns the
	// sweep on); SweepStaleAfter is how long a recorded demand may wait
	// before a sweep sends it again (three intervals when 0).
	SweepInterval   time.Duration
	SweepStaleAfter time.Duration

	// UnconfirmedJobs, for benchmarks only, takes a Job Hook's job new to
	// the store without confirming it in the hook's project through the
	// Jobs API, so a benchmark can measure what that confirmation costs.
	// It lets one egg's secret touch another egg's jobs: never set it in
	// a server.
	UnconfirmedJobs bool
}

// MotherGoose is the server's logic, split by flow over shared
// dependencies (deps):
//
//   - Ingest takes GitLab's webhooks to intents: it authenticates a
//     delivery against its egg, deduplicates it, matches its project to an
//     egg and hands the job to a workflow (or to the outbox).
//   - NestSync keeps the Nest in force: it applies a Nest (egg
//     configurations, pools, gates, schedules) and follows the Nest
//     repository's branch.
//   - Agents answers runner agents: their credential, heartbeats, readiness
//     and the jobs they took, and confirms rotated tokens.
//   - Operations is what operators and self-management jobs ask: pool and
//     runner actions, sweeps and resends, cost, the eggs' shared runners and
//     project hooks, scheduled Nest updates.
//
// Open builds all four; Close closes what Open opened. It is safe for
// concurrent use.
type MotherGoose struct {
	*deps
	ingest  *Ingest
	nests   *NestSync
	agents  *Agents
	ops     *Operations
	closers []func() error
}

// deps are what every flow shares: the configuration, the store, the
// secret resolver and its cache, the metrics, the Temporal client, the
// Nest in force, the GitLab group and project caches, and the outbox.
type deps struct {
	cfg      Config
	log      *slog.Logger
	store    store.Store
	secrets  *secretstore.Resolver
	metrics  *metrics.Metrics
	temporal atomic.Pointer[temporalRef]
	nest     atomic.Pointer[fly.Nest]
	cache    *SecretCache
	groups   *groupCache
	projects *projectIndex
}

// Ingest is the webhook flow: GitLab event to intent (events.go,
// scope.go, match.go, announce.go, dispatch.go).
type Ingest struct {
	*deps
	nests *NestSync
}

// NestSync applies the Nest and follows its repository (nest.go,
// nestsource.go, jobs.go's schedules).
type NestSync struct {
	*deps
	fetch NestFetcher
	// nestCommit is the Nest repository commit in force; rejected the
	// last commit found invalid, not fetched again until the head moves.
	nestCommit atomic.Pointer[string]
	rejected   atomic.Pointer[string]
	// applyMu serialises Nest applications.
	applyMu sync.Mutex
}

// Agents answers runner agents (agents.go, tokenconfirm.go).
type Agents struct {
	*deps
	// tokens caches token versions for agents' heartbeats.
	tokens tokenVersions
}

// Operations carries out what operators and self-management jobs ask
// (pools.go, runners.go, sweep.go, resend.go, webhooks.go, cost.go,
// eggrunner.go, projects.go's hooks, nestupdate.go).
type Operations struct {
	*deps
	ingest *Ingest
	nests  *NestSync
	// hooks remembers, per hook, when a sweep last asked GitLab to test
	// it, so disabled hooks are tested at most every hookTestSpacing.
	hooks hookMemory
	// resends is what sweeps read of the hooks' delivery logs: the
	// cursor and the failed deliveries to resend (resend.go).
	resends resendMemory
}

// Ingest is the webhook flow.
func (m *MotherGoose) Ingest() *Ingest { return m.ingest }

// NestSync is the flow that applies and follows the Nest.
func (m *MotherGoose) NestSync() *NestSync { return m.nests }

// Agents is the flow that answers runner agents.
func (m *MotherGoose) Agents() *Agents { return m.agents }

// Operations is the flow of operators' and self-management jobs' requests.
func (m *MotherGoose) Operations() *Operations { return m.ops }

type temporalRef struct{ c client.Client }

// Open builds MotherGoose from cfg: it opens what cfg does not hand over
// and writes the Nest's egg configurations to the store. It does not start pools or schedules: call
// ApplyNest for that once workers can take the work (servers do at start).
// Errors name what could not be opened; a database block that names no
// usable store is a *StoreConfigError.
func Open(ctx context.Context, cfg Config) (*MotherGoose, error) {
	if cfg.Nest == nil {
		return nil, errors.New("mothergoose: Config.Nest is required")
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

	d := &deps{cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics, groups: &groupCache{paths: map[groupKey]string{}}, projects: newProjectIndex()}
	d.nest.Store(cfg.Nest)
	m := &MotherGoose{deps: d, nests: &NestSync{deps: d}, agents: &Agents{deps: d}}
	m.ingest = &Ingest{deps: d, nests: m.nests}
	m.ops = &Operations{deps: d, ingest: m.ingest, nests: m.nests}
	ok := false
	defer func() {
		if !ok {
			_ = m.Close()
		}
	}()

	var err error
	if m.secrets = cfg.Secrets; m.secrets == nil {
		m.secrets, err = secrets.Open(ctx, cfg.Nest.MotherGoose.Secrets, secrets.OpenOptions{LocalDir: cfg.SecretsDir, Getenv: cfg.Getenv, Masker: cfg.Masker})
		if err != nil {
			return nil, fmt.Errorf("mothergoose: open the secret backends: %w", err)
		}
	}
	m.cache = NewSecretCache(m.secrets, cfg.SecretTTL)

	if m.store = cfg.Store; m.store == nil {
		dsn := cfg.StoreDSN
		if dsn == "" {
			if dsn, err = StoreDSN(ctx, cfg.Nest.MotherGoose, m.secrets); err != nil {
				return nil, err
			}
		}
		if m.store, err = store.Open(ctx, dsn); err != nil {
			if cfg.StoreDSN == "" {
				return nil, &StoreConfigError{At: cfg.Nest.MotherGoose.Database.At, Err: fmt.Errorf("database: open the %s store: %w", cfg.Nest.MotherGoose.Database.Engine, err)}
			}
			return nil, fmt.Errorf("mothergoose: open the store: %w", err)
		}
		m.closers = append(m.closers, m.store.Close)
	}

	tc := cfg.Temporal
	if tc == nil {
		conn := cfg.TemporalConnection.withDefaults(cfg.Nest.MotherGoose.Temporal)
		if tc, err = conn.Dial(ctx, m.secrets, cfg.Logger, cfg.LazyTemporal); err != nil {
			return nil, err
		}
		m.closers = append(m.closers, func() error { tc.Close(); return nil })
	}
	m.SetTemporal(tc)

	if m.nests.fetch = cfg.FetchNest; m.nests.fetch == nil {
		m.nests.fetch = m.nests.FetchNestFromGitLab
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m.nests.storeEggConfigs(sctx, cfg.Nest); err != nil {
		return nil, fmt.Errorf("mothergoose: %w", err)
	}
	ok = true
	return m, nil
}

// CollectGauges registers, in the process's metrics, the gauges read at
// scrape time: runners by state and the outbox's depth (from the store),
// and every pool's published figures (one Temporal visibility list per
// 1,000 pools). The API's process does; workers do not, so a fleet reports
// each gauge once. Registering twice is not an error.
func (m *MotherGoose) CollectGauges() error {
	if err := m.metrics.CollectStore(m.store); err != nil && !errors.Is(err, metrics.ErrStoreCollected) {
		return fmt.Errorf("mothergoose: %w", err)
	}
	var dup prometheus.AlreadyRegisteredError
	if err := m.metrics.CollectPools(m.ops.poolSamples); err != nil && !errors.As(err, &dup) {
		return fmt.Errorf("mothergoose: %w", err)
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Close closes what Open opened (not what Config handed over).
func (m *MotherGoose) Close() error {
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		errs = append(errs, m.closers[i]())
	}
	m.closers = nil
	return errors.Join(errs...)
}

// Store is MotherGoose's store.
func (m *deps) Store() store.Store { return m.store }

// Secrets is the resolver of secret URIs.
func (m *deps) Secrets() *secretstore.Resolver { return m.secrets }

// SecretCache is the cache of resolved webhook secrets and tokens.
func (m *deps) SecretCache() *SecretCache { return m.cache }

// Metrics is the process's metrics registry.
func (m *deps) Metrics() *metrics.Metrics { return m.metrics }

// Logger is the process's logger.
func (m *deps) Logger() *slog.Logger { return m.log }

// GitLabOptions are the options of every GitLab client MotherGoose makes.
func (m *deps) GitLabOptions() []gitlab.Option { return m.cfg.GitLabOptions }

// TemporalTimeout bounds one Temporal call of a request.
func (m *deps) TemporalTimeout() time.Duration { return m.cfg.TemporalTimeout }

// SetTemporal replaces the Temporal client, for a process that reconnects.
func (m *deps) SetTemporal(c client.Client) { m.temporal.Store(&temporalRef{c}) }

// Temporal is the current Temporal client, nil if there is none.
func (m *deps) Temporal() client.Client { return m.temporal.Load().c }

// Nest is the Nest in force, never nil.
func (m *deps) Nest() *fly.Nest {
	if n := m.nest.Load(); n != nil {
		return n
	}
	return &fly.Nest{}
}

func (m *deps) now() time.Time { return m.cfg.Now() }
