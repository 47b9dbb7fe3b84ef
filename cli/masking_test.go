package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

// Out and ErrOut mask registered values, even split across writes.
func TestIOStreamsMask(t *testing.T) {
	var out, errOut bytes.Buffer
	s := &IOStreams{Out: &out, ErrOut: &errOut}
	m := secretstore.NewMasker()
	m.Add("glpat-0123456789abcdef")
	s.Mask(m)
	fmt.Fprint(s.Out, "token glpat-01234")
	fmt.Fprint(s.Out, "56789abcdef done")
	fmt.Fprint(s.ErrOut, "ends with glpat-0123")
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "token [masked] done" || errOut.String() != "ends with glpat-0123" {
		t.Errorf("out = %q, err = %q", out.String(), errOut.String())
	}
}

// A worker's resolver, with or without a Nest's secrets block, shares the
// command's Masker, and OpenTofu's output goes through it.
func TestOpenProcessSharesMasker(t *testing.T) {
	for _, nest := range []string{""} {
		m := secretstore.NewMasker()
		dir := t.TempDir()
		p, err := openProcess(context.Background(), processOptions{
			NestDir: nest, Runtime: RuntimeFlags{StateDir: dir, Tofu: "/bin/sh", Store: "sqlite://" + filepath.Join(dir, "g.db")},
			Temporal: TemporalFlags{}, Logger: discardLogger(), Masker: m, LazyTemporal: true, Activities: true,
			Getenv: func(string) (string, bool) { return "", false },
		})
		if err != nil {
			t.Fatal(err)
		}
		res := p.MG.Secrets()
		if res.Masker() != m {
			t.Errorf("nest %q: the resolver has its own Masker", nest)
		}
		ref := fly.SecretRef("local://runners/r1/token")
		if _, err := res.Put(context.Background(), ref, "glrt-masked-by-the-worker"); err != nil {
			t.Fatal(err)
		}
		if got := p.Acts.Tofu.Filter("echo glrt-masked-by-the-worker"); got != "echo [masked]" {
			t.Errorf("nest %q: OpenTofu output filtered to %q", nest, got)
		}
		if _, err := os.Stat(filepath.Join(dir, "secrets")); err != nil {
			t.Errorf("local store not in the state directory: %v", err)
		}
		if v, err := res.Resolve(context.Background(), ref); err != nil || v != "glrt-masked-by-the-worker" {
			t.Errorf("nest %q: local:// not served from the state directory: %v", nest, err)
		}
		p.Close()
	}
}
