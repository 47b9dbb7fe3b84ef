package space_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/space"
)

type removed struct {
	mu   sync.Mutex
	keys []string
	fail map[string]bool
}

func (r *removed) rm(key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail[key] {
		return errors.New("disk says no")
	}
	r.keys = append(r.keys, key)
	return nil
}

type evictions struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *evictions) Bytes(string, string, int64) {}
func (e *evictions) Hit(string, string)          {}
func (e *evictions) Miss(string, string)         {}
func (e *evictions) Evicted(_, kind, reason string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n[kind+"/"+reason] += n
}

func TestSizeEvictsLeastRecentlyUsedAcrossKinds(t *testing.T) {
	ctx := context.Background()
	clock := space.NewFakeClock(time.Unix(1_700_000_000, 0))
	ev := &evictions{n: map[string]int{}}
	sp := space.New("web", space.Limits{MaxBytes: 300}, space.Options{Clock: clock, Observer: ev})
	rc, rm := &removed{}, &removed{}
	sp.Register(space.KindCache, rc.rm)
	sp.Register(space.KindMirror, rm.rm)

	sp.Added(ctx, space.KindCache, "a", 100)
	clock.Advance(time.Second)
	sp.Added(ctx, space.KindMirror, "m", 100)
	clock.Advance(time.Second)
	sp.Added(ctx, space.KindCache, "b", 100)
	clock.Advance(time.Second)
	sp.Used(space.KindCache, "a", 100) // a is now the most recently used
	clock.Advance(time.Second)
	sp.Added(ctx, space.KindCache, "c", 150) // 450 > 300: m (100) then b (100) go

	if len(rm.keys) != 1 || rm.keys[0] != "m" || len(rc.keys) != 1 || rc.keys[0] != "b" {
		t.Fatalf("evicted cache %v, mirror %v; want [b] and [m]", rc.keys, rm.keys)
	}
	if got := sp.Bytes(""); got != 250 {
		t.Errorf("total = %d; want 250", got)
	}
	if ev.n["mirror/size"] != 1 || ev.n["cache/size"] != 1 {
		t.Errorf("evictions = %v", ev.n)
	}
	// An entry larger than the whole budget is refused before it is written.
	if err := sp.Reserve(301); !errors.Is(err, space.ErrTooLarge) {
		t.Errorf("Reserve(301) = %v", err)
	}
}

func TestAgeEvictsUnusedEntries(t *testing.T) {
	ctx := context.Background()
	clock := space.NewFakeClock(time.Unix(1_700_000_000, 0))
	sp := space.New("web", space.Limits{MaxAge: time.Hour}, space.Options{Clock: clock})
	r := &removed{fail: map[string]bool{"stuck": true}}
	sp.Register(space.KindCache, r.rm)
	sp.Load(space.KindCache, "old", 10, clock.Now().Add(-2*time.Hour)) // found on disk at start
	sp.Added(ctx, space.KindCache, "fresh", 10)                        // a write evicts "old" at once
	if sp.Has(space.KindCache, "old") {
		t.Error("a write left an entry past max_age")
	}
	sp.Added(ctx, space.KindCache, "used", 10)
	sp.Added(ctx, space.KindCache, "stuck", 10)
	clock.Advance(50 * time.Minute)
	sp.Used(space.KindCache, "used", 10)
	clock.Advance(20 * time.Minute) // fresh and stuck are 70 minutes unused, used 20

	if n := sp.Sweep(ctx); n != 1 {
		t.Errorf("sweep evicted %d entries; want 1 (fresh; stuck cannot be removed)", n)
	}
	sort.Strings(r.keys)
	if len(r.keys) != 2 || r.keys[0] != "fresh" || r.keys[1] != "old" {
		t.Errorf("removed %v; want [fresh old]", r.keys)
	}
	// An entry whose removal failed stays on the books: its bytes are on disk.
	if !sp.Has(space.KindCache, "stuck") || !sp.Has(space.KindCache, "used") || sp.Bytes("") != 20 {
		t.Errorf("books after the sweep: stuck %v, used %v, %d bytes", sp.Has(space.KindCache, "stuck"), sp.Has(space.KindCache, "used"), sp.Bytes(""))
	}
}

func TestNoLimitsEvictNothing(t *testing.T) {
	ctx := context.Background()
	clock := space.NewFakeClock(time.Unix(0, 0))
	sp := space.New("web", space.Limits{}, space.Options{Clock: clock})
	r := &removed{}
	sp.Register(space.KindCache, r.rm)
	for _, k := range []string{"a", "b", "c"} {
		sp.Added(ctx, space.KindCache, k, 1<<40)
	}
	clock.Advance(1000 * time.Hour)
	if n := sp.Sweep(ctx); n != 0 || len(r.keys) != 0 {
		t.Errorf("evicted %d without limits", n)
	}
}
