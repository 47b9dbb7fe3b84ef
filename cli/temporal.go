package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// TemporalFlags are the connection settings shared by every command that
// talks to Temporal. Each flag has an environment variable of the same
// meaning (flags win).
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
	fs.StringVar(&t.Address, "temporal-address", env("GOSLING_TEMPORAL_ADDRESS", "localhost:7233"), "Temporal frontend host:port ($GOSLING_TEMPORAL_ADDRESS)")
	fs.StringVar(&t.Namespace, "temporal-namespace", env("GOSLING_TEMPORAL_NAMESPACE", "default"), "Temporal namespace ($GOSLING_TEMPORAL_NAMESPACE)")
	fs.BoolVar(&t.TLS, "temporal-tls", env("GOSLING_TEMPORAL_TLS", "") == "true", "connect with TLS ($GOSLING_TEMPORAL_TLS=true)")
	fs.StringVar(&t.CertFile, "temporal-tls-cert", env("GOSLING_TEMPORAL_TLS_CERT", ""), "client certificate for mTLS ($GOSLING_TEMPORAL_TLS_CERT)")
	fs.StringVar(&t.KeyFile, "temporal-tls-key", env("GOSLING_TEMPORAL_TLS_KEY", ""), "client key for mTLS ($GOSLING_TEMPORAL_TLS_KEY)")
	fs.StringVar(&t.CAFile, "temporal-tls-ca", env("GOSLING_TEMPORAL_TLS_CA", ""), "CA bundle to trust ($GOSLING_TEMPORAL_TLS_CA)")
	fs.StringVar(&t.APIKeyEnv, "temporal-api-key-env", "GOSLING_TEMPORAL_API_KEY", "environment variable holding a Temporal Cloud API key")
}

// Options builds client options; the API key is read from the environment
// so it never appears in a process listing.
func (t *TemporalFlags) Options(log *slog.Logger) (client.Options, error) {
	o := client.Options{HostPort: t.Address, Namespace: t.Namespace, Logger: tlog.NewStructuredLogger(log)}
	useTLS := t.TLS || t.CertFile != "" || t.CAFile != ""
	if key := os.Getenv(t.APIKeyEnv); key != "" {
		o.Credentials = client.NewAPIKeyStaticCredentials(key)
		useTLS = true
	}
	if !useTLS {
		return o, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return o, fmt.Errorf("load Temporal client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return o, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return o, fmt.Errorf("%s holds no PEM certificates", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	o.ConnectionOptions.TLS = cfg
	return o, nil
}

// Dial connects to Temporal with these flags.
func (t *TemporalFlags) Dial(ctx context.Context, log *slog.Logger) (client.Client, error) {
	co, err := t.Options(log)
	if err != nil {
		return nil, err
	}
	c, err := client.DialContext(ctx, co)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", t.Address, err)
	}
	return c, nil
}
