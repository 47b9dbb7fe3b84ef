package secrets_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secrets/awssmtest"
	"github.com/gosling-ci/gosling/internal/secrets/vaulttest"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

// benchBackend is one backend against its test server, with a secret at
// ref and a counter of the server's reads.
type benchBackend struct {
	name    string
	backend secretstore.Backend
	ref     fly.SecretRef
	reads   func() int
}

func benchBackends(b *testing.B) []benchBackend {
	b.Helper()
	ctx := context.Background()
	aws := awssmtest.New(b)
	vs := vaulttest.New("root-token")
	b.Cleanup(vs.Close)
	vb, err := secretstore.NewVault(secretstore.VaultOptions{Address: vs.URL, Token: "root-token"})
	if err != nil {
		b.Fatal(err)
	}
	lb := newLockboxServer(b)
	lb.CreateSecret("e6qbench")
	out := []benchBackend{
		{"aws-sm", secrets.NewAWSSecretsManagerFromConfig(aws.Config()), "aws-sm://bench/runner/token", func() int { return aws.Calls("GetSecretValue") }},
		{"vault", vb, "vault://bench/runner/token", func() int { return vs.Calls("read") }},
		{"yc-lockbox", newLockbox(b, lb, secrets.LockboxOptions{IAMToken: "t1.static-iam-token"}), "yc-lockbox://e6qbench/token", func() int { return lb.Calls("PayloadGet") }},
	}
	for _, x := range out {
		if _, err := secretstore.NewResolver(x.backend).Put(ctx, x.ref, "glrt-bench-token-value"); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

func BenchmarkResolve(b *testing.B) {
	ctx := context.Background()
	backends := benchBackends(b)

	b.Run("cached", func(b *testing.B) {
		x := backends[0]
		r := secretstore.NewResolver(x.backend)
		if _, err := r.Resolve(ctx, x.ref); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := r.Resolve(ctx, x.ref); err != nil {
				b.Fatal(err)
			}
		}
	})

	for _, x := range backends {
		b.Run("uncached/"+x.name, func(b *testing.B) {
			r := secretstore.NewResolver(x.backend)
			r.SetTTL(x.name, 0)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := r.Resolve(ctx, x.ref); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	for _, x := range backends {
		b.Run("concurrent-1000/"+x.name, func(b *testing.B) {
			const n = 1000
			r := secretstore.NewResolver(x.backend)
			calls := 0
			for b.Loop() {
				r.Purge()
				before := x.reads()
				var wg sync.WaitGroup
				start := make(chan struct{})
				for range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						if _, err := r.Resolve(ctx, x.ref); err != nil {
							b.Error(err)
						}
					}()
				}
				close(start)
				wg.Wait()
				calls += x.reads() - before
			}
			b.ReportMetric(float64(calls)/float64(b.N), "backend-calls")
		})
	}
}

// TestConcurrentLookupsMakeOneCall is the bench's claim as a test.
func TestConcurrentLookupsMakeOneCall(t *testing.T) {
	srv := vaulttest.New("root-token")
	defer srv.Close()
	v, err := secretstore.NewVault(secretstore.VaultOptions{Address: srv.URL, Token: "root-token", RetryWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := secretstore.NewResolver(v)
	if _, err := r.Put(ctx, "vault://ci/burst/token", "burst-value"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := r.Resolve(ctx, "vault://ci/burst/token"); err != nil || got != "burst-value" {
				t.Errorf("resolve = %q, %v", got, err)
			}
		}()
	}
	wg.Wait()
	// One read by Put (check-and-set) and one by the burst.
	if n := srv.Calls("read"); n != 2 {
		t.Errorf("server reads = %d, want 2", n)
	}
}
