package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/spf13/cobra"
)

type testIO struct {
	f        *Factory
	out, err *bytes.Buffer
}

func newTestIO(stdin string, tty bool) *testIO {
	out, errb := &bytes.Buffer{}, &bytes.Buffer{}
	io := &IOStreams{In: strings.NewReader(stdin), Out: out, ErrOut: errb, StdinTTY: tty, StdoutTTY: tty}
	return &testIO{
		f:   &Factory{IO: io, Getenv: func(string) (string, bool) { return "", false }, Version: "test"},
		out: out, err: errb,
	}
}

func run(t *testing.T, tio *testIO, args ...string) int {
	t.Helper()
	return Execute(context.Background(), tio.f, args)
}

func TestValidateExample(t *testing.T) {
	tio := newTestIO("", false)
	if code := run(t, tio, "validate", "../examples/nest"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	if !strings.Contains(tio.out.String(), "is valid: 2 eggs, 2 buckets, 4 jobs") {
		t.Errorf("stdout = %q", tio.out)
	}

	tio = newTestIO("", false)
	if code := run(t, tio, "validate", "--dump", "--var", "environment=ci", "../examples/nest"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	var nest fly.Nest
	if err := json.Unmarshal(tio.out.Bytes(), &nest); err != nil {
		t.Fatalf("--dump is not JSON: %v", err)
	}
	if nest.MotherGoose.APIGateway.Name != "gosling-ci" {
		t.Errorf("--var not applied: %q", nest.MotherGoose.APIGateway.Name)
	}
}

func TestValidateInvalid(t *testing.T) {
	dir := "../fly/testdata/invalid/plaintext"
	tio := newTestIO("", false)
	if code := run(t, tio, "validate", dir); code != ExitInvalidConfig {
		t.Fatalf("exit %d, want %d", code, ExitInvalidConfig)
	}
	stderr := tio.err.String()
	for _, want := range []string{"Error: Plaintext secret", "Eggs/leaky/config.fly:4:22", "is invalid: 4 errors"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "glpat-") || tio.out.Len() != 0 {
		t.Errorf("secret printed or data on stdout: %s / %s", stderr, tio.out)
	}

	tio = newTestIO("", false)
	if code := run(t, tio, "validate", "--json", dir); code != ExitInvalidConfig {
		t.Fatalf("exit %d", code)
	}
	var doc struct {
		Valid       bool
		Errors      int
		Diagnostics []fly.JSONDiagnostic
	}
	if err := json.Unmarshal(tio.out.Bytes(), &doc); err != nil {
		t.Fatalf("--json output: %v\n%s", err, tio.out)
	}
	if doc.Valid || doc.Errors != 4 || doc.Diagnostics[0].Range == nil || doc.Diagnostics[0].Range.Line != 4 {
		t.Errorf("json = %+v", doc)
	}
}

func TestInitEveryCloudValidates(t *testing.T) {
	for _, cloud := range []string{"yandex", "aws", "local"} {
		t.Run(cloud, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "nest")
			tio := newTestIO("", false)
			if code := run(t, tio, "init", dir, "--cloud", cloud); code != 0 {
				t.Fatalf("init exit %d: %s", code, tio.err)
			}
			for _, p := range []string{"Eggs", "Jobs", "UF/config.fly", "MG/config.fly", ".gitignore"} {
				if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
					t.Errorf("missing %s", p)
				}
			}
			tio = newTestIO("", false)
			if code := run(t, tio, "validate", dir); code != 0 {
				t.Fatalf("fresh Nest invalid (exit %d): %s", code, tio.err)
			}
			tio = newTestIO("", false)
			if code := run(t, tio, "fmt", "--check", dir); code != 0 {
				t.Errorf("templates not formatted: %s %s", tio.out, tio.err)
			}
			// A second init keeps the files.
			tio = newTestIO("", false)
			if code := run(t, tio, "init", dir, "--cloud", "aws"); code != 0 || !strings.Contains(tio.err.String(), "kept") {
				t.Errorf("re-init: %d %s", code, tio.err)
			}
		})
	}
}

func TestInitNeedsCloudWithoutTerminal(t *testing.T) {
	tio := newTestIO("", false)
	code := run(t, tio, "init", t.TempDir())
	if code != ExitError || !strings.Contains(tio.err.String(), "--cloud") {
		t.Errorf("exit %d: %s", code, tio.err)
	}
	tio = newTestIO("aws\n", true)
	dir := t.TempDir()
	if code := run(t, tio, "init", dir); code != 0 {
		t.Fatalf("prompted init exit %d: %s", code, tio.err)
	}
	mg, _ := os.ReadFile(filepath.Join(dir, "MG", "config.fly"))
	if !strings.Contains(string(mg), `cloud  = "aws"`) {
		t.Errorf("prompt answer not used:\n%s", mg)
	}
}

func newLocalNest(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if code := run(t, newTestIO("", false), "init", dir, "--cloud", "local"); code != 0 {
		t.Fatal("init failed")
	}
	return dir
}

func TestAddEggFromFlags(t *testing.T) {
	dir := newLocalNest(t)
	tio := newTestIO("", false)
	code := run(t, tio, "add", "egg", "web-app", "--dir", dir, "--host", "gitlab.com", "--project", "acme/web-app",
		"--token", "local://gitlab/token", "--webhook-secret", "local://gitlab/webhook", "--tags", "docker,linux",
		"--memory", "8GiB", "--nadir-min", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	nest, diags := fly.LoadNest(dir)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	e, ok := nest.Egg("web-app")
	if !ok || e.Runner.Memory != 8*fly.GiB || e.Projects[0].Path != "acme/web-app" || e.Nadir.Min != 1 || e.Nadir.Max != 2 {
		t.Errorf("egg = %+v", e)
	}
	// Not overwritten without --force.
	tio = newTestIO("", false)
	if code := run(t, tio, "add", "egg", "web-app", "--dir", dir, "--host", "gitlab.com", "--project", "x/y",
		"--token", "local://a/b", "--webhook-secret", "local://a/c", "--tags", "x"); code != ExitError {
		t.Errorf("overwrite: exit %d", code)
	}
}

func TestAddEggRejectsPlaintextAndKeepsNothing(t *testing.T) {
	dir := newLocalNest(t)
	tio := newTestIO("", false)
	code := run(t, tio, "add", "egg", "leaky", "--dir", dir, "--host", "gitlab.com", "--project", "acme/leaky",
		"--token", "glpat-0123456789abcdefghij", "--webhook-secret", "local://gitlab/webhook", "--tags", "docker")
	if code != ExitInvalidConfig {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	if strings.Contains(tio.err.String(), "glpat-0123") {
		t.Errorf("token printed: %s", tio.err)
	}
	if _, err := os.Stat(filepath.Join(dir, "Eggs", "leaky")); !os.IsNotExist(err) {
		t.Errorf("invalid egg left behind: %v", err)
	}
}

func TestAddEggMissingFlagNamesIt(t *testing.T) {
	dir := newLocalNest(t)
	tio := newTestIO("", true)
	code := run(t, tio, "--no-input", "add", "egg", "web", "--dir", dir, "--host", "gitlab.com", "--project", "a/b", "--tags", "x")
	if code != ExitError || !strings.Contains(tio.err.String(), "--token") {
		t.Errorf("exit %d: %s", code, tio.err)
	}
}

func TestAddEggInteractive(t *testing.T) {
	dir := newLocalNest(t)
	answers := strings.Join([]string{"", "acme/api", "local://gitlab/token", "local://gitlab/webhook", "docker,go"}, "\n") + "\n"
	tio := newTestIO(answers, true)
	if code := run(t, tio, "add", "egg", "api", "--dir", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	nest, diags := fly.LoadNest(dir)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	e, _ := nest.Egg("api")
	if e.GitLab.Host != "gitlab.com" || e.Projects[0].Path != "acme/api" || strings.Join(e.Runner.Tags, ",") != "docker,go" {
		t.Errorf("egg = %+v", e)
	}
}

func TestAddBucketAndJob(t *testing.T) {
	dir := newLocalNest(t)
	tio := newTestIO("", false)
	if code := run(t, tio, "add", "bucket", "platform", "--dir", dir, "--host", "gitlab.com", "--projects", "acme/a,acme/b,42",
		"--token", "local://gitlab/token", "--webhook-secret", "local://gitlab/webhook", "--tags", "docker,admin", "--type", "vm"); code != 0 {
		t.Fatalf("bucket exit %d: %s", code, tio.err)
	}
	tio = newTestIO("", false)
	if code := run(t, tio, "add", "bucket", "data", "--dir", dir, "--host", "gitlab.com", "--group-id", "77",
		"--token", "local://gitlab/token", "--webhook-secret", "local://gitlab/webhook", "--run-untagged"); code != 0 {
		t.Fatalf("group bucket exit %d: %s", code, tio.err)
	}
	tio = newTestIO("", false)
	if code := run(t, tio, "add", "job", "prune", "--dir", dir, "--kind", "custom", "--schedule", "@daily",
		"--tags", "admin", "--param", "script=crane gc registry.example.com", "--param", "variables={ DRY = \"1\" }"); code != 0 {
		t.Fatalf("job exit %d: %s", code, tio.err)
	}
	tio = newTestIO("", false)
	if code := run(t, tio, "add", "job", "rotate", "--dir", dir, "--kind", "secret_rotation", "--schedule", "0 3 * * 1",
		"--param", `eggs=["platform"]`); code != 0 {
		t.Fatalf("rotate exit %d: %s", code, tio.err)
	}
	nest, diags := fly.LoadNest(dir)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	p, _ := nest.Egg("platform")
	if len(p.Projects) != 3 || p.Projects[2].ID != 42 {
		t.Errorf("projects = %+v", p.Projects)
	}
	d, _ := nest.Egg("data")
	if d.Group == nil || d.Group.ID != 77 {
		t.Errorf("group = %+v", d.Group)
	}
	j, _ := nest.Job("prune")
	if j.Params["script"] != "crane gc registry.example.com" || !j.Runner.Elevated {
		t.Errorf("job = %+v", j)
	}
	r, _ := nest.Job("rotate")
	if eggs, _ := r.Params["eggs"].([]any); len(eggs) != 1 {
		t.Errorf("rotate params = %+v", r.Params)
	}

	// A job whose runner tags no egg has is refused and not written.
	tio = newTestIO("", false)
	if code := run(t, tio, "add", "job", "gpu", "--dir", dir, "--kind", "custom", "--schedule", "@daily",
		"--tags", "gpu", "--param", "script=nvidia-smi"); code != ExitInvalidConfig {
		t.Errorf("exit %d: %s", code, tio.err)
	}
	if _, err := os.Stat(filepath.Join(dir, "Jobs", "gpu.fly")); !os.IsNotExist(err) {
		t.Errorf("invalid job left behind")
	}
}

func TestFmt(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.fly")
	ugly := "egg \"x\" {\nproject=\"a/b\"\n    runner {\n  cpu=2\n  memory = \"1GiB\"\n}\n}\n"
	if err := os.WriteFile(p, []byte(ugly), 0o644); err != nil {
		t.Fatal(err)
	}
	tio := newTestIO("", false)
	if code := run(t, tio, "fmt", "--check", dir); code != ExitInvalidConfig || !strings.Contains(tio.out.String(), "x.fly") {
		t.Fatalf("check: exit %d out %q", code, tio.out)
	}
	if b, _ := os.ReadFile(p); string(b) != ugly {
		t.Fatal("--check wrote the file")
	}
	tio = newTestIO("", false)
	if code := run(t, tio, "fmt", dir); code != 0 {
		t.Fatalf("fmt exit %d: %s", code, tio.err)
	}
	want := "egg \"x\" {\n  project = \"a/b\"\n  runner {\n    cpu    = 2\n    memory = \"1GiB\"\n  }\n}\n"
	if b, _ := os.ReadFile(p); string(b) != want {
		t.Errorf("formatted:\n%s\nwant:\n%s", b, want)
	}
	// Broken files are reported and left alone.
	if err := os.WriteFile(p, []byte("egg {"), 0o644); err != nil {
		t.Fatal(err)
	}
	tio = newTestIO("", false)
	if code := run(t, tio, "fmt", dir); code != ExitInvalidConfig {
		t.Errorf("broken: exit %d", code)
	}
	if b, _ := os.ReadFile(p); string(b) != "egg {" {
		t.Errorf("broken file changed")
	}
}

func TestHelpHasExamples(t *testing.T) {
	root := NewCmdRoot(newTestIO("", false).f)
	for _, c := range allCommands(root) {
		if c.Runnable() && c.Example == "" {
			t.Errorf("%s has no example in --help", c.CommandPath())
		}
	}
}

func TestUnknownFlagIsUsageError(t *testing.T) {
	tio := newTestIO("", false)
	if code := run(t, tio, "validate", "--nope"); code != ExitError || !strings.Contains(tio.err.String(), "gosling validate --help") {
		t.Errorf("exit %d: %s", code, tio.err)
	}
}

func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, s := range c.Commands() {
		out = append(out, allCommands(s)...)
	}
	return out
}
