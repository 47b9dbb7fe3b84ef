package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/mothergoose"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/cli/app"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/apiclient"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/tofu"
	gworker "github.com/gosling-ci/gosling/worker"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// DevOptions are the inputs of `gosling dev`.
type DevOptions struct {
	IO       *IOStreams
	Logger   *slog.Logger
	Getenv   func(string) (string, bool)
	Nest     string
	StateDir string
	Vars     map[string]string

	APIAddr      string
	TemporalPort int
	UIPort       int
	GitLabAddr   string
	// GitLabURL, when set, uses a real GitLab instead of the test server;
	// its token comes from $GOSLING_GITLAB_TOKEN.
	GitLabURL string
	Temporal  string
	Tofu      string
	// GitLabRunner, when set, is the real gitlab-runner binary local
	// runners run; empty runs the stand-in.
	GitLabRunner string
	// AgentBinary is the agent local runners run: gosling-agent, or empty
	// for this gosling.
	AgentBinary string
	// Ready, when set, receives the dev state once everything runs (tests).
	Ready func(DevState)
	// Masker, shared with Logger, masks every secret the resolver reads.
	Masker *secretstore.Masker
}

// DevState is what a running `gosling dev` writes to STATE_DIR/dev.json, so
// `gosling dev simulate` and the CLI find it.
type DevState struct {
	APIURL     string `json:"api_url"`
	APIToken   string `json:"api_token"`
	TemporalUI string `json:"temporal_ui"`
	Temporal   string `json:"temporal"`
	GitLabURL  string `json:"gitlab_url"`
	GitLabTest bool   `json:"gitlab_test_server"`
	MetricsURL string `json:"metrics_url"`
	// GitLabRunner is the gitlab-runner local runners run: --gitlab-runner,
	// or the stand-in's wrapper script.
	GitLabRunner string `json:"gitlab_runner"`
	// RealGitLabRunner says GitLabRunner is a real gitlab-runner.
	RealGitLabRunner bool `json:"real_gitlab_runner,omitempty"`
	// RiftURL is the control API of the Rift started for the eggs with a
	// rift block (empty: none has one); Rift describes its listeners.
	RiftURL   string `json:"rift_url,omitempty"`
	Rift      string `json:"rift,omitempty"`
	Nest      string `json:"nest"`
	StateDir  string `json:"state_dir"`
	PID       int    `json:"pid"`
	StartedAt string `json:"started_at"`
	// WebhookSecrets are the webhook secrets of the dev eggs, by egg: send
	// them as X-Gitlab-Token (development only: dev.json is mode 0600).
	WebhookSecrets map[string]string `json:"webhook_secrets"`
	// Projects are the GitLab test server's IDs of the eggs' projects, by
	// path: what a Job Hook sent by hand names as project_id.
	Projects    map[string]int64 `json:"projects,omitempty"`
	GitLabToken string           `json:"-"`
}

// NewCmdDev builds `gosling dev`.
func NewCmdDev(f *Factory, runF func(*DevOptions) error) *cobra.Command {
	opts := &DevOptions{IO: f.IO, Logger: f.Logger, Getenv: f.Getenv, Masker: f.Masker}
	var vars []string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything on this machine: Temporal, API, worker, SQLite, local runners",
		Long: `Dev runs the whole of Gosling on one machine, the embedded default:

  - a Temporal dev server (bin/temporal) with its Web UI
  - the MotherGoose API (webhooks, REST, /metrics)
  - a MotherGoose worker, and an UglyFox worker with its policy and
    reconciliation schedules from UF/config.fly
  - the SQLite store and the local secret store under --state-dir
  - the local provider: runners are gosling agent processes made and
    destroyed by real tofu apply / destroy (bin/tofu)
  - a GitLab TEST SERVER (not a real GitLab) loaded with the Nest's projects
  - Rift, when an egg has an enabled rift block: its control API and S3
    build cache on free 127.0.0.1 ports, data under --state-dir/rift; those
    eggs' runners keep their job caches there (Shared = true)

The Nest's eggs keep their names, projects, shapes and pool limits; their
GitLab becomes the test server, their runners run locally, and every secret
URI resolves from the local encrypted store, seeded with generated values.
State survives a restart: Ctrl-C stops everything, the next run resumes.

To use a real GitLab instead, pass --gitlab-url and put an API token (scope
api, create_runner) in $GOSLING_GITLAB_TOKEN; webhooks must reach --api-addr.

Local runners are gosling agents supervising the gitlab-runner STAND-IN
(current gitlab-runner releases cannot be built here), which takes jobs from
the GitLab test server through GitLab's runner API, fetches their commits
and runs their scripts; --gitlab-runner bin/gitlab-runner runs them on the
real GitLab Runner 12.8 that scripts/tools.sh builds instead (make run
passes it when bin/gitlab-runner is there).

Send a job through the whole loop, or a pipeline:

  gosling dev simulate job --egg web-app
  gosling dev pipeline .gitlab-ci.yml --egg web-app`,
		Example: `  gosling dev --nest examples/nest
  gosling dev --nest . --api-addr 127.0.0.1:9090 --state-dir /tmp/gosling
  GOSLING_GITLAB_TOKEN=glpat-... gosling dev --nest . --gitlab-url https://gitlab.example.com`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Vars, err = parseVars(vars); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return devRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	nestFlag(fl, &opts.Nest, f.Getenv, "the Nest to run", "")
	stateDir := defaultDevState
	if v, ok := f.Getenv(envDevState); ok && v != "" {
		stateDir = v
	}
	fl.StringVar(&opts.StateDir, "state-dir", stateDir, "where state is kept across runs ($"+envDevState+"); other commands find a running dev by it")
	fl.StringVar(&opts.APIAddr, "api-addr", "127.0.0.1:8080", "address of the MotherGoose API")
	fl.IntVar(&opts.TemporalPort, "temporal-port", 7233, "port of the Temporal dev server")
	fl.IntVar(&opts.UIPort, "ui-port", 8233, "port of the Temporal Web UI")
	fl.StringVar(&opts.GitLabAddr, "gitlab-addr", "127.0.0.1:8929", "address of the GitLab test server")
	fl.StringVar(&opts.GitLabURL, "gitlab-url", "", "use this real GitLab instead of the test server (token in $GOSLING_GITLAB_TOKEN)")
	fl.StringVar(&opts.Temporal, "temporal", "", "Temporal CLI binary (default: bin/temporal beside gosling, then PATH)")
	fl.StringVar(&opts.Tofu, "tofu", "", "OpenTofu binary (default: bin/tofu beside gosling, then PATH)")
	fl.StringVar(&opts.GitLabRunner, "gitlab-runner", "", "run local runners on this real gitlab-runner (such as bin/gitlab-runner, which scripts/tools.sh builds) instead of the stand-in")
	fl.StringVar(&opts.AgentBinary, "agent-binary", "", "the agent binary local runners run: gosling-agent (cmd/gosling-agent), lighter and quicker to start (default: this gosling)")
	fl.StringArrayVar(&vars, "var", nil, "set a Nest variable: --var name=value (repeatable)")
	cmd.AddCommand(NewCmdDevSimulate(f))
	cmd.AddCommand(NewCmdDevPipeline(f, nil))
	cmd.AddCommand(NewCmdDevGitLabRunner(f))
	cmd.AddCommand(NewCmdDevInterrupt(f, nil))
	return cmd
}

func listenOn(addr, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s is not free (%v): choose another with --%s", addr, err, flag)
	}
	return ln, nil
}

func devRun(ctx context.Context, opts *DevOptions) error {
	log := opts.Logger
	out := opts.IO.ErrOut
	nest, diags := fly.LoadNest(opts.Nest, fly.Options{Vars: opts.Vars, Getenv: opts.Getenv})
	if diags.HasErrors() {
		_ = fly.WriteText(out, diags.Diagnostics, diags.Files, opts.IO.StderrTTY)
		return errSilent(ExitInvalidConfig)
	}
	stateDir, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return err
	}
	temporalBin, err := findTool(opts.Temporal, "temporal")
	if err != nil {
		return err
	}
	tofuBin, err := findTool(opts.Tofu, "tofu")
	if err != nil {
		return err
	}

	// Ports first: a busy one is a clear error before anything starts.
	apiLn, err := listenOn(opts.APIAddr, "api-addr")
	if err != nil {
		return err
	}
	defer apiLn.Close()
	for _, p := range []struct {
		port int
		flag string
	}{{opts.TemporalPort, "temporal-port"}, {opts.UIPort, "ui-port"}} {
		ln, err := listenOn(fmt.Sprintf("127.0.0.1:%d", p.port), p.flag)
		if err != nil {
			return err
		}
		ln.Close()
	}
	apiURL := "http://" + apiLn.Addr().String()

	// The state directory only once the Nest and the ports are fine: a
	// start that fails leaves nothing behind.
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}

	// GitLab: the test server, restored from its snapshot, or a real one.
	nestDir, _ := filepath.Abs(opts.Nest)
	state := DevState{APIURL: apiURL, Nest: nestDir, StateDir: stateDir, PID: os.Getpid(), StartedAt: time.Now().UTC().Format(time.RFC3339)}
	var gl *gitlabtest.Server
	var glHost string
	insecure := true
	snapPath := filepath.Join(stateDir, "gitlab-test-server.json")
	if opts.GitLabURL == "" {
		glLn, err := listenOn(opts.GitLabAddr, "gitlab-addr")
		if err != nil {
			return err
		}
		// Repositories directories that killed runs left in the
		// temporary directory go; this run's goes when it stops.
		if removed, err := gitlabtest.RemoveStaleRepositories(); err != nil {
			log.Warn("remove the GitLab test server's stale repositories", "removed", removed, "error", err)
		}
		gl = gitlabtest.NewServer(gitlabtest.WithBaseURL("http://" + glLn.Addr().String()))
		defer gl.Close()
		if b, err := os.ReadFile(snapPath); err == nil {
			if err := gl.Restore(b); err != nil {
				return err
			}
		}
		loadTestProjects(gl, nest)
		// Written as it changes, so a killed run resumes with its
		// runners' tokens, pipelines and jobs.
		go persistTestServer(ctx, gl, snapPath, log)
		// Runners long-poll jobs/request for up to 50 seconds.
		srv := &http.Server{Handler: gl.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
		go func() { _ = srv.Serve(glLn) }()
		defer srv.Close()
		state.GitLabURL, state.GitLabTest, state.GitLabToken = "http://"+glLn.Addr().String(), true, gl.Token()
		state.Projects = map[string]int64{}
		for _, e := range nest.Eggs {
			for _, p := range testProjectsOf(gl, e) {
				state.Projects[p.PathWithNamespace] = p.ID
			}
		}
		glHost = glLn.Addr().String()
	} else {
		u, err := url.Parse(opts.GitLabURL)
		if err != nil || u.Host == "" {
			return flagErrorf("--gitlab-url %q: give the instance's base URL, such as https://gitlab.example.com", opts.GitLabURL)
		}
		token, ok := opts.Getenv("GOSLING_GITLAB_TOKEN")
		if !ok || token == "" {
			return flagErrorf("--gitlab-url needs an API token in $GOSLING_GITLAB_TOKEN (scopes api, create_runner)")
		}
		state.GitLabURL, state.GitLabToken = opts.GitLabURL, token
		glHost, insecure = u.Host, u.Scheme == "http"
	}
	dev := devNest(nest, glHost, insecure, stateDir)

	// Secrets: every URI of the Nest resolves from the local store.
	local, err := secretstore.OpenLocal(filepath.Join(stateDir, "secrets"))
	if err != nil {
		return err
	}
	resolver := secretstore.NewResolver(secretstore.DevBackends(local)...)
	if opts.Masker != nil {
		resolver.SetMasker(opts.Masker)
	}
	if err := seedDevSecrets(ctx, resolver, dev, state.GitLabToken); err != nil {
		return fmt.Errorf("seed development secrets: %w", err)
	}
	if toks := dev.MotherGoose.APIGateway.Auth.Tokens; len(toks) > 0 {
		state.APIToken, _ = resolver.Resolve(ctx, toks[0])
	} else {
		ref := fly.SecretRef("local://dev/api_token")
		if v, err := resolver.Resolve(ctx, ref); err == nil {
			state.APIToken = v
		} else {
			state.APIToken = "dev-api-token-" + randomHex(12)
			if _, err := resolver.Put(ctx, ref, state.APIToken); err != nil {
				return err
			}
		}
		dev.MotherGoose.APIGateway.Auth.Tokens = []fly.SecretRef{ref}
	}

	// Temporal dev server, with its Web UI, persisted in the state dir.
	fmt.Fprintf(out, "gosling dev: starting the Temporal dev server (%s)\n", temporalBin)
	tlogf, err := os.OpenFile(filepath.Join(stateDir, "temporal.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer tlogf.Close()
	hostPort := fmt.Sprintf("127.0.0.1:%d", opts.TemporalPort)
	tsrv, err := startDevTemporal(context.WithoutCancel(ctx), devTemporalOptions{
		Binary: temporalBin, HostPort: hostPort, UIPort: opts.UIPort, DBFile: filepath.Join(stateDir, "temporal.db"), Log: tlogf,
		Client: client.Options{Logger: tlog.NewStructuredLogger(log)},
	})
	if err != nil {
		return fmt.Errorf("start the Temporal dev server: %w (its log: %s)", err, tlogf.Name())
	}
	defer tsrv.stop()
	tc := tsrv.Client()
	state.Temporal = hostPort
	state.TemporalUI = fmt.Sprintf("http://127.0.0.1:%d", opts.UIPort)

	// MotherGoose, its workers and its API: the composition root that
	// builds gosling server and gosling worker (app.Open), given the
	// dev-only parts above.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// Local runners run --gitlab-runner under their agents, or else the
	// gitlab-runner STAND-IN, through a wrapper named gitlab-runner.
	runnerBin := opts.GitLabRunner
	if runnerBin != "" {
		if runnerBin, err = filepath.Abs(runnerBin); err != nil {
			return err
		}
		if _, err := exec.LookPath(runnerBin); err != nil {
			return flagErrorf("--gitlab-runner %s: %v (scripts/tools.sh gitlab-runner builds one into bin/)", opts.GitLabRunner, err)
		}
		state.RealGitLabRunner = true
	} else if runnerBin, err = runnerstandin.WriteWrapper(filepath.Join(stateDir, "bin"), self); err != nil {
		return err
	}
	state.GitLabRunner = runnerBin
	agentBin, err := agentBinary(opts.AgentBinary)
	if err != nil {
		return err
	}
	// The simulation endpoints are served beside the API; they need the
	// MotherGoose the API is built on, so they are bound once it is.
	var simHandler atomic.Pointer[http.Handler]
	extra := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*simHandler.Load()).ServeHTTP(w, r) })
	riftDone := make(chan error, 1)
	a, err := app.Open(ctx, app.Config{
		MotherGoose: mothergoose.Config{
			Nest: dev, Vars: opts.Vars, StoreDSN: "sqlite://" + filepath.Join(stateDir, "gosling.db"),
			Secrets: resolver, Temporal: tc, Logger: log, Getenv: opts.Getenv,
			// Sweeps keep each project's hook pointing here.
			WebhookURL: apiURL + "/webhooks/gitlab",
			// The Nest is reloaded from its directory on a push to the
			// Nest repository: the files being edited here are the ones
			// to run.
			FetchNest: func(ctx context.Context, _ string) (*fly.Nest, string, error) {
				n, d := fly.LoadNest(opts.Nest, fly.Options{Vars: opts.Vars, Getenv: opts.Getenv})
				if d.HasErrors() {
					var buf bytes.Buffer
					_ = fly.WriteText(&buf, d.Diagnostics, d.Files, false)
					return nil, "", &mothergoose.InvalidNestError{Commit: "the working tree of " + opts.Nest, Diagnostics: buf.String()}
				}
				return devNest(n, glHost, insecure, stateDir), "", nil
			},
		},
		AuditQueue: contract.TaskQueueMotherGoose,
		Activities: func(ctx context.Context, mg *mothergoose.MotherGoose) (gworker.Deps, error) {
			agentSettings := activities.AgentSettings{Binary: agentBin, GitLabRunner: runnerBin, SecretsDir: local.Dir(), DevSecrets: true, HeartbeatSeconds: 5, APIURL: apiURL,
				Deployment: deploymentName(dev, opts.Getenv)}
			// Rift, for the eggs with a rift block: their runners' cache
			// points at it; other eggs' runners are untouched.
			if nestHasRift(dev) {
				rf, err := openRift(ctx, devRiftParams(dev, stateDir, resolver, mg.Store(), log))
				if err != nil {
					return gworker.Deps{}, fmt.Errorf("start Rift: %w", err)
				}
				if err := saveRiftAddrs(filepath.Join(stateDir, "rift"), rf); err != nil {
					log.Warn("keep Rift's addresses for the next run", "error", err)
				}
				go func() { riftDone <- rf.Serve(ctx) }()
				agentSettings.RiftURL, agentSettings.RiftCA = rf.ControlURL(), rf.CAPEM()
				state.RiftURL, state.Rift = rf.ControlURL(), rf.Summary()
			} else {
				close(riftDone)
			}
			return gworker.Deps{Tofu: tofuBin, StateDir: stateDir, Agent: agentSettings}, nil
		},
		Queues: gworker.Queues,
		API:    &api.Config{APITokens: dev.MotherGoose.APIGateway.Auth.Tokens, Extra: extra, ExtraPrefix: "/dev/"},
	})
	if err != nil {
		return err
	}
	defer a.Close()
	mg, st, ex, srv := a.MotherGoose, a.MotherGoose.Store(), a.Activities.Tofu, a.API
	apic, err := apiclient.New(apiURL, state.APIToken)
	if err != nil {
		return err
	}
	sim := &simulator{gl: gl, store: st, nest: mg.Nest, auth: api.NewAuthorizer(mg.SecretCache(), dev.MotherGoose.APIGateway.Auth.Tokens), api: apic}
	h := sim.handler()
	simHandler.Store(&h)
	if err := a.Start(); err != nil {
		return err
	}
	resumeMachines(ctx, st, ex, agentBin, log)

	state.MetricsURL = apiURL + "/metrics"
	if gl != nil {
		registerHooks(ctx, gl, state.GitLabURL, dev, resolver, apiURL+"/webhooks/gitlab", log)
	}
	state.WebhookSecrets = webhookSecrets(ctx, resolver, dev)
	go mg.RunOutbox(ctx)
	// Pools start with the Nest (Nadir minimums are made ahead of demand),
	// and UglyFox's schedules follow UF/config.fly.
	if res, err := mg.NestSync().ApplyNest(ctx, dev, "", "gosling dev start"); err != nil {
		log.Warn("apply the Nest", "error", err)
	} else if len(res.Warnings) > 0 {
		log.Warn("the Nest was applied with warnings", "warnings", res.Warnings)
	}
	serveErr := make(chan error, 1)
	go func() {
		hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
		}()
		if err := hs.Serve(apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
		close(serveErr)
	}()

	// The banner goes out before dev.json, which is what other commands
	// (and scripts) wait for: once dev.json exists, the banner is whole.
	printDevBanner(opts.IO, state, dev)
	b, _ := json.MarshalIndent(state, "", "  ")
	if err := os.WriteFile(filepath.Join(stateDir, "dev.json"), b, 0o600); err != nil {
		return err
	}
	// Commands run from other directories find this dev by its
	// registration file.
	unregister, err := registerDev(opts.Getenv, stateDir)
	if err != nil {
		log.Warn("commands run elsewhere will not find this dev: name its state directory with $"+envDevState, "error", err)
		unregister = func() {}
	}
	defer unregister()
	if opts.Ready != nil {
		opts.Ready(state)
	}
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "\ngosling dev: stopping (state kept in "+stateDir+"; run again to resume)")
	stopMachines(st, ex, log)
	if err := <-riftDone; err != nil {
		log.Warn("rift stopped with an error", "error", err)
	}
	if gl != nil {
		if b, err := gl.Snapshot(); err == nil {
			_ = writeFileAtomic(snapPath, b)
		}
	}
	_ = os.Remove(filepath.Join(stateDir, "dev.json"))
	return nil
}

func printDevBanner(io *IOStreams, s DevState, n *fly.Nest) {
	w := io.Out
	fmt.Fprintf(w, "\nGosling is running on this machine (the embedded default).\n\n")
	fmt.Fprintf(w, "  API            %s   (its token is in %s/dev.json)\n", s.APIURL, s.StateDir)
	fmt.Fprintf(w, "  Webhooks       %s/webhooks/gitlab\n", s.APIURL)
	fmt.Fprintf(w, "  Metrics        %s\n", s.MetricsURL)
	fmt.Fprintf(w, "  Temporal UI    %s   (frontend %s)\n", s.TemporalUI, s.Temporal)
	if s.GitLabTest {
		fmt.Fprintf(w, "  GitLab         %s   GITLAB TEST SERVER, not a real GitLab\n", s.GitLabURL)
	} else {
		fmt.Fprintf(w, "  GitLab         %s\n", s.GitLabURL)
	}
	switch {
	case s.RealGitLabRunner:
		fmt.Fprintf(w, "  gitlab-runner  %s\n", s.GitLabRunner)
	case s.GitLabRunner != "":
		fmt.Fprintf(w, "  gitlab-runner  %s   GITLAB-RUNNER STAND-IN, not the real gitlab-runner\n", s.GitLabRunner)
	}
	if s.RiftURL != "" {
		fmt.Fprintf(w, "  Rift           %s   (%s)\n", s.RiftURL, s.Rift)
	}
	fmt.Fprintf(w, "  State          %s\n\n", s.StateDir)
	fmt.Fprintf(w, "Eggs:")
	for _, e := range n.Eggs {
		fmt.Fprintf(w, " %s", e.Name)
	}
	fmt.Fprintf(w, "\n\nTry it, in another terminal:\n")
	if len(n.Eggs) > 0 {
		fmt.Fprintf(w, "  bin/gosling dev simulate job --egg %s      # a job through the whole loop\n", n.Eggs[0].Name)
		fmt.Fprintf(w, "  bin/gosling dev pipeline FILE --egg %s     # a .gitlab-ci.yml's pipeline\n", n.Eggs[0].Name)
	}
	fmt.Fprintf(w, "  bin/gosling runners list                       # the CLI finds this dev run by itself\n")
	if len(s.Projects) > 0 {
		paths := slices.Sorted(maps.Keys(s.Projects))
		fmt.Fprintf(w, "\nProjects in the GitLab test server (their IDs are what hooks name):\n")
		for _, p := range paths {
			fmt.Fprintf(w, "  %-28s id %d\n", p, s.Projects[p])
		}
	}
	fmt.Fprintf(w, "\nWebhook secrets and project IDs (development only) are in %s/dev.json; a hook by hand\n", s.StateDir)
	fmt.Fprintf(w, "(the README's \"a hook can be sent by hand\"; examples/hooks/job-hook.json is a pending Job Hook):\n")
	if egg, project, ok := hookExample(n, s.Projects); ok {
		fmt.Fprintf(w, "  jq '.project_id = %d | .project.id = %d' examples/hooks/job-hook.json > job-hook.json\n", project, project)
		fmt.Fprintf(w, "  curl -H 'X-Gitlab-Event: Job Hook' -H \"X-Gitlab-Token: $(jq -r '.webhook_secrets[\"%s\"]' %s/dev.json)\" \\\n", egg, s.StateDir)
		fmt.Fprintf(w, "       -H 'X-Gitlab-Instance: %s' --data @job-hook.json %s/webhooks/gitlab\n", s.GitLabURL, s.APIURL)
	}
	fmt.Fprintf(w, "\nA real GitLab instead: GOSLING_GITLAB_TOKEN=<token> bin/gosling dev --gitlab-url https://gitlab.example.com\n")
	fmt.Fprintf(w, "Ctrl-C stops everything; the next run resumes from %s.\n", s.StateDir)
}

// hookExamplePath is the project of examples/hooks/job-hook.json.
const hookExamplePath = "acme/web-app"

// hookExample is the egg and test-server project ID the banner's hand-sent
// hook uses: the shipped payload's project when an egg serves it, else the
// first egg's first project.
func hookExample(n *fly.Nest, projects map[string]int64) (egg string, id int64, ok bool) {
	for _, e := range n.Eggs {
		for _, p := range e.Projects {
			if p.Path == hookExamplePath && projects[p.Path] != 0 {
				return e.Name, projects[p.Path], true
			}
		}
	}
	for _, e := range n.Eggs {
		for _, p := range e.Projects {
			if id := projects[p.Path]; id != 0 {
				return e.Name, id, true
			}
		}
	}
	return "", 0, false
}

// webhookSecrets resolves each dev egg's webhook secret, for dev.json.
func webhookSecrets(ctx context.Context, r *secretstore.Resolver, n *fly.Nest) map[string]string {
	out := map[string]string{}
	for _, e := range n.Eggs {
		if v, err := r.Resolve(ctx, e.GitLab.WebhookSecret); err == nil {
			out[e.Name] = v
		}
	}
	return out
}

// findTool is the program a flag names, else bin/NAME beside the gosling
// binary, else NAME in PATH.
func findTool(flag, name string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no %s binary beside gosling or in PATH: run `make tools` or pass --%s", name, name)
}

// registerHooks adds, in the GitLab test server, a project hook per project
// pointing at the API, as `gosling deploy` does on a real GitLab.
func registerHooks(ctx context.Context, gl *gitlabtest.Server, glURL string, n *fly.Nest, r *secretstore.Resolver, hookURL string, log *slog.Logger) {
	c, err := gitlab.New(glURL, gl.Token())
	if err != nil {
		return
	}
	for _, e := range n.Eggs {
		secret, err := r.Resolve(ctx, e.GitLab.WebhookSecret)
		if err != nil {
			continue
		}
		for _, p := range testProjectsOf(gl, e) {
			exists := false
			for _, h := range gl.Hooks(p.ID) {
				exists = exists || h.URL == hookURL
			}
			if exists {
				continue
			}
			if _, err := c.AddProjectHook(ctx, p.ID, gitlab.HookSpec{URL: hookURL, Token: secret, JobEvents: true, PipelineEvents: true, PushEvents: true}); err != nil {
				log.Warn("add project hook", "project", p.PathWithNamespace, "error", err)
			}
		}
	}
}

// testProjectsOf returns the test server's projects an egg serves.
func testProjectsOf(gl *gitlabtest.Server, e fly.Egg) []gitlabtest.Project {
	var out []gitlabtest.Project
	for _, ref := range e.Projects {
		if ref.Path != "" {
			if p, ok := gl.ProjectByPath(ref.Path); ok {
				out = append(out, p)
			}
			continue
		}
		if p, ok := gl.ProjectByID(ref.ID); ok {
			out = append(out, p)
		}
	}
	if e.Group != nil {
		out = append(out, gl.ProjectsOfGroup(e.Group.ID)...)
	}
	return out
}

// persistSpacing is how often the GitLab test server's state is written
// when it changed.
const persistSpacing = 250 * time.Millisecond

// persistTestServer writes the test server's state to path whenever it
// changed, until ctx ends: at most persistSpacing of it is lost when
// gosling dev is killed.
func persistTestServer(ctx context.Context, gl *gitlabtest.Server, path string, log *slog.Logger) {
	var last []byte
	t := time.NewTicker(persistSpacing)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := gl.Snapshot()
		if err != nil || bytes.Equal(b, last) {
			continue
		}
		if err := writeFileAtomic(path, b); err != nil {
			log.Warn("write the GitLab test server's state", "error", err)
			continue
		}
		last = b
	}
}

// writeFileAtomic replaces path with b (mode 0600) through a rename, so a
// reader, or a killed writer, never leaves half a file.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// resumeMachines boots the machines of runners that were in service when
// the last run stopped, like starting VMs again: Apex runners run, Nadir
// (dormant) runners are booted and stopped again, so a restart keeps the
// pools as they were. A machine still running (gosling dev was killed,
// its machines were not) is left as it is. stopMachines ends them.
func resumeMachines(ctx context.Context, st store.Store, ex *tofu.Executor, self string, log *slog.Logger) {
	rs, err := st.ListRunners(ctx, store.RunnerFilter{States: []store.RunnerState{store.StateActive, store.StateRegistering, store.StateDraining, store.StateDormant}})
	if err != nil {
		return
	}
	for _, r := range rs {
		dir := activities.MachineDir(ex.StateDir(), r.ID)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		if r.State == store.StateDormant {
			if agent.Inspect(dir).Alive {
				continue
			}
			err = agent.Power(self, dir, agentapi.PowerRunning, nil)
			if err == nil {
				err = agent.Power(self, dir, agentapi.PowerStopped, nil)
			}
		} else {
			err = agent.Power(self, dir, agentapi.PowerRunning, nil)
		}
		if err != nil {
			log.Warn("resume machine", "runner", r.ID, "state", r.State, "error", err)
		}
	}
}

func stopMachines(st store.Store, ex *tofu.Executor, log *slog.Logger) {
	ws, err := ex.Workspaces()
	if err != nil {
		return
	}
	for _, w := range ws {
		dir := activities.MachineDir(ex.StateDir(), w.Name)
		if err := agent.Stop(dir, 5*time.Second); err != nil {
			log.Warn("stop machine", "runner", w.Name, "error", err)
		}
	}
}
