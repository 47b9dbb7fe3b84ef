package cli

import (
	"log/slog"
	"os"

	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

// Factory holds what commands share: streams, the environment, a logger and
// the Masker of secret values.
type Factory struct {
	IO     *IOStreams
	Getenv func(string) (string, bool)
	Logger *slog.Logger
	// Masker holds every secret value the process has seen; Logger, IO.Out
	// and IO.ErrOut replace them with secretstore.Masked. Resolvers the
	// commands make register their values with it.
	Masker *secretstore.Masker
	// Version is the build's version string.
	Version string
}

// secretEnv are environment variables whose values are secrets: they are
// masked from the start, before any resolver reads one.
var secretEnv = []string{
	"GOSLING_GITLAB_TOKEN", "GOSLING_RUNNER_TOKEN",
	secrets.EnvVaultToken, "VAULT_APPROLE_SECRET_ID", secrets.EnvYCIAMToken,
	"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
}

// NewFactory returns the factory of a real process. Call Flush before the
// process exits.
func NewFactory(version string) *Factory {
	m := secretstore.NewMasker()
	for _, k := range secretEnv {
		if v, ok := os.LookupEnv(k); ok {
			m.Add(v)
		}
	}
	io := System()
	io.Mask(m)
	h := slog.NewTextHandler(io.ErrOut, &slog.HandlerOptions{Level: slog.LevelInfo})
	return &Factory{
		IO:      io,
		Getenv:  os.LookupEnv,
		Logger:  slog.New(secretstore.NewHandler(h, m)),
		Masker:  m,
		Version: version,
	}
}

// Flush writes what the masking streams hold back.
func (f *Factory) Flush() {
	_ = f.IO.Flush()
}
