package secretstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gosling-ci/gosling/fly"
)

func TestLocalRoundTripAndEncryption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := NewResolver(l)
	ref := fly.SecretRef("local://runners/web-1/token")
	const secret = "glrt-SuperSecretTokenValue123"
	v1, err := r.Put(ctx, ref, secret)
	if err != nil || v1 != "1" {
		t.Fatalf("put = %q, %v", v1, err)
	}
	v2, _ := r.Put(ctx, ref, secret+"-rotated")
	if got, err := r.Resolve(ctx, ref); err != nil || got != secret+"-rotated" {
		t.Fatalf("resolve = %q, %v", got, err)
	}
	if got, _ := r.Resolve(ctx, fly.SecretRef(string(ref)+"?version="+v1)); got != secret {
		t.Errorf("pinned version = %q", got)
	}
	if v2 != "2" {
		t.Errorf("v2 = %q", v2)
	}
	// Nothing on disk holds the value in plain text.
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), "SuperSecret") {
				t.Errorf("%s holds the secret in plain text", p)
			}
		}
		return nil
	})
	// A second process (another Local on the same dir) reads it.
	l2, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := NewResolver(l2).Resolve(ctx, ref); got != secret+"-rotated" {
		t.Errorf("second opener got %q", got)
	}
	if err := r.Delete(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, ref); err != nil {
		t.Errorf("delete is not idempotent: %v", err)
	}
	_, err = r.Resolve(ctx, ref)
	if !errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "local://runners/web-1/token") {
		t.Errorf("missing secret error = %v", err)
	}
}

func TestLocalErrors(t *testing.T) {
	ctx := context.Background()
	l, _ := OpenLocal(t.TempDir())
	r := NewResolver(l)
	_, _ = r.Put(ctx, "local://a/x", "1")
	if _, err := r.Resolve(ctx, "local://a/y"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("missing key: %v", err)
	}
	if _, err := r.Resolve(ctx, "local://a/x?version=9"); !errors.Is(err, ErrVersion) {
		t.Errorf("missing version: %v", err)
	}
	if _, err := r.Resolve(ctx, "vault://a/x"); !errors.Is(err, ErrNoBackend) {
		t.Errorf("no backend: %v", err)
	}
	if _, err := r.Resolve(ctx, "glpat-notauri"); err == nil || strings.Contains(err.Error(), "glpat") {
		t.Errorf("invalid URI error = %v", err)
	}
}

func TestLocalConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := OpenLocal(dir)
			if err != nil {
				t.Error(err)
				return
			}
			for j := range 10 {
				if _, err := l.Put(ctx, fly.SecretURI{Scheme: "local", Path: "p", Key: "k"}, strings.Repeat("x", i+j)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	l, _ := OpenLocal(dir)
	vs, err := l.Versions(ctx, fly.SecretURI{Scheme: "local", Path: "p", Key: "k"})
	if err != nil || len(vs) != 80 || vs[79] != "80" {
		t.Errorf("versions = %d (%v), want 80", len(vs), err)
	}
}
