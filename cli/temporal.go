package cli

import (
	"context"
	"log/slog"
	"os"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
)

// TemporalFlags are the connection settings shared by every command that
// talks to Temporal. Each flag has an environment variable of the same
// meaning (flags win); for servers and workers, what neither sets comes
// from MG/config.fly's temporal block, then from Temporal's defaults
// (localhost:7233, namespace default).
type TemporalFlags struct {
	Address   string
	Namespace string
	TLS       bool
	CertFile  string
	KeyFile   string
	CAFile    string
	// APIKeyEnv names the environment variable holding a Temporal Cloud API key.
	APIKeyEnv string
	// Nest, for commands that only talk to Temporal, is a Nest directory
	// whose MG/config.fly temporal block gives what flags and environment
	// leave unset; its secrets block resolves a temporal.api_key URI.
	Nest string

	getenv func(string) (string, bool)
}

// registerClient registers the flags and --nest ($GOSLING_NEST), for
// commands that talk to Temporal without loading a Nest of their own.
func (t *TemporalFlags) registerClient(fs *pflag.FlagSet, getenv func(string) (string, bool)) {
	t.register(fs, getenv)
	nestFlag(fs, &t.Nest, getenv, "read the Temporal connection's defaults from this Nest's MG/config.fly", "the flags, $GOSLING_TEMPORAL_*, else localhost:7233")
}

func (t *TemporalFlags) register(fs *pflag.FlagSet, getenv func(string) (string, bool)) {
	t.getenv = getenv
	env := func(name, def string) string {
		if v, ok := getenv(name); ok && v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&t.Address, "temporal-address", env("GOSLING_TEMPORAL_ADDRESS", ""), "Temporal frontend host:port (default: MG temporal.address, else localhost:7233) ($GOSLING_TEMPORAL_ADDRESS)")
	fs.StringVar(&t.Namespace, "temporal-namespace", env("GOSLING_TEMPORAL_NAMESPACE", ""), "Temporal namespace (default: MG temporal.namespace, else default) ($GOSLING_TEMPORAL_NAMESPACE)")
	fs.BoolVar(&t.TLS, "temporal-tls", env("GOSLING_TEMPORAL_TLS", "") == "true", "connect with TLS ($GOSLING_TEMPORAL_TLS=true)")
	fs.StringVar(&t.CertFile, "temporal-tls-cert", env("GOSLING_TEMPORAL_TLS_CERT", ""), "client certificate for mTLS ($GOSLING_TEMPORAL_TLS_CERT)")
	fs.StringVar(&t.KeyFile, "temporal-tls-key", env("GOSLING_TEMPORAL_TLS_KEY", ""), "client key for mTLS ($GOSLING_TEMPORAL_TLS_KEY)")
	fs.StringVar(&t.CAFile, "temporal-tls-ca", env("GOSLING_TEMPORAL_TLS_CA", ""), "CA bundle to trust ($GOSLING_TEMPORAL_TLS_CA)")
	fs.StringVar(&t.APIKeyEnv, "temporal-api-key-env", "GOSLING_TEMPORAL_API_KEY", "environment variable holding a Temporal Cloud API key (else MG temporal.api_key, a secret URI)")
}

// Connection is the connection these flags describe; the API key is read
// from the environment so it never appears in a process listing.
func (t *TemporalFlags) Connection() mothergoose.TemporalConnection {
	return mothergoose.TemporalConnection{
		Address: t.Address, Namespace: t.Namespace, TLS: t.TLS,
		CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile,
		APIKeyValue: os.Getenv(t.APIKeyEnv),
	}
}

// Dial connects to Temporal with these flags. Where they give no address,
// a running `gosling dev` of the same Nest (or of any, without --nest) is
// found by its dev.json, as the API commands find its API; otherwise what
// the flags leave unset comes from t.Nest's MG/config.fly temporal block,
// whose API key (a secret URI) is then resolved. An address the flags give
// that is not the Nest's is another Temporal: none of the block's
// settings, its API key least of all, apply to it. An invalid Nest is exit
// code 3.
func (t *TemporalFlags) Dial(ctx context.Context, log *slog.Logger) (client.Client, error) {
	getenv := t.getenv
	if getenv == nil {
		getenv = os.LookupEnv
	}
	conn, mgTemporal, err := t.connection(getenv)
	if err != nil {
		return nil, err
	}
	var res *secretstore.Resolver
	if !mgTemporal.APIKey.IsZero() && conn.APIKeyValue == "" {
		sf := SecretsFlags{Nest: t.Nest, StateDir: devStateDir(getenv)}
		if res, err = sf.resolver(ctx, getenv); err != nil {
			return nil, err
		}
	}
	return conn.WithDefaults(mgTemporal).Dial(ctx, res, log, false)
}

// connection is what Dial connects with: the flags' connection and the
// temporal block whose settings fill what they leave unset.
func (t *TemporalFlags) connection(getenv func(string) (string, bool)) (mothergoose.TemporalConnection, fly.Temporal, error) {
	conn := t.Connection()
	if conn.Address == "" {
		if st, ok := runningDev(getenv); ok && st.Temporal != "" && (t.Nest == "" || sameDir(t.Nest, st.Nest)) {
			conn.Address = st.Temporal
			return conn, fly.Temporal{}, nil
		}
	}
	if t.Nest == "" {
		return conn, fly.Temporal{}, nil
	}
	nest, err := loadNest(t.Nest, nil, getenv, nil)
	if err != nil {
		return conn, fly.Temporal{}, err
	}
	mgTemporal := nest.MotherGoose.Temporal
	if conn.Address != "" && conn.Address != mgTemporal.Address {
		mgTemporal = fly.Temporal{}
	}
	return conn, mgTemporal, nil
}

// runningDev is the dev.json of a `gosling dev` whose process still runs.
func runningDev(getenv func(string) (string, bool)) (DevState, bool) {
	st, err := readDevState(devStateDir(getenv))
	if err != nil || !processRuns(st.PID) {
		return DevState{}, false
	}
	return st, true
}

// sameDir tells whether two paths name one directory.
func sameDir(a, b string) bool {
	ia, err1 := os.Stat(a)
	ib, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(ia, ib)
}
