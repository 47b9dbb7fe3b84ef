package activities

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
)

// Backend calls become secret-access records without values; repeated
// reads of a URI within the window are folded into one record.
func TestSecretAuditRecordsAccess(t *testing.T) {
	ctx := context.Background()
	st := openSQLiteStore(t)
	local, err := secretstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := secretstore.NewResolver(local)
	r.SetTTL(fly.SchemeLocal, 0) // every lookup reaches the backend
	audit := NewSecretAudit(st, "mothergoose", nil)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r.Observe(secretstore.AccessObserverFunc(func(ctx context.Context, e secretstore.AccessEvent) {
		e.At = now
		audit.SecretAccessed(ctx, e)
	}))
	const value = "glpat-audit-test-value"
	if _, err := r.Put(ctx, "local://gitlab/token", value); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := r.Resolve(ctx, "local://gitlab/token"); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = r.Resolve(secretstore.WithActor(ctx, "api"), "local://gitlab/missing")
	now = now.Add(2 * DefaultSecretAuditWindow)
	if _, err := r.Resolve(ctx, "local://gitlab/token"); err != nil {
		t.Fatal(err)
	}

	recs, err := st.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range recs {
		if a.Action != AuditSecretAccess {
			t.Errorf("action = %q", a.Action)
		}
		if strings.Contains(a.Reason, value) {
			t.Errorf("record holds the value: %q", a.Reason)
		}
		got = append(got, a.Actor+": "+a.Reason)
	}
	want := []string{
		"mothergoose: put local://gitlab/token: ok",
		"mothergoose: get local://gitlab/token: ok",
		"api: get local://gitlab/missing: failed: key not found in secret",
		"mothergoose: get local://gitlab/token: ok; 4 more reads since the last record",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
