package secretstore

import (
	"context"
	"fmt"

	"github.com/gosling-ci/gosling/fly"
)

// Check resolves every reference and returns one error naming each that
// is missing or inaccessible, so a deployment can stop before it makes
// anything.
func (r *Resolver) Check(ctx context.Context, refs ...fly.SecretRef) error {
	var errs []error
	seen := map[fly.SecretRef]bool{}
	for _, ref := range refs {
		if ref.IsZero() || seen[ref] {
			continue
		}
		seen[ref] = true
		if _, err := r.Resolve(ctx, ref); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return fmt.Errorf("%d secrets cannot be read: %w", len(errs), joinErrors(errs))
}

type joined []error

func joinErrors(errs []error) error { return joined(errs) }

func (j joined) Error() string {
	s := ""
	for i, e := range j {
		if i > 0 {
			s += "; "
		}
		s += e.Error()
	}
	return s
}

func (j joined) Unwrap() []error { return j }
