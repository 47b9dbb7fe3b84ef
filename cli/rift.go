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
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/rift"
	"github.com/gosling-ci/gosling/internal/store"
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
	fl.StringVar(&opts.Nest, "nest", env("GOSLING_NEST", ""), "the Nest whose eggs' rift blocks to serve; its MG/config.fly configures the secret backends ($GOSLING_NEST)")
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
	fl.BoolVar(&opts.Secrets.Dev, "dev", false, "read secrets from the local store of `gosling dev`, as `gosling dev` does")
	fl.StringVar(&opts.Secrets.StateDir, "state-dir", devStateDir(f.Getenv), "state directory of `gosling dev` (its local secrets and default store)")
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
	keyring, err := rift.LoadOrCreateKeyring(opts.Dir)
	if err != nil {
		return err
	}
	eggs, err := rift.EggsFromNest(ctx, nest, res, keyring)
	if err != nil {
		return secretFailure(fmt.Errorf("read the eggs' rift secrets: %w", err))
	}
	if len(eggs) == 0 {
		return &CodeError{Code: ExitInvalidConfig, Err: fmt.Errorf("no egg in %s has an enabled rift block: add one, such as rift { cache = \"50GiB\" }, to an egg's config.fly", opts.Nest)}
	}
	dsn := opts.Store
	if dsn == "" {
		dsn = "sqlite://" + filepath.Join(opts.Secrets.StateDir, "gosling.db")
	}
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return fmt.Errorf("open the store: %w", err)
	}
	defer st.Close()
	cfg := rift.Config{
		Dir: opts.Dir, Eggs: eggs, Auth: &rift.StoreAuthenticator{Store: st, Secrets: res},
		Engines: map[string]string{}, Hosts: opts.Hosts, CertLifetime: opts.CertLifetime,
		S3Insecure: opts.S3Insecure, SweepInterval: opts.SweepInterval, Logger: log,
	}
	for name, sock := range map[string]string{"docker": opts.DockerSocket, "podman": opts.PodmanSocket, "nerdctl": opts.ContainerdSocket} {
		if sock == "" {
			continue
		}
		if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
			log.Warn("rift: the engine socket is not there yet", "engine", name, "socket", sock)
		}
		cfg.Engines[name] = sock
	}
	if len(cfg.Hosts) == 0 {
		cfg.Hosts = []string{"localhost", "127.0.0.1"}
		if h, err := os.Hostname(); err == nil && h != "" {
			cfg.Hosts = append([]string{h}, cfg.Hosts...)
		}
	}
	if opts.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return flagErrorf("--tls-cert/--tls-key: %v", err)
		}
		cfg.ServerCert = &c
	}
	srv, err := rift.New(ctx, cfg)
	if err != nil {
		return err
	}
	var l rift.Listeners
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, x := range []struct {
		flag, addr string
		dst        *net.Listener
	}{{"addr", opts.Addr, &l.Control}, {"s3-addr", opts.S3Addr, &l.S3}, {"mirror-addr", opts.MirrorAddr, &l.Mirror}, {"engine-addr", opts.EngineAddr, &l.Engine}} {
		if x.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", x.addr)
		if err != nil {
			return fmt.Errorf("--%s: %w", x.flag, err)
		}
		lns = append(lns, ln)
		*x.dst = ln
	}
	names := make([]string, len(eggs))
	for i, e := range eggs {
		names[i] = e.Name
	}
	fmt.Fprintf(opts.IO.ErrOut, "Rift serves %d egg(s) %v: control https://%s", len(eggs), names, l.Control.Addr())
	for _, x := range []struct {
		name string
		ln   net.Listener
	}{{"s3", l.S3}, {"mirror", l.Mirror}, {"engine", l.Engine}} {
		if x.ln != nil {
			fmt.Fprintf(opts.IO.ErrOut, ", %s %s", x.name, x.ln.Addr())
		}
	}
	fmt.Fprintln(opts.IO.ErrOut)
	err = srv.Serve(ctx, l)
	if ctx.Err() != nil && err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
