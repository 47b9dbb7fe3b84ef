package mothergoose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// TemporalConnection says how to reach Temporal. Empty fields take the MG
// block's temporal values (address, namespace, tls, api_key).
type TemporalConnection struct {
	// Address is the frontend's host:port (default localhost:7233).
	Address string `json:"address"`
	// Namespace defaults to "default".
	Namespace string `json:"namespace"`
	// TLS connects with TLS (implied by a CA, a client certificate or an
	// API key).
	TLS bool `json:"tls"`
	// CertFile and KeyFile are a client certificate for mutual TLS, CAFile
	// a CA bundle to trust instead of the system's.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	CAFile   string `json:"ca_file,omitempty"`
	// APIKey is a secret URI holding a Temporal Cloud API key, resolved
	// when dialling. APIKeyValue, when set, is the key itself (read from
	// the environment by the CLI; never printed).
	APIKey      fly.SecretRef `json:"api_key,omitempty"`
	APIKeyValue string        `json:"-"`
}

func (c TemporalConnection) withDefaults(mg fly.Temporal) TemporalConnection {
	if c.Address == "" {
		c.Address = mg.Address
	}
	if c.Address == "" {
		c.Address = "localhost:7233"
	}
	if c.Namespace == "" {
		c.Namespace = mg.Namespace
	}
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	c.TLS = c.TLS || mg.TLS
	if c.APIKey.IsZero() {
		c.APIKey = mg.APIKey
	}
	return c
}

// WithDefaults fills the empty fields from the MG block's temporal block,
// then from Temporal's defaults (localhost:7233, namespace default).
func (c TemporalConnection) WithDefaults(mg fly.Temporal) TemporalConnection {
	return c.withDefaults(mg)
}

// ClientOptions builds the SDK's client options; the API key, when set as
// a URI, is resolved through res.
func (c TemporalConnection) ClientOptions(ctx context.Context, res *secretstore.Resolver, log *slog.Logger) (client.Options, error) {
	o := client.Options{HostPort: c.Address, Namespace: c.Namespace, Logger: tlog.NewStructuredLogger(log)}
	useTLS := c.TLS || c.CertFile != "" || c.CAFile != ""
	key := c.APIKeyValue
	if key == "" && !c.APIKey.IsZero() {
		if res == nil {
			return o, fmt.Errorf("temporal api_key %s: no secret resolver", c.APIKey)
		}
		v, err := res.Resolve(ctx, c.APIKey)
		if err != nil {
			return o, fmt.Errorf("temporal api_key: %w", err)
		}
		key = v
	}
	if key != "" {
		o.Credentials = client.NewAPIKeyStaticCredentials(key)
		useTLS = true
	}
	if !useTLS {
		return o, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return o, fmt.Errorf("load the Temporal client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return o, fmt.Errorf("read the Temporal CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return o, fmt.Errorf("%s holds no PEM certificates", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	o.ConnectionOptions.TLS = cfg
	return o, nil
}

// Dial connects to Temporal. A lazy client connects on its first call, so
// a process can start while Temporal is down; otherwise Dial fails when
// Temporal cannot be reached, naming the address.
func (c TemporalConnection) Dial(ctx context.Context, res *secretstore.Resolver, log *slog.Logger, lazy bool) (client.Client, error) {
	o, err := c.ClientOptions(ctx, res, log)
	if err != nil {
		return nil, err
	}
	var tc client.Client
	if lazy {
		tc, err = client.NewLazyClient(o)
	} else {
		tc, err = client.DialContext(ctx, o)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w", c.Address, c.Namespace, err)
	}
	return tc, nil
}

// StoreConfigError is a database block that cannot be turned into a store:
// At says where the block is (file:line:column).
type StoreConfigError struct {
	At  string
	Err error
}

func (e *StoreConfigError) Error() string {
	where := "MG/config.fly"
	if e.At != "" {
		where = e.At
	}
	return fmt.Sprintf("%s: mothergoose.%v", where, e.Err)
}

func (e *StoreConfigError) Unwrap() error { return e.Err }

// StoreDSN is the store DSN the MG block's database names (see
// store.DSNFromDatabase); a block that names none is a *StoreConfigError
// that points at it. The DSN may hold a password: never log it.
func StoreDSN(ctx context.Context, mg fly.MotherGoose, res *secretstore.Resolver) (string, error) {
	dsn, err := store.DSNFromDatabase(ctx, mg.Database, res.Resolve)
	if err != nil {
		return "", &StoreConfigError{At: mg.Database.At, Err: err}
	}
	return dsn, nil
}
