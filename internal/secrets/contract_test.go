package secrets_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

// faults are the failures a test server can be asked for.
type faults interface {
	// Deny refuses every request about the secret the URI path names.
	Deny(path string)
	// Throttle makes the next n requests fail as throttled.
	Throttle(n int)
}

// testContract runs what every cloud backend must do. base is a URI
// without its key, such as "aws-sm://ci/runner"; denied is another secret
// the server refuses; create, if set, makes a secret that a write cannot.
func testContract(t *testing.T, b secretstore.Backend, f faults, base, denied string, create func(path string)) {
	t.Helper()
	ctx := context.Background()
	r := secretstore.NewResolver(b)
	r.SetTTL(b.Scheme(), 0) // every lookup reaches the server
	const v1, v2 = "glrt-ContractFirstValue-111", "glrt-ContractSecondValue-222"
	ref := fly.SecretRef(base + "/token")
	check := func(err error, want error, what string) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s: error = %v, want %v", what, err, want)
		}
		var se *secretstore.Error
		if !errors.As(err, &se) || se.Scheme != b.Scheme() || !strings.Contains(err.Error(), se.URI) {
			t.Errorf("%s: %v is not a *secretstore.Error naming the URI and backend", what, err)
		}
		for _, v := range []string{v1, v2, "ContractFirst", "ContractSecond"} {
			if strings.Contains(err.Error(), v) {
				t.Errorf("%s: error %q holds the value", what, err)
			}
		}
	}

	_, err := r.Resolve(ctx, ref)
	check(err, secretstore.ErrNotFound, "missing secret")
	if create != nil {
		create(pathOf(t, base))
		create(pathOf(t, denied))
	}

	id1, err := r.Put(ctx, ref, v1)
	if err != nil || id1 == "" {
		t.Fatalf("put = %q, %v", id1, err)
	}
	if _, err := r.Put(ctx, fly.SecretRef(base+"/other"), "kept-with-the-token"); err != nil {
		t.Fatal(err)
	}
	id2, err := r.Put(ctx, ref, v2)
	if err != nil || id2 == id1 {
		t.Fatalf("second put = %q (first %q), %v", id2, id1, err)
	}
	if got, err := r.Resolve(ctx, ref); err != nil || got != v2 {
		t.Fatalf("resolve = %q, %v", got, err)
	}
	if got, err := r.Resolve(ctx, fly.SecretRef(base+"/other")); err != nil || got != "kept-with-the-token" {
		t.Errorf("other key after a write = %q, %v", got, err)
	}
	if got, err := r.Resolve(ctx, fly.SecretRef(base+"/token?version="+id1)); err != nil || got != v1 {
		t.Errorf("pinned %s = %q, %v", id1, got, err)
	}

	vs, err := r.Versions(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	current := ""
	for _, v := range vs {
		ids = append(ids, v.ID)
		if v.Current {
			current = v.ID
		}
	}
	if len(vs) < 2 || current != id2 || !contains(ids, id1) {
		t.Errorf("versions = %+v, want %s and current %s", vs, id1, id2)
	}

	id3, err := r.Rollback(ctx, ref, id1)
	if err != nil || id3 == id1 || id3 == id2 {
		t.Fatalf("rollback = %q, %v", id3, err)
	}
	if got, _ := r.Resolve(ctx, ref); got != v1 {
		t.Errorf("after rollback = %q", got)
	}

	_, err = r.Resolve(ctx, fly.SecretRef(base+"/missing"))
	check(err, secretstore.ErrKeyNotFound, "missing key")

	if err := r.Delete(ctx, ref); err != nil {
		t.Fatal(err)
	}
	_, err = r.Resolve(ctx, ref)
	check(err, secretstore.ErrKeyNotFound, "deleted key")
	if err := r.Delete(ctx, ref); err != nil {
		t.Errorf("second delete: %v", err)
	}

	f.Deny(pathOf(t, denied))
	_, err = r.Resolve(ctx, fly.SecretRef(denied+"/token"))
	check(err, secretstore.ErrPermission, "denied read")
	_, err = r.Put(ctx, fly.SecretRef(denied+"/token"), v1)
	check(err, secretstore.ErrPermission, "denied write")

	f.Throttle(1) // one throttled answer: the client retries
	if got, err := r.Resolve(ctx, fly.SecretRef(base+"/other")); err != nil || got != "kept-with-the-token" {
		t.Errorf("after one throttled answer = %q, %v", got, err)
	}
	f.Throttle(100)
	_, err = r.Resolve(ctx, fly.SecretRef(base+"/other"))
	check(err, secretstore.ErrThrottled, "throttled")
	f.Throttle(0)
}

func pathOf(t *testing.T, base string) string {
	u, err := fly.ParseSecretURI(base + "/k")
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
