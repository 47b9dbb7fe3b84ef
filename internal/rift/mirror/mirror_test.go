package mirror_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/mirror"
	"github.com/gosling-ci/gosling/internal/rift/mirror/mirrortest"
	"github.com/gosling-ci/gosling/internal/rift/space"
)

type counts struct{ hits, misses, evicted int }

// recorder counts what the books report. The mirror reports after its
// handler returns, which may be after the client has read every byte.
type recorder struct {
	mu sync.Mutex
	c  counts
}

func (r *recorder) get() counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c
}

func (r *recorder) add(f func(*counts)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.c)
}

func (r *recorder) Bytes(string, string, int64)   {}
func (r *recorder) Hit(string, string)            { r.add(func(c *counts) { c.hits++ }) }
func (r *recorder) Miss(string, string)           { r.add(func(c *counts) { c.misses++ }) }
func (r *recorder) Evicted(_, _, _ string, n int) { r.add(func(c *counts) { c.evicted += n }) }

func TestPullThroughTwiceThenEvict(t *testing.T) {
	up := mirrortest.Start(t, "puller", "hub-password")
	layer := bytes.Repeat([]byte("layer bytes "), 50000)
	img := up.Push(t, http.DefaultClient, "puller", "hub-password", "library/tool", "1.0", layer)

	clock := space.NewFakeClock(time.Now())
	rec := &recorder{}
	sp := space.New("web", space.Limits{MaxAge: time.Hour}, space.Options{Clock: clock, Observer: rec})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := mirror.New(ctx, []mirror.Egg{{Name: "web", Dir: filepath.Join(t.TempDir(), "web"), Space: sp,
		Upstream: mirror.Upstream{URL: up.URL, Username: "puller", Password: "hub-password"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.Serve(w, r, "web") }))
	defer hs.Close()

	for i := 0; i < 2; i++ {
		if got := mirrortest.Pull(t, http.DefaultClient, hs.URL, "library/tool", "1.0", img); !bytes.Equal(got, layer) {
			t.Fatalf("pull %d: wrong layer", i)
		}
		// The client has every byte before the mirror's handler commits
		// the blob and returns: wait for it.
		mirrortest.WaitFor(t, func() bool { c := rec.get(); return c.hits+c.misses == 2*(i+1) })
	}
	if n := up.BlobGets(img.LayerDigest); n != 1 {
		t.Errorf("upstream served the layer %d times over two pulls; want 1", n)
	}
	if c := rec.get(); c.misses != 2 || c.hits != 2 {
		t.Errorf("hits %d, misses %d; want 2 and 2 (config and layer)", c.hits, c.misses)
	}
	if sp.Bytes(space.KindMirror) < int64(len(layer)) {
		t.Errorf("books hold %d bytes", sp.Bytes(space.KindMirror))
	}

	// Unused past max_age: evicted, and pulled from the upstream again.
	clock.Advance(2 * time.Hour)
	if n := sp.Sweep(ctx); n < 2 {
		t.Errorf("sweep evicted %d entries", n)
	}
	mirrortest.Pull(t, http.DefaultClient, hs.URL, "library/tool", "1.0", img)
	if n := up.BlobGets(img.LayerDigest); n != 2 {
		t.Errorf("after eviction the upstream served the layer %d times in all; want 2", n)
	}

	// Pushes are refused.
	resp, err := http.Post(hs.URL+"/v2/library/tool/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("push: %s", resp.Status)
	}
}
