package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

// EnvRunnerToken, when set, is the runner token, mounted by the platform
// (Serverless Containers from Lockbox, ECS from Secrets Manager).
const EnvRunnerToken = "GOSLING_RUNNER_TOKEN"

// tokenSource reads the runner token and the runner's secret variables
// through one resolver over the backends the configuration names, kept for
// the agent's life and emptied before every read that must see a new
// version. Every value it reads is given to the masker.
type tokenSource struct {
	key    string
	r      *secretstore.Resolver
	masker *secretstore.Masker
	getenv func(string) (string, bool)
}

func (s *tokenSource) resolver(ctx context.Context, cfg agentapi.Config) (*secretstore.Resolver, error) {
	key := fmt.Sprintf("%s\x00%t", cfg.SecretsDir, cfg.DevSecrets)
	if cfg.Secrets != nil {
		key += fmt.Sprintf("\x00%v", *cfg.Secrets)
	}
	if s.r != nil && s.key == key {
		return s.r, nil
	}
	var r *secretstore.Resolver
	if cfg.Secrets != nil {
		var err error
		r, err = secretstore.OpenMachine(*cfg.Secrets, secretstore.MachineOptions{LocalDir: cfg.SecretsDir, Getenv: s.getenv, Masker: s.masker})
		if err != nil {
			return nil, fmt.Errorf("open the secret backends: %w", err)
		}
	} else {
		// The local provider's machines read the local store only: no
		// cloud backend is ever asked.
		r = secretstore.NewResolver()
		if s.masker != nil {
			r.SetMasker(s.masker)
		}
		if cfg.SecretsDir != "" {
			l, err := secretstore.OpenLocal(cfg.SecretsDir)
			if err != nil {
				return nil, err
			}
			backends := []secretstore.Backend{l}
			if cfg.DevSecrets {
				backends = secretstore.DevBackends(l)
			}
			for _, b := range backends {
				r.Register(b)
			}
		}
	}
	s.r, s.key = r, key
	return r, nil
}

// current purges the cache and returns the token with the version it is:
// the current version is looked up first and then read pinned, so value
// and version always belong together, even while a rotation writes.
func (s *tokenSource) current(ctx context.Context, cfg agentapi.Config) (token, version string, err error) {
	if s.getenv != nil {
		if t, ok := s.getenv(EnvRunnerToken); ok && t != "" {
			s.masker.Add(t)
			return t, "", nil
		}
	} else if t := os.Getenv(EnvRunnerToken); t != "" {
		s.masker.Add(t)
		return t, "", nil
	}
	r, err := s.resolver(ctx, cfg)
	if err != nil {
		return "", "", err
	}
	r.Purge()
	ref := fly.SecretRef(cfg.TokenRef)
	u, err := ref.Parse()
	if err == nil && u.Version == "" {
		// A backend that lists no versions (or forbids listing) still
		// resolves the current value; its version is then unknown.
		if vs, verr := r.Versions(ctx, ref); verr == nil {
			for _, v := range vs {
				if v.Current {
					u.Version = v.ID
				}
			}
		}
		if u.Version != "" {
			ref = fly.SecretRef(u.String())
		}
	}
	token, err = r.Resolve(ctx, ref)
	if err != nil {
		return "", "", err
	}
	s.masker.Add(token)
	return token, u.Version, nil
}

// credential reads the machine's agent credential (Config.AgentRef), what
// the agent authenticates MotherGoose's API with.
func (s *tokenSource) credential(ctx context.Context, cfg agentapi.Config) (string, error) {
	if cfg.AgentRef == "" {
		return "", errors.New("no agent credential: the configuration names no agent_ref")
	}
	r, err := s.resolver(ctx, cfg)
	if err != nil {
		return "", err
	}
	c, err := r.Resolve(ctx, fly.SecretRef(cfg.AgentRef))
	if err != nil {
		return "", fmt.Errorf("read the agent credential: %w", err)
	}
	s.masker.Add(c)
	return c, nil
}

// environment resolves the runner's variables into config.toml's
// environment lines ("KEY=value", sorted by key). A secret that cannot be
// read fails the whole: a job must not run without what it needs.
func (s *tokenSource) environment(ctx context.Context, cfg agentapi.Config) ([]string, error) {
	if len(cfg.Runner.Env) == 0 {
		return nil, nil
	}
	r, err := s.resolver(ctx, cfg)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(cfg.Runner.Env))
	for k := range cfg.Runner.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		v := cfg.Runner.Env[k]
		value := v.Value
		if !v.Secret.IsZero() {
			value, err = r.Resolve(ctx, v.Secret)
			if err != nil {
				return nil, fmt.Errorf("runner.env.%s: %w", k, err)
			}
			s.masker.Add(value)
			if t := strings.TrimSpace(value); t != value {
				s.masker.Add(t)
			}
		}
		out = append(out, k+"="+value)
	}
	return out, nil
}
