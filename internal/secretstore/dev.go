package secretstore

import (
	"context"

	"github.com/gosling-ci/gosling/fly"
)

// devScheme serves one scheme from the local backend, for the embedded
// development setup: every yc-lockbox://, aws-sm:// and vault:// URI of a
// Nest resolves from the local encrypted file, under the scheme's name,
// so a Nest written for a cloud runs unchanged on one machine. NOT FOR
// PRODUCTION.
type devScheme struct {
	scheme string
	local  *Local
}

// DevBackends returns backends for every scheme, all kept in local.
func DevBackends(local *Local) []Backend {
	out := []Backend{local}
	for _, s := range fly.SecretSchemes {
		if s != fly.SchemeLocal {
			out = append(out, devScheme{scheme: s, local: local})
		}
	}
	return out
}

func (d devScheme) Scheme() string { return d.scheme }

func (d devScheme) under(u fly.SecretURI) fly.SecretURI {
	u.Path = d.scheme + "/" + u.Path
	return u
}

func (d devScheme) Get(ctx context.Context, u fly.SecretURI) (string, error) {
	return d.local.Get(ctx, d.under(u))
}

func (d devScheme) Put(ctx context.Context, u fly.SecretURI, value string) (string, error) {
	return d.local.Put(ctx, d.under(u), value)
}

func (d devScheme) Delete(ctx context.Context, u fly.SecretURI) error {
	return d.local.Delete(ctx, d.under(u))
}

func (d devScheme) ListVersions(ctx context.Context, u fly.SecretURI) ([]Version, error) {
	return d.local.ListVersions(ctx, d.under(u))
}
