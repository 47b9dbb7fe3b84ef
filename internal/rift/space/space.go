// Package space keeps the books of Rift's per-egg disk space: every cached
// entry (a build-cache object or an image-mirror blob) with its size and
// last use, and evicts entries unused for longer than the egg's max_age and,
// past the egg's cache size, the least recently used first.
//
// A Space does not read or write entries itself: each store registers a
// Remover for its kind of entry and tells the Space when it writes, reads
// or finds an entry. Eviction runs on every write (Added) and in a loop
// (Run), against an injectable Clock so tests move time by hand.
package space

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Clock tells the time. Tests use a fake one.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Kinds of entry.
const (
	KindCache  = "cache"  // a build-cache object of the S3 endpoint
	KindMirror = "mirror" // a blob of the image mirror
)

// Eviction reasons, as the evictions metric labels them.
const (
	ReasonAge  = "age"
	ReasonSize = "size"
)

// Remover deletes one entry of its kind from disk. A missing entry is not
// an error.
type Remover func(key string) error

// Observer receives the figures the metrics export. Every method must be
// safe for concurrent use.
type Observer interface {
	Bytes(egg, kind string, n int64)
	Hit(egg, kind string)
	Miss(egg, kind string)
	Evicted(egg, kind, reason string, n int)
}

type nopObserver struct{}

func (nopObserver) Bytes(string, string, int64)         {}
func (nopObserver) Hit(string, string)                  {}
func (nopObserver) Miss(string, string)                 {}
func (nopObserver) Evicted(string, string, string, int) {}

// ErrTooLarge is returned by Reserve for an entry larger than the egg's
// whole budget.
var ErrTooLarge = errors.New("entry is larger than the egg's cache")

// Limits are an egg's budget (fly's rift.cache and rift.max_age).
type Limits struct {
	// MaxBytes bounds the bytes of all entries; zero means no bound.
	MaxBytes int64
	// MaxAge evicts entries unused for longer; zero means no bound.
	MaxAge time.Duration
}

type entryKey struct{ kind, key string }

type entry struct {
	size     int64
	lastUsed time.Time
}

// Space is one egg's books. It is safe for concurrent use.
type Space struct {
	egg    string
	clock  Clock
	obs    Observer
	log    *slog.Logger
	limits Limits

	mu       sync.Mutex
	entries  map[entryKey]*entry
	bytes    map[string]int64 // by kind
	total    int64
	removers map[string]Remover
}

// Options configure a Space; zero fields take defaults.
type Options struct {
	Clock    Clock
	Observer Observer
	Logger   *slog.Logger
}

// New returns the empty books of one egg.
func New(egg string, limits Limits, o Options) *Space {
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Space{
		egg: egg, clock: o.Clock, obs: o.Observer, log: o.Logger, limits: limits,
		entries: map[entryKey]*entry{}, bytes: map[string]int64{}, removers: map[string]Remover{},
	}
}

// Egg is the egg the books belong to.
func (s *Space) Egg() string { return s.egg }

// Limits returns the egg's budget.
func (s *Space) Limits() Limits { return s.limits }

// Now is the Space's clock.
func (s *Space) Now() time.Time { return s.clock.Now() }

// Register sets the Remover of a kind. Call it before entries of that kind
// are added.
func (s *Space) Register(kind string, rm Remover) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removers[kind] = rm
	s.obs.Bytes(s.egg, kind, s.bytes[kind])
}

// Load records an entry found on disk at start, last used at lastUsed,
// without evicting anything.
func (s *Space) Load(kind, key string, size int64, lastUsed time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(kind, key, size, lastUsed)
}

func (s *Space) put(kind, key string, size int64, at time.Time) {
	k := entryKey{kind, key}
	if old, ok := s.entries[k]; ok {
		s.bytes[kind] -= old.size
		s.total -= old.size
	}
	s.entries[k] = &entry{size: size, lastUsed: at}
	s.bytes[kind] += size
	s.total += size
	s.obs.Bytes(s.egg, kind, s.bytes[kind])
}

// Reserve checks, before a write of size bytes (negative: unknown), that
// the entry can fit the egg's budget at all.
func (s *Space) Reserve(size int64) error {
	if s.limits.MaxBytes > 0 && size > s.limits.MaxBytes {
		return fmt.Errorf("%d bytes for egg %s, whose cache holds %d: %w", size, s.egg, s.limits.MaxBytes, ErrTooLarge)
	}
	return nil
}

// Added records a written entry (replacing one of the same key) and then
// evicts what the budget no longer holds, never the entry just written.
func (s *Space) Added(ctx context.Context, kind, key string, size int64) {
	s.mu.Lock()
	s.put(kind, key, size, s.clock.Now())
	victims := s.plan(entryKey{kind, key})
	s.mu.Unlock()
	s.evict(ctx, victims)
}

// Used marks an entry read now: a hit. An unknown entry is recorded with
// the given size (a file written behind the Space's back, such as by the
// mirror's registry).
func (s *Space) Used(kind, key string, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := entryKey{kind, key}
	if e, ok := s.entries[k]; ok {
		e.lastUsed = s.clock.Now()
	} else if size >= 0 {
		s.put(kind, key, size, s.clock.Now())
	}
	s.obs.Hit(s.egg, kind)
}

// Missed counts a read that found nothing.
func (s *Space) Missed(kind string) { s.obs.Miss(s.egg, kind) }

// Removed forgets an entry deleted by its store (an S3 DELETE).
func (s *Space) Removed(kind, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(entryKey{kind, key})
}

func (s *Space) drop(k entryKey) {
	if e, ok := s.entries[k]; ok {
		delete(s.entries, k)
		s.bytes[k.kind] -= e.size
		s.total -= e.size
		s.obs.Bytes(s.egg, k.kind, s.bytes[k.kind])
	}
}

// Has tells whether the books hold an entry.
func (s *Space) Has(kind, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.entries[entryKey{kind, key}]
	return ok
}

// Bytes returns the bytes held by kind, or by all kinds when kind is "".
func (s *Space) Bytes(kind string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if kind == "" {
		return s.total
	}
	return s.bytes[kind]
}

type victim struct {
	entryKey
	entry
	reason string
}

// plan picks the entries to evict: first every entry unused for longer
// than MaxAge, then the least recently used until the total fits MaxBytes.
// keep is never picked. The books drop the victims at once, so a
// concurrent plan does not pick them again. Callers hold s.mu.
func (s *Space) plan(keep entryKey) []victim {
	now := s.clock.Now()
	var out []victim
	if s.limits.MaxAge > 0 {
		for k, e := range s.entries {
			if k != keep && now.Sub(e.lastUsed) > s.limits.MaxAge {
				out = append(out, victim{k, *e, ReasonAge})
			}
		}
	}
	for _, v := range out {
		s.drop(v.entryKey)
	}
	if s.limits.MaxBytes > 0 && s.total > s.limits.MaxBytes {
		keys := make([]entryKey, 0, len(s.entries))
		for k := range s.entries {
			if k != keep {
				keys = append(keys, k)
			}
		}
		sort.Slice(keys, func(i, j int) bool {
			a, b := s.entries[keys[i]], s.entries[keys[j]]
			if !a.lastUsed.Equal(b.lastUsed) {
				return a.lastUsed.Before(b.lastUsed)
			}
			return keys[i].key < keys[j].key
		})
		for _, k := range keys {
			if s.total <= s.limits.MaxBytes {
				break
			}
			out = append(out, victim{k, *s.entries[k], ReasonSize})
			s.drop(k)
		}
	}
	return out
}

func (s *Space) evict(ctx context.Context, victims []victim) int {
	counts := map[[2]string]int{}
	done := 0
	for _, v := range victims {
		s.mu.Lock()
		rm := s.removers[v.kind]
		s.mu.Unlock()
		if rm == nil {
			continue
		}
		if err := rm(v.key); err != nil {
			// Back on the books: the bytes are still on disk.
			s.log.WarnContext(ctx, "rift: cannot evict an entry", "egg", s.egg, "kind", v.kind, "key", v.key, "error", err)
			s.Load(v.kind, v.key, v.size, v.lastUsed)
			continue
		}
		counts[[2]string{v.kind, v.reason}]++
		done++
	}
	for k, n := range counts {
		s.obs.Evicted(s.egg, k[0], k[1], n)
	}
	return done
}

// Sweep evicts what the budget no longer holds, by age and then by size,
// and returns how many entries it evicted.
func (s *Space) Sweep(ctx context.Context) int {
	s.mu.Lock()
	victims := s.plan(entryKey{})
	s.mu.Unlock()
	return s.evict(ctx, victims)
}

// Run sweeps every interval until ctx ends.
func (s *Space) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sweep(ctx)
		}
	}
}

// FakeClock is a Clock that moves only when told to, for tests.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock returns a FakeClock showing t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{t: t} }

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
