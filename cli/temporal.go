package cli

import (
	"context"
	"log/slog"
	"os"

	"github.com/gosling-ci/gosling/fly"
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
}

func (t *TemporalFlags) register(fs *pflag.FlagSet, getenv func(string) (string, bool)) {
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

// Dial connects to Temporal with these flags.
func (t *TemporalFlags) Dial(ctx context.Context, log *slog.Logger) (client.Client, error) {
	return t.Connection().WithDefaults(fly.Temporal{}).Dial(ctx, nil, log, false)
}
