package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/secrets/vaulttest"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

func TestSecretsFlagsToOptions(t *testing.T) {
	tio := newTestIO("", false)
	var got *SecretsVersionsOptions
	cmd := NewCmdSecretsVersions(tio.f, func(o *SecretsVersionsOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"vault://ci/web/token", "--json", "id,current", "--nest", "my-nest", "--state-dir", "/tmp/st"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.URI != "vault://ci/web/token" || !got.Export.Enabled() || got.Flags.Nest != "my-nest" || got.Flags.StateDir != "/tmp/st" {
		t.Errorf("options = %+v", got)
	}

	var rb *SecretsRollbackOptions
	cmd = NewCmdSecretsRollback(tio.f, func(o *SecretsRollbackOptions) error { rb = o; return nil })
	cmd.SetArgs([]string{"aws-sm://gosling/web/token", "--to", "AWSPREVIOUS", "-y", "--dev"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if rb.To != "AWSPREVIOUS" || !rb.Yes || !rb.Flags.Dev {
		t.Errorf("rollback options = %+v", rb)
	}

	for _, args := range [][]string{
		{"secrets", "rollback", "vault://ci/web/token"},
		{"secrets", "rollback", "vault://ci/web/token?version=2", "--to", "1"},
		{"secrets", "versions", "vault://ci/web/token?version=2"},
		{"secrets", "versions", "not-a-uri"},
	} {
		tio := newTestIO("", false)
		if code := run(t, tio, args...); code != ExitError || !strings.Contains(tio.err.String(), "--help") {
			t.Errorf("%v: exit %d, stderr %q", args, code, tio.err.String())
		}
	}
}

func TestSecretsVersionsAndRollbackLocal(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	local, err := secretstore.OpenLocal(filepath.Join(state, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	r := secretstore.NewResolver(local)
	for _, v := range []string{"glrt-FirstLocalValue", "glrt-SecondLocalValue"} {
		if _, err := r.Put(ctx, "local://runners/web/token", v); err != nil {
			t.Fatal(err)
		}
	}

	tio := newTestIO("", false)
	if code := run(t, tio, "secrets", "versions", "local://runners/web/token", "--state-dir", state); code != ExitOK {
		t.Fatalf("versions: exit %d: %s", code, tio.err.String())
	}
	lines := strings.Split(strings.TrimSpace(tio.out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "1\t") || !strings.Contains(lines[1], "\tcurrent\t") {
		t.Errorf("versions output:\n%s", tio.out.String())
	}

	tio = newTestIO("", false)
	run(t, tio, "secrets", "versions", "local://runners/web/token", "--state-dir", state, "--json", "id,current")
	var vs []secretstore.Version
	if err := json.Unmarshal(tio.out.Bytes(), &vs); err != nil || len(vs) != 2 || !vs[1].Current {
		t.Errorf("json = %s (%v)", tio.out.String(), err)
	}

	// Without a terminal, a rollback needs --yes.
	tio = newTestIO("", false)
	if code := run(t, tio, "secrets", "rollback", "local://runners/web/token", "--to", "1", "--state-dir", state); code != ExitError || !strings.Contains(tio.err.String(), "--yes") {
		t.Errorf("no --yes: exit %d, %q", code, tio.err.String())
	}
	// On a terminal, "n" cancels.
	tio = newTestIO("n\n", true)
	if code := run(t, tio, "secrets", "rollback", "local://runners/web/token", "--to", "1", "--state-dir", state); code != ExitCancelled {
		t.Errorf("declined: exit %d", code)
	}
	tio = newTestIO("", false)
	if code := run(t, tio, "secrets", "rollback", "local://runners/web/token", "--to", "1", "--yes", "--state-dir", state); code != ExitOK {
		t.Fatalf("rollback: exit %d: %s", code, tio.err.String())
	}
	if strings.TrimSpace(tio.out.String()) != "3" {
		t.Errorf("rollback printed %q, want the new version 3", tio.out.String())
	}
	if strings.Contains(tio.out.String()+tio.err.String(), "LocalValue") {
		t.Error("a value was printed")
	}
	l2, _ := secretstore.OpenLocal(filepath.Join(state, "secrets"))
	if got, _ := secretstore.NewResolver(l2).Resolve(ctx, "local://runners/web/token"); got != "glrt-FirstLocalValue" {
		t.Errorf("after rollback = %q", got)
	}

	tio = newTestIO("", false)
	if code := run(t, tio, "secrets", "rollback", "local://runners/web/token", "--to", "9", "--yes", "--state-dir", state); code != ExitError || !strings.Contains(tio.err.String(), "version not found") {
		t.Errorf("missing version: exit %d, %q", code, tio.err.String())
	}
}

func TestSecretsVaultFromEnvironment(t *testing.T) {
	ctx := context.Background()
	srv := vaulttest.New("cli-root-token")
	defer srv.Close()
	v, err := secretstore.NewVault(secretstore.VaultOptions{Address: srv.URL, Token: "cli-root-token"})
	if err != nil {
		t.Fatal(err)
	}
	r := secretstore.NewResolver(v)
	_, _ = r.Put(ctx, "vault://ci/web/token", "vault-value-one")
	_, _ = r.Put(ctx, "vault://ci/web/token", "vault-value-two")

	tio := withEnv(newTestIO("", false), map[string]string{"VAULT_ADDR": srv.URL, "VAULT_TOKEN": "cli-root-token"})
	if code := run(t, tio, "secrets", "versions", "vault://ci/web/token", "--state-dir", t.TempDir()); code != ExitOK {
		t.Fatalf("versions: exit %d: %s", code, tio.err.String())
	}
	if !strings.Contains(tio.out.String(), "2\t") {
		t.Errorf("versions output:\n%s", tio.out.String())
	}
	srv.Deny("ci/denied")
	tio = withEnv(newTestIO("", false), map[string]string{"VAULT_ADDR": srv.URL, "VAULT_TOKEN": "cli-root-token"})
	if code := run(t, tio, "secrets", "versions", "vault://ci/denied/token", "--state-dir", t.TempDir()); code != ExitAuth {
		t.Errorf("denied: exit %d, %s", code, tio.err.String())
	}
}

// secrets put reads the value from stdin, never echoes it, and the secret
// resolves to it afterwards; an empty value or a pinned version is refused.
func TestSecretsPutLocal(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	tio := newTestIO("glrt-PutFromStdin\n", false)
	if code := run(t, tio, "secrets", "put", "local://runners/web/token", "--state-dir", state, "--dev"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	if strings.Contains(tio.out.String()+tio.err.String(), "PutFromStdin") {
		t.Errorf("the value was printed: %q %q", tio.out, tio.err)
	}
	local, err := secretstore.OpenLocal(filepath.Join(state, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := secretstore.NewResolver(local).Resolve(ctx, "local://runners/web/token"); err != nil || got != "glrt-PutFromStdin" {
		t.Errorf("after put: %q, %v", got, err)
	}
	for _, c := range []struct{ stdin, uri, want string }{
		{"", "local://runners/web/token", "value is empty"},
		{"\n", "local://runners/web/token", "value is empty"},
		{"x", "local://runners/web/token?version=1", "?version="},
	} {
		tio := newTestIO(c.stdin, false)
		if code := run(t, tio, "secrets", "put", c.uri, "--state-dir", state, "--dev"); code != ExitError || !strings.Contains(tio.err.String(), c.want) {
			t.Errorf("%q %s: exit %d, stderr %q", c.stdin, c.uri, code, tio.err)
		}
	}
}
