package cli

import (
	"log/slog"
	"os"
)

// Factory holds what commands share: streams, the environment and a logger.
type Factory struct {
	IO     *IOStreams
	Getenv func(string) (string, bool)
	Logger *slog.Logger
	// Version is the build's version string.
	Version string
}

// NewFactory returns the factory of a real process.
func NewFactory(version string) *Factory {
	io := System()
	return &Factory{
		IO:      io,
		Getenv:  os.LookupEnv,
		Logger:  slog.New(slog.NewTextHandler(io.ErrOut, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Version: version,
	}
}
