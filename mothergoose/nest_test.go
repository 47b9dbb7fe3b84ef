package mothergoose_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/mothergoose"
)

// nestFiles is a small Nest on the GitLab test server's host, whose egg
// has the given memory.
func nestFiles(host string, memory string) map[string][]byte {
	return map[string][]byte{
		"MG/config.fly": []byte(`mothergoose {
  cloud = "local"
  nest {
    project = "ops/nest"
    ref     = "main"
  }
  provider "local" {}
}
`),
		"Eggs/web/config.fly": []byte(fmt.Sprintf(`egg "web" {
  gitlab {
    host           = %q
    insecure       = true
    token          = "local://gitlab/token"
    webhook_secret = "local://gitlab/webhook"
  }
  project_id = 1
  runner {
    type           = "serverless"
    clouds         = ["local"]
    memory         = %q
    max_concurrent = 4
    tags           = ["docker"]
  }
}
`, host, memory)),
	}
}

// A push to the Nest repository makes MotherGoose fetch the Nest at that
// commit through the GitLab API (the repository archive) and apply it only
// when it validates; an invalid Nest is audited with its diagnostics and
// the Nest in force stays.
func TestReloadNestFromGitLab(t *testing.T) {
	ctx := context.Background()
	gl := gitlabtest.New()
	t.Cleanup(gl.Close)
	ops := gl.AddGroup("ops", 0)
	repo := gl.AddProject("ops/nest", ops.ID)
	host := strings.TrimPrefix(gl.URL(), "http://")

	local, err := secretstore.OpenLocal(filepath.Join(t.TempDir(), "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	res := secretstore.NewResolver(local)
	if _, err := res.Put(ctx, "local://gitlab/token", gl.Token()); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, "sqlite::memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	first := gl.Commit(repo.ID, "main", "first", nestFiles(host, "1GiB"))
	dir := t.TempDir()
	for _, f := range []string{"MG/config.fly", "Eggs/web/config.fly"} {
		writeFile(t, filepath.Join(dir, f), nestFiles(host, "1GiB")[f])
	}
	start, diags := fly.LoadNest(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	mg, err := mothergoose.Open(ctx, mothergoose.Config{
		Nest: start, Store: st, Secrets: res, LazyTemporal: true, TemporalTimeout: 100 * time.Millisecond,
		TemporalConnection: mothergoose.TemporalConnection{Address: "127.0.0.1:1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mg.Close() })

	// A valid push: the egg's new memory is in force and stored.
	second := gl.Commit(repo.ID, "main", "more memory", nestFiles(host, "2GiB"))
	if second == first {
		t.Fatal("the commits have one SHA")
	}
	applied, err := mg.NestSync().ReloadNest(ctx, second, "push")
	if err != nil {
		t.Fatal(err)
	}
	if applied.Commit != second || applied.Eggs != 1 || mg.NestSync().NestCommit() != second {
		t.Errorf("applied %+v, commit in force %s", applied, mg.NestSync().NestCommit())
	}
	if egg, _ := mg.Nest().Egg("web"); egg == nil || egg.Runner.Memory != 2*fly.GiB {
		t.Errorf("egg in force: %+v", egg)
	}

	// An invalid push: nothing changes, and the audit log says why.
	broken := nestFiles(host, "lots")
	third := gl.Commit(repo.ID, "main", "broken", broken)
	_, err = mg.NestSync().ReloadNest(ctx, "main", "push")
	var invalid *mothergoose.InvalidNestError
	if !errors.As(err, &invalid) || invalid.Commit != third || !strings.Contains(invalid.Diagnostics, "Eggs/web/config.fly") {
		t.Fatalf("invalid Nest: %v", err)
	}
	if egg, _ := mg.Nest().Egg("web"); egg.Runner.Memory != 2*fly.GiB || mg.NestSync().NestCommit() != second {
		t.Errorf("the invalid Nest replaced the one in force: %+v at %s", egg.Runner, mg.NestSync().NestCommit())
	}
	audit, err := st.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range audit {
		actions = append(actions, a.Action)
	}
	if got := strings.Join(actions, ","); got != "nest-apply,nest-invalid" {
		t.Errorf("audit actions %s", got)
	}
	if !strings.Contains(audit[1].Reason, "memory") {
		t.Errorf("the audit record lacks the diagnostics: %s", audit[1].Reason)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
