package secretstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
)

// countingBackend serves vault:// from a map, counting reads; a read waits
// on gate when it is set.
type countingBackend struct {
	mu     sync.Mutex
	values map[string]string // URI -> value
	gets   atomic.Int64
	gate   chan struct{}
	fail   error
}

func (c *countingBackend) Scheme() string { return fly.SchemeVault }

func (c *countingBackend) Get(ctx context.Context, u fly.SecretURI) (string, error) {
	c.gets.Add(1)
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return "", c.fail
	}
	v, ok := c.values[u.String()]
	if !ok {
		return "", ErrNotFound
	}
	return v, nil
}

func (c *countingBackend) Put(_ context.Context, u fly.SecretURI, v string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.values[u.String()] = v
	return "1", nil
}

func (c *countingBackend) Delete(_ context.Context, u fly.SecretURI) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.values, u.String())
	return nil
}

func TestResolverCacheTTL(t *testing.T) {
	ctx := context.Background()
	b := &countingBackend{values: map[string]string{"vault://a/k": "value-one", "vault://a/k?version=1": "pinned-one"}}
	r := NewResolver(b)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	r.SetTTL("vault", time.Minute)
	for range 3 {
		if v, err := r.Resolve(ctx, "vault://a/k"); err != nil || v != "value-one" {
			t.Fatalf("resolve = %q, %v", v, err)
		}
	}
	if n := b.gets.Load(); n != 1 {
		t.Fatalf("backend reads = %d, want 1", n)
	}
	now = now.Add(61 * time.Second)
	_, _ = r.Resolve(ctx, "vault://a/k")
	if n := b.gets.Load(); n != 2 {
		t.Errorf("after the TTL: reads = %d, want 2", n)
	}
	// Pinned versions stay cached for ever.
	_, _ = r.Resolve(ctx, "vault://a/k?version=1")
	now = now.Add(1000 * time.Hour)
	if v, _ := r.Resolve(ctx, "vault://a/k?version=1"); v != "pinned-one" {
		t.Errorf("pinned = %q", v)
	}
	if n := b.gets.Load(); n != 3 {
		t.Errorf("pinned reads = %d, want 3 in all", n)
	}
	// A write drops the cached value at once.
	if _, err := r.Put(ctx, "vault://a/k", "value-two"); err != nil {
		t.Fatal(err)
	}
	if v, _ := r.Resolve(ctx, "vault://a/k"); v != "value-two" {
		t.Errorf("after put = %q", v)
	}
	_ = r.Delete(ctx, "vault://a/k")
	if _, err := r.Resolve(ctx, "vault://a/k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}

func TestResolverDefaultsAndConfig(t *testing.T) {
	r := NewResolver()
	if r.ttlOf("vault") != DefaultTTL {
		t.Errorf("default TTL = %v", r.ttlOf("vault"))
	}
	r.Configure(fly.Secrets{CacheTTL: fly.Duration(time.Minute), Backends: map[string]fly.SecretBackend{
		"aws-sm": {CacheTTL: fly.Duration(10 * time.Second)},
	}})
	if r.ttlOf("aws-sm") != 10*time.Second || r.ttlOf("vault") != time.Minute {
		t.Errorf("configured TTLs = %v, %v", r.ttlOf("aws-sm"), r.ttlOf("vault"))
	}
}

func TestResolverErrorsAreNotCached(t *testing.T) {
	ctx := context.Background()
	b := &countingBackend{values: map[string]string{}, fail: ErrThrottled}
	r := NewResolver(b)
	if _, err := r.Resolve(ctx, "vault://a/k"); !errors.Is(err, ErrThrottled) {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.fail = nil
	b.values["vault://a/k"] = "recovered"
	b.mu.Unlock()
	if v, err := r.Resolve(ctx, "vault://a/k"); err != nil || v != "recovered" {
		t.Errorf("after a failure = %q, %v", v, err)
	}
}

func TestResolverSingleFlight(t *testing.T) {
	b := &countingBackend{values: map[string]string{"vault://a/k": "shared-value"}, gate: make(chan struct{})}
	r := NewResolver(b)
	const n = 1000
	var wg sync.WaitGroup
	var bad atomic.Int64
	// The caller whose lookup goes to the backend gives up early: the
	// others, waiting on the same call, still get the value.
	quitter, cancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := r.Resolve(quitter, "vault://a/k"); !errors.Is(err, context.Canceled) {
			bad.Add(1)
		}
	}()
	for b.gets.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := r.Resolve(context.Background(), "vault://a/k"); err != nil || v != "shared-value" {
				bad.Add(1)
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	cancel()
	time.Sleep(10 * time.Millisecond)
	close(b.gate)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d lookups failed", bad.Load())
	}
	if g := b.gets.Load(); g != 1 {
		t.Errorf("backend reads = %d, want 1", g)
	}
}

func TestResolverWriteDuringRead(t *testing.T) {
	// A read that started before a write must not cache the old value.
	ctx := context.Background()
	b := &countingBackend{values: map[string]string{"vault://a/k": "old-value"}, gate: make(chan struct{})}
	r := NewResolver(b)
	done := make(chan string)
	go func() {
		v, _ := r.Resolve(ctx, "vault://a/k")
		done <- v
	}()
	for b.gets.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	b.mu.Lock()
	b.values["vault://a/k"] = "new-value"
	b.mu.Unlock()
	r.forget(fly.SecretURI{Scheme: "vault", Path: "a", Key: "k"})
	close(b.gate)
	<-done
	b.gate = nil
	if v, _ := r.Resolve(ctx, "vault://a/k"); v != "new-value" {
		t.Errorf("after a write during a read = %q", v)
	}
}

func TestResolverRegistersValues(t *testing.T) {
	ctx := context.Background()
	b := &countingBackend{values: map[string]string{"vault://a/k": "resolved-secret"}}
	r := NewResolver(b)
	m := NewMasker()
	r.SetMasker(m)
	_, _ = r.Resolve(ctx, "vault://a/k")
	_, _ = r.Put(ctx, "vault://a/w", "written-secret")
	if got := m.Mask("a resolved-secret and a written-secret"); got != "a [masked] and a [masked]" {
		t.Errorf("masked = %q", got)
	}
}
