package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/cli/app"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/rift"
	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/spf13/cobra"
)

// NewCmdRift builds `gosling rift`.
func NewCmdRift(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rift <command>",
		Short: "Run Rift: the build cache, image mirror and remote container engine for runners",
		Long: `Rift is an optional server beside the runners of the eggs whose rift block is
enabled. For each such egg it serves an S3-compatible bucket for
gitlab-runner's distributed cache, a pull-through image mirror (when the
rift block has a mirror block), and this machine's container engine over
mutual TLS, and evicts cached data by the egg's max_age and cache size.`,
	}
	cmd.AddCommand(NewCmdRiftServe(f, nil))
	return cmd
}

// RiftServeOptions are the inputs of `gosling rift serve`.
type RiftServeOptions struct {
	IO     *IOStreams
	Logger *slog.Logger
	Getenv func(string) (string, bool)

	Dir  string
	Nest string
	// Listener addresses; empty turns a service off (Addr cannot be).
	Addr, S3Addr, EngineAddr, MirrorAddr string
	TLSCert, TLSKey                      string
	Hosts                                []string
	CertLifetime                         time.Duration
	SweepInterval                        time.Duration
	S3Insecure                           bool
	DockerSocket                         string
	PodmanSocket                         string
	ContainerdSocket                     string
	// Store is MotherGoose's store, where runner tokens are checked.
	Store   string
	Secrets SecretsFlags
}

// NewCmdRiftServe builds `gosling rift serve`.
func NewCmdRiftServe(f *Factory, runF func(*RiftServeOptions) error) *cobra.Command {
	opts := &RiftServeOptions{IO: f.IO, Logger: f.Logger, Getenv: f.Getenv}
	opts.Secrets.Masker = f.Masker
	env := func(name, def string) string {
		if v, ok := f.Getenv(name); ok && v != "" {
			return v
		}
		return def
	}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the eggs' rift blocks until interrupted",
		Long: `Serve reads the Nest's eggs (--nest) and serves every egg whose rift block is
enabled, keeping its data under --dir:

  --addr         control API, HTTPS: GET /healthz, GET /metrics (Prometheus),
                 GET /rift/v1/ca, and for runners (Authorization: Bearer
                 <runner token>): POST /rift/v1/certificates (a CSR in, a
                 client certificate valid --cert-lifetime out) and
                 GET /rift/v1/eggs/<egg>/config (cache credentials, engine
                 and mirror addresses).
  --s3-addr      the build cache: an S3 endpoint, one bucket per egg (the
                 rift block's bucket, default the egg's name), for
                 gitlab-runner's [runners.cache] Type = "s3". Requests are
                 checked as AWS Signature Version 4, presigned or not, with
                 the egg's access_key/secret_key (or a pair Rift derives
                 from its keyring when the block names none).
  --mirror-addr  the image mirror (mutual TLS): a pull-through registry of
                 the rift block's mirror.upstream, per egg.
  --engine-addr  the remote engine (mutual TLS): the egg's rift.engine socket
                 (--docker-socket, --podman-socket or --containerd-socket).

Runner tokens are checked against MotherGoose's store (--store) and secret
backends (the Nest's MG/config.fly, or --dev): a token of another egg gets
403, one of an unknown or destroyed runner 401. Cached objects and mirror
blobs are evicted when unused for the egg's max_age, and least recently
used first past its cache size; see gosling_rift_cache_* on /metrics.

Without --tls-cert/--tls-key, Rift's own CA (in --dir/pki) issues the
server certificate for --host; runners then trust GET /rift/v1/ca.
An empty address turns that service off.

Exit status: 3 when the Nest or a flag is invalid, 4 when a secret cannot
be read for lack of credentials.`,
		Example: `  # On a machine with Docker, against a production store:
  gosling rift serve --nest ./nest --dir /var/lib/gosling-rift \
    --host rift.ci.example.com --store postgres://gosling@db/gosling \
    --docker-socket /var/run/docker.sock

  # Beside ` + "`gosling dev`" + `, with its local secrets and store, Podman's API:
  podman system service --time=0 unix:///tmp/podman.sock &
  gosling rift serve --nest examples/nest --dir .gosling/rift --dev \
    --podman-socket /tmp/podman.sock --docker-socket /tmp/podman.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Dir == "" {
				return flagErrorf("--dir is required: the directory Rift keeps its CA, caches and mirrors in")
			}
			if opts.Nest == "" {
				return flagErrorf("--nest is required: the Nest whose eggs' rift blocks Rift serves")
			}
			if (opts.TLSCert == "") != (opts.TLSKey == "") {
				return flagErrorf("--tls-cert and --tls-key go together")
			}
			if opts.Addr == "" {
				return flagErrorf("--addr cannot be empty: runners fetch their certificates and settings there")
			}
			if opts.CertLifetime < 10*time.Minute || opts.CertLifetime > 90*24*time.Hour {
				return flagErrorf("--cert-lifetime must be from 10m to 2160h (90 days); got %s", opts.CertLifetime)
			}
			if opts.SweepInterval < time.Second {
				return flagErrorf("--sweep-interval must be at least 1s; got %s", opts.SweepInterval)
			}
			opts.Secrets.Nest = opts.Nest
			if runF != nil {
				return runF(opts)
			}
			return riftServeRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Dir, "dir", env("GOSLING_RIFT_DIR", ""), "directory of Rift's CA, keyring, cache buckets and mirrors ($GOSLING_RIFT_DIR)")
	nestFlag(fl, &opts.Nest, f.Getenv, "the Nest whose eggs' rift blocks to serve; its MG/config.fly configures the secret backends", "")
	fl.StringVar(&opts.Addr, "addr", ":8443", "control API listener (HTTPS)")
	fl.StringVar(&opts.S3Addr, "s3-addr", ":9000", "S3 build cache listener (HTTPS, or HTTP with --s3-insecure); empty: off")
	fl.StringVar(&opts.MirrorAddr, "mirror-addr", ":5000", "image mirror listener (mutual TLS); empty: off")
	fl.StringVar(&opts.EngineAddr, "engine-addr", ":2376", "remote engine listener (mutual TLS); empty: off")
	fl.StringVar(&opts.TLSCert, "tls-cert", "", "PEM certificate (chain) of the control and S3 listeners; default: issued by Rift's CA for --host")
	fl.StringVar(&opts.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringSliceVar(&opts.Hosts, "host", nil, "DNS name or IP runners reach Rift by, repeatable; the first is the one runners are told (default: this machine's host name, localhost, 127.0.0.1)")
	fl.DurationVar(&opts.CertLifetime, "cert-lifetime", rift.DefaultCertLifetime, "lifetime of the client certificates runners get")
	fl.DurationVar(&opts.SweepInterval, "sweep-interval", rift.DefaultSweepInterval, "how often every egg's cache is checked against its max_age and size (writes are checked at once)")
	fl.BoolVar(&opts.S3Insecure, "s3-insecure", false, "serve S3 over plain HTTP (gitlab-runner's Insecure = true), for private networks")
	fl.StringVar(&opts.DockerSocket, "docker-socket", "", "Docker Engine API socket for eggs with engine = \"docker\" (such as /var/run/docker.sock)")
	fl.StringVar(&opts.PodmanSocket, "podman-socket", "", "Podman API socket for eggs with engine = \"podman\" (podman system service)")
	fl.StringVar(&opts.ContainerdSocket, "containerd-socket", "", "containerd socket for eggs with engine = \"nerdctl\" (such as /run/containerd/containerd.sock)")
	fl.StringVar(&opts.Store, "store", env("GOSLING_STORE", ""), "MotherGoose's store DSN, where runner tokens are checked (default: sqlite in --state-dir) ($GOSLING_STORE)")
	fl.BoolVar(&opts.Secrets.Dev, "dev", false, "read secrets from the local store of 'gosling dev', as it does")
	fl.StringVar(&opts.Secrets.StateDir, "state-dir", devStateDir(f.Getenv), "state directory of 'gosling dev' (its local secrets and default store)")
	return cmd
}

func riftServeRun(ctx context.Context, opts *RiftServeOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nest, diags := fly.LoadNest(opts.Nest, fly.Options{Getenv: opts.Getenv})
	if diags.HasErrors() {
		return &CodeError{Code: ExitInvalidConfig, Err: fmt.Errorf("the Nest in %s is invalid: run `gosling validate %s`", opts.Nest, opts.Nest)}
	}
	res, err := opts.Secrets.resolver(ctx, opts.Getenv)
	if err != nil {
		return err
	}
	if !nestHasRift(nest) {
		return &CodeError{Code: ExitInvalidConfig, Err: fmt.Errorf("no egg in %s has an enabled rift block: add one, such as rift { cache = \"50GiB\" }, to an egg's config.fly", opts.Nest)}
	}
	dsn := opts.Store
	if dsn == "" {
		dsn = "sqlite://" + filepath.Join(opts.Secrets.StateDir, "gosling.db")
	}
	// Built by the composition root, as the servers are: the store Rift
	// authenticates runners against, over the same secret resolver. Rift
	// never calls Temporal; a lazy client makes no connection.
	a, err := app.Open(ctx, app.Config{MotherGoose: mothergoose.Config{
		Nest: nest, StoreDSN: dsn, Secrets: res, LazyTemporal: true, Logger: log, Getenv: opts.Getenv,
	}})
	if err != nil {
		return fmt.Errorf("open the store: %w", err)
	}
	defer a.Close()
	st := a.MotherGoose.Store()
	p := riftParams{
		Nest: nest, Dir: opts.Dir, Secrets: res, Store: st, Logger: log,
		Addr: opts.Addr, S3Addr: opts.S3Addr, MirrorAddr: opts.MirrorAddr, EngineAddr: opts.EngineAddr,
		Engines: map[string]string{}, Hosts: opts.Hosts, CertLifetime: opts.CertLifetime,
		S3Insecure: opts.S3Insecure, SweepInterval: opts.SweepInterval,
	}
	for name, sock := range map[string]string{"docker": opts.DockerSocket, "podman": opts.PodmanSocket, "nerdctl": opts.ContainerdSocket} {
		if sock == "" {
			continue
		}
		if !isSocket(sock) {
			log.Warn("rift: the engine socket is not there yet", "engine", name, "socket", sock)
		}
		p.Engines[name] = sock
	}
	if len(p.Hosts) == 0 {
		p.Hosts = []string{"localhost", "127.0.0.1"}
		if h, err := os.Hostname(); err == nil && h != "" {
			p.Hosts = append([]string{h}, p.Hosts...)
		}
	}
	if opts.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return flagErrorf("--tls-cert/--tls-key: %v", err)
		}
		p.ServerCert = &c
	}
	r, err := openRift(ctx, p)
	if err != nil {
		return err
	}
	fmt.Fprintln(opts.IO.ErrOut, r.Summary())
	return r.Serve(ctx)
}

// riftParams are what `gosling rift serve` and `gosling dev` give Rift.
type riftParams struct {
	Nest    *fly.Nest
	Dir     string
	Secrets rift.SecretResolver
	// Store is MotherGoose's store, where runner tokens are checked.
	Store rift.RunnerStore
	// Listener addresses (host:port, port 0 for a free one); empty turns
	// a service off, except Addr.
	Addr, S3Addr, MirrorAddr, EngineAddr string
	Engines                              map[string]string
	Hosts                                []string
	ServerCert                           *tls.Certificate
	CertLifetime, SweepInterval          time.Duration
	S3Insecure                           bool
	Logger                               *slog.Logger
}

// runningRift is a Rift listening on its addresses, not yet serving.
type runningRift struct {
	srv  *rift.Server
	l    rift.Listeners
	lns  []net.Listener
	eggs []string
}

// nestHasRift tells whether an egg of the Nest has an enabled rift block.
func nestHasRift(n *fly.Nest) bool {
	for _, e := range n.Eggs {
		if e.Rift != nil && e.Rift.Enabled {
			return true
		}
	}
	return false
}

func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// openRift reads the eggs' rift blocks (resolving their secrets), opens
// Rift's directory and listens on p's addresses. Errors: ExitInvalidConfig
// when no egg has an enabled rift block, ExitAuth when a secret cannot be
// read, a plain error when an address is busy.
func openRift(ctx context.Context, p riftParams) (*runningRift, error) {
	keyring, err := rift.LoadOrCreateKeyring(p.Dir)
	if err != nil {
		return nil, err
	}
	eggs, err := rift.EggsFromNest(ctx, p.Nest, p.Secrets, keyring)
	if err != nil {
		return nil, secretFailure(fmt.Errorf("read the eggs' rift secrets: %w", err))
	}
	if len(eggs) == 0 {
		return nil, &CodeError{Code: ExitInvalidConfig, Err: errors.New("no egg has an enabled rift block: add one, such as rift { cache = \"50GiB\" }, to an egg's config.fly")}
	}
	srv, err := rift.New(ctx, rift.Config{
		Dir: p.Dir, Eggs: eggs, Auth: &rift.StoreAuthenticator{Store: p.Store, Secrets: p.Secrets},
		Engines: p.Engines, Hosts: p.Hosts, ServerCert: p.ServerCert, CertLifetime: p.CertLifetime,
		S3Insecure: p.S3Insecure, SweepInterval: p.SweepInterval, Logger: p.Logger,
	})
	if err != nil {
		return nil, err
	}
	r := &runningRift{srv: srv}
	for _, e := range eggs {
		r.eggs = append(r.eggs, e.Name)
	}
	for _, x := range []struct {
		flag, addr string
		dst        *net.Listener
	}{{"addr", p.Addr, &r.l.Control}, {"s3-addr", p.S3Addr, &r.l.S3}, {"mirror-addr", p.MirrorAddr, &r.l.Mirror}, {"engine-addr", p.EngineAddr, &r.l.Engine}} {
		if x.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", x.addr)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("--%s %s: %w", x.flag, x.addr, err)
		}
		r.lns = append(r.lns, ln)
		*x.dst = ln
	}
	if r.l.Control == nil {
		r.close()
		return nil, errors.New("rift: no control address: runners fetch their certificates and settings there")
	}
	return r, nil
}

func (r *runningRift) close() {
	for _, ln := range r.lns {
		ln.Close()
	}
}

// ControlURL is the control API's base URL, such as https://127.0.0.1:8443.
func (r *runningRift) ControlURL() string { return "https://" + r.l.Control.Addr().String() }

// CAPEM is Rift's CA certificate in PEM, which runners trust.
func (r *runningRift) CAPEM() string { return string(r.srv.CA().CertPEM()) }

// Summary is one line: the eggs served and each listener's address.
func (r *runningRift) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Rift serves %d egg(s) %v: control %s", len(r.eggs), r.eggs, r.ControlURL())
	for _, x := range []struct {
		name string
		ln   net.Listener
	}{{"s3", r.l.S3}, {"mirror", r.l.Mirror}, {"engine", r.l.Engine}} {
		if x.ln != nil {
			fmt.Fprintf(&b, ", %s %s", x.name, x.ln.Addr())
		}
	}
	return b.String()
}

// Serve serves until ctx ends and closes the listeners; an ended ctx is
// no error.
func (r *runningRift) Serve(ctx context.Context) error {
	defer r.close()
	err := r.srv.Serve(ctx, r.l)
	if errors.Is(err, context.Canceled) || ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}
