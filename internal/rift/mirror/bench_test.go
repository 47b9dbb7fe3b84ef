package mirror_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/mirror"
	"github.com/gosling-ci/gosling/internal/rift/mirror/mirrortest"
	"github.com/gosling-ci/gosling/internal/rift/space"
)

// BenchmarkSecondPull pulls a one-layer image (32 MiB layer) through a
// fresh mirror twice per iteration and reports the second pull's time as
// a ratio to the first ("second/first"): the first goes to the upstream
// (a registry on loopback, so the ratio understates what a real network
// saves), the second is served from Rift's disk.
func BenchmarkSecondPull(b *testing.B) {
	up := mirrortest.Start(b, "", "")
	layer := make([]byte, 32<<20)
	rand.Read(layer)
	img := up.Push(b, http.DefaultClient, "", "", "library/big", "1", layer)
	var first, second time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sp := space.New("web", space.Limits{}, space.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		m, err := mirror.New(ctx, []mirror.Egg{{Name: "web", Dir: filepath.Join(b.TempDir(), "m"), Space: sp, Upstream: mirror.Upstream{URL: up.URL}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.Serve(w, r, "web") }))
		b.StartTimer()
		t0 := time.Now()
		mirrortest.Pull(b, http.DefaultClient, hs.URL, "library/big", "1", img)
		// The mirror commits the blob after the client has every byte.
		mirrortest.WaitFor(b, func() bool { return sp.Has(space.KindMirror, img.LayerDigest) })
		t1 := time.Now()
		mirrortest.Pull(b, http.DefaultClient, hs.URL, "library/big", "1", img)
		t2 := time.Now()
		first += t1.Sub(t0)
		second += t2.Sub(t1)
		b.StopTimer()
		hs.Close()
		cancel()
		b.StartTimer()
	}
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "first-ms")
	b.ReportMetric(float64(second.Milliseconds())/float64(b.N), "second-ms")
	b.ReportMetric(second.Seconds()/first.Seconds(), "second/first")
}
