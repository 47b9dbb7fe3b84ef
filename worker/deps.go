package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/yandexauth"
	"github.com/gosling-ci/gosling/tofu"
)

// Deps are what a worker's activities need: the dependencies MotherGoose
// opened (store, secrets, metrics, GitLab options) and the worker's own
// (OpenTofu, the agent).
type Deps struct {
	Store         store.Store
	Secrets       *secretstore.Resolver
	Metrics       *metrics.Metrics
	Logger        *slog.Logger
	GitLabOptions []gitlab.Option
	// SecretsConfig is the MG block's secrets block: runner tokens of
	// cloud machines go to its backend. Zero keeps them in local://.
	SecretsConfig fly.Secrets
	// Tofu is the OpenTofu binary; StateDir holds its per-runner
	// workspaces (under tofu/) and the local provider's machines.
	Tofu     string
	StateDir string
	// Backend is where OpenTofu keeps the runners' states (this worker's
	// disk when zero: one worker only).
	Backend tofu.Backend
	// Agent says how machines get their agent and where it reports.
	Agent activities.AgentSettings
	// Providers are MG/config.fly's runner providers: the worker reaches
	// each named cloud's API (its machines' labels, runner identities,
	// power) as itself, and passes OpenTofu its credentials for that
	// cloud per run.
	Providers map[string]fly.Provider
	// Getenv reads the worker's environment, where its own cloud
	// credentials are (default os.LookupEnv).
	Getenv func(string) (string, bool)
	// SimulateMachines, for fleet benchmarks only, replaces machines by
	// ones that take this long to apply, and whose serverless invocations
	// take SimulateJob (see activities.SimulatedMachines).
	SimulateMachines time.Duration
	SimulateJob      time.Duration
}

// NewActivities opens OpenTofu in d.StateDir and builds the activities.
// Errors name what could not be opened; an unusable secrets block is
// reported as such.
func NewActivities(d Deps) (*activities.Activities, error) {
	abs, err := filepath.Abs(d.StateDir)
	if err != nil {
		return nil, err
	}
	ex, err := tofu.New(d.Tofu, filepath.Join(abs, "tofu"))
	if err != nil {
		return nil, fmt.Errorf("open OpenTofu: %w", err)
	}
	ex.Filter = d.Secrets.Masker().Mask
	ex.Backend = d.Backend
	tokenRef, err := activities.TokenRefs(d.SecretsConfig)
	if err != nil {
		return nil, fmt.Errorf("mothergoose.secrets: %w", err)
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	acts := &activities.Activities{
		Store: d.Store, Secrets: d.Secrets, Tofu: ex, Logger: log, Metrics: d.Metrics,
		TokenRef: tokenRef, GitLabOptions: d.GitLabOptions, Agent: d.Agent,
		// The local provider's machines are processes of this host.
		Inventories: []activities.Inventory{activities.LocalInventory{Deployment: d.Agent.Deployment, StateDir: ex.StateDir()}},
		Identities:  map[string]activities.IdentitySource{},
		Power:       map[string]activities.PowerControl{},
	}
	if err := openClouds(d, acts); err != nil {
		return nil, err
	}
	ex.Credentials = func(ctx context.Context, m tofu.Module) (map[string]string, error) {
		key := ""
		if ref := d.Providers[m.Cloud].ServiceAccountKey; m.Cloud == fly.CloudYandex && !ref.IsZero() {
			v, err := d.Secrets.Resolve(ctx, ref)
			if err != nil {
				return nil, fmt.Errorf("provider \"yandex\" service_account_key: %w", err)
			}
			key = v
		}
		return tofu.CloudCredentials(m.Cloud, environ(d.Getenv), key), nil
	}
	if d.SimulateMachines > 0 {
		acts.Simulate = &activities.SimulatedMachines{Apply: d.SimulateMachines, Destroy: d.SimulateMachines / 2, Job: d.SimulateJob}
	}
	return acts, nil
}

// openClouds gives the activities a client of each cloud MG/config.fly
// names a provider for: its machines' inventory by their labels, its runner
// identities, and power control where OpenTofu has none (Yandex); and
// where new runners' tokens go (activities.EggTokenRefs), whose Lockbox
// secrets the Yandex client finds. Clients authenticate as the worker and
// contact nothing until first used.
func openClouds(d Deps, acts *activities.Activities) error {
	getenv := d.Getenv
	if getenv == nil {
		getenv = os.LookupEnv
	}
	env := func(k string) string { v, _ := getenv(k); return v }
	dep := d.Agent.Deployment
	if dep == "" {
		dep = agentapi.DefaultDeployment
	}
	var yc *activities.YandexCloud
	lockbox := d.SecretsConfig.Backends[fly.SchemeLockbox]
	if p, ok := d.Providers[fly.CloudYandex]; ok || d.SecretsConfig.Backend == fly.SchemeLockbox {
		o := activities.YandexOptions{Auth: yandexauth.FromEnv(env), Deployment: dep, FolderID: p.FolderID, LockboxFolderID: lockbox.FolderID}
		if o.FolderID == "" {
			o.FolderID = lockbox.FolderID
		}
		if ref := p.ServiceAccountKey; !ref.IsZero() {
			o.Key = func(ctx context.Context) (string, error) { return d.Secrets.Resolve(ctx, ref) }
		}
		var err error
		if yc, err = activities.NewYandexCloud(o); err != nil {
			return err
		}
		if ok {
			acts.Inventories = append(acts.Inventories, yc)
			acts.Identities[fly.CloudYandex] = yc
			acts.Power[fly.CloudYandex] = yc
		}
	}
	if p, ok := d.Providers[fly.CloudAWS]; ok {
		ac, err := activities.NewAWSCloud(context.Background(), dep, p)
		if err != nil {
			return err
		}
		acts.Inventories = append(acts.Inventories, ac)
		acts.Identities[fly.CloudAWS] = ac
	}
	var lockboxSecret func(context.Context, string) (string, error)
	if yc != nil {
		lockboxSecret = yc.TokenSecretID
	}
	eggRef, err := activities.EggTokenRefs(d.SecretsConfig, dep, lockboxSecret)
	if err != nil {
		return fmt.Errorf("mothergoose.secrets: %w", err)
	}
	acts.EggTokenRef = eggRef
	return nil
}

// environ is the worker's environment as KEY=value entries, read through
// getenv when it is set (tests), else the process's.
func environ(getenv func(string) (string, bool)) []string {
	if getenv == nil {
		return os.Environ()
	}
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if v, ok := getenv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}
