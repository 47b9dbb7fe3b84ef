package secretstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
)

type recorder struct {
	mu     sync.Mutex
	events []AccessEvent
}

func (r *recorder) SecretAccessed(_ context.Context, e AccessEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) ops() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		s := e.Op + " " + e.URI + " " + e.Actor
		if !e.OK() {
			s += " failed"
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

// Only calls that reach a backend are reported, with who made them and
// whether they worked, and never the value.
func TestObserveReportsBackendCalls(t *testing.T) {
	local, err := OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := NewResolver(local)
	rec := &recorder{}
	r.Observe(rec)
	ctx := WithActor(context.Background(), "mothergoose")
	const value = "s3cret-value-for-the-observer"
	ref := fly.SecretRef("local://ci/token")

	if _, err := r.Put(ctx, ref, value); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := r.Resolve(ctx, ref); err != nil || v != value {
				t.Errorf("resolve = %v", err)
			}
		}()
	}
	wg.Wait()
	if _, err := r.Resolve(context.Background(), "local://ci/missing"); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if err := r.Delete(ctx, ref); err != nil {
		t.Fatal(err)
	}
	want := "put local://ci/token mothergoose; get local://ci/token mothergoose; get local://ci/missing  failed; delete local://ci/token mothergoose"
	if got := rec.ops(); got != want {
		t.Errorf("events:\n got %s\nwant %s", got, want)
	}
	for _, e := range rec.events {
		if e.At.IsZero() || e.Scheme != fly.SchemeLocal || e.Duration < 0 {
			t.Errorf("event %+v lacks a time or scheme, or has a negative duration", e)
		}
		if e.Err != nil && strings.Contains(e.Err.Error(), value) {
			t.Errorf("event error holds the value")
		}
	}
}

// Wrapping keeps what a backend can do: versions still list.
func TestObserveKeepsVersions(t *testing.T) {
	local, err := OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := NewResolver(local, &countingBackend{values: map[string]string{}})
	rec := &recorder{}
	r.Observe(rec)
	ctx := context.Background()
	for _, v := range []string{"first-value", "second-value"} {
		if _, err := r.Put(ctx, "local://ci/token", v); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := r.Versions(ctx, "local://ci/token")
	if err != nil || len(vs) != 2 {
		t.Fatalf("versions = %+v, %v", vs, err)
	}
	if _, err := r.Versions(ctx, "vault://ci/token"); !errors.Is(err, ErrNoVersions) {
		t.Fatalf("a backend without versions: %v", err)
	}
	if got := rec.ops(); got != "put local://ci/token ; put local://ci/token ; versions local://ci/token " {
		t.Errorf("events = %s", got)
	}
}

func TestAccessEventResult(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ResultOK},
		{fmt.Errorf("get local://ci/x: %w", ErrNotFound), ResultNotFound},
		{fmt.Errorf("get local://ci/x: %w", ErrKeyNotFound), ResultNotFound},
		{ErrVersion, ResultNotFound},
		{fmt.Errorf("lockbox: %w", ErrPermission), ResultDenied},
		{ErrReadOnlyPath, ResultDenied},
		{fmt.Errorf("vault login: %w", ErrAuth), ResultAuth},
		{ErrThrottled, ResultThrottled},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), ResultCanceled},
		{errors.New("dial tcp: connection refused"), ResultError},
	} {
		if got := (AccessEvent{Err: tc.err}).Result(); got != tc.want {
			t.Errorf("Result(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// The reported duration spans the backend call.
func TestObserveMeasuresTheCall(t *testing.T) {
	clock := []time.Time{time.Unix(100, 0), time.Unix(100, int64(250*time.Millisecond))}
	rec := &recorder{}
	ob := observed{inner: &countingBackend{values: map[string]string{"vault://ci/token": "v"}}, obs: rec, now: func() time.Time {
		now := clock[0]
		clock = clock[1:]
		return now
	}}
	u, err := fly.ParseSecretURI("vault://ci/token")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = ob.Get(context.Background(), u)
	if len(rec.events) != 1 || rec.events[0].Duration != 250*time.Millisecond || !rec.events[0].At.Equal(time.Unix(100, int64(250*time.Millisecond))) {
		t.Errorf("events = %+v", rec.events)
	}
}
