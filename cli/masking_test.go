package cli

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secrets"
)

// Out and ErrOut mask registered values, even split across writes.
func TestIOStreamsMask(t *testing.T) {
	var out, errOut bytes.Buffer
	s := &IOStreams{Out: &out, ErrOut: &errOut}
	m := secrets.NewMasker()
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
func TestOpenDepsSharesMasker(t *testing.T) {
	for _, cfg := range []*fly.Secrets{nil, {}} {
		m := secrets.NewMasker()
		r := RuntimeFlags{StateDir: t.TempDir(), Tofu: "/bin/sh", Masker: m, SecretsConfig: cfg}
		deps, err := r.OpenDeps(context.Background(), TemporalFlags{}, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		if deps.Secrets.Masker() != m {
			t.Errorf("config %v: the resolver has its own Masker", cfg)
		}
		ref := fly.SecretRef("local://runners/r1/token")
		if _, err := deps.Secrets.Put(context.Background(), ref, "glrt-masked-by-the-worker"); err != nil {
			t.Fatal(err)
		}
		if got := deps.Tofu.Filter("echo glrt-masked-by-the-worker"); got != "echo [masked]" {
			t.Errorf("config %v: OpenTofu output filtered to %q", cfg, got)
		}
		if deps.Local.Dir() != filepath.Join(r.StateDir, "secrets") {
			t.Errorf("local store in %s", deps.Local.Dir())
		}
		if v, err := deps.Secrets.Resolve(context.Background(), ref); err != nil || v != "glrt-masked-by-the-worker" {
			t.Errorf("config %v: local:// not served from the state directory: %v", cfg, err)
		}
		deps.Store.Close()
	}
}
