package fly

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// exampleWith copies examples/nest into a temporary Nest and puts the file
// testdata/cases/<name> at rel.
func exampleWith(t *testing.T, name, rel string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "examples", "nest"))); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("testdata", "cases", name))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, rel, string(src))
	return dir
}

// TestHandedCases loads each configuration of testdata/cases in the example
// Nest and expects the error that makes `gosling validate` exit 3.
func TestHandedCases(t *testing.T) {
	cases := []struct {
		file, rel  string
		summary    string
		line       int
		hints      []string
		notInFiles string
	}{
		{"uf-every-2w.fly", "UF/config.fly", "Invalid cron expression", 4,
			[]string{"write 2w as 14d"}, ""},
		{"bucket-fargate-4GB.fly", "Eggs/platform/config.fly", "Not a serverless size", 17,
			[]string{"3814.7MiB", `memory = "3GiB" or "4GiB"`, `"4GB" counts in powers of 1000`}, ""},
		{"egg-yandex-vm-1-core.fly", "Eggs/tiny-vm/config.fly", "Not a VM size", 15,
			[]string{"On yandex", "standard-v3", "not cpu = 1", `Nearest: cpu = 2 with memory = "2GiB"`}, ""},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			dir := exampleWith(t, c.file, c.rel)
			nest, diags := LoadNest(dir, Options{Getenv: testEnv})
			if nest != nil || !diags.HasErrors() {
				t.Fatal("loaded without errors")
			}
			var found *hcl.Diagnostic
			for _, d := range diags.Diagnostics {
				if d.Severity != hcl.DiagError {
					continue
				}
				if found != nil {
					t.Errorf("more than one error: %s and %s", found.Summary, d.Summary)
				}
				found = d
			}
			if found.Summary != c.summary || found.Subject == nil || found.Subject.Start.Line != c.line ||
				filepath.ToSlash(found.Subject.Filename) != filepath.ToSlash(filepath.Join(dir, c.rel)) {
				t.Fatalf("got %s at %v, want %s at %s:%d", found.Summary, found.Subject, c.summary, c.rel, c.line)
			}
			for _, h := range c.hints {
				if !strings.Contains(found.Detail, h) {
					t.Errorf("detail lacks %q:\n%s", h, found.Detail)
				}
			}
		})
	}
}

// TestYandexServerlessDeadlineCase loads the egg of
// egg-yandex-serverless-5m-jobs.fly: its Serverless Containers get a
// deadline of its 5-minute job timeout, which generally available
// containers take, so validate has nothing to say; the same egg with jobs
// of 15 minutes is warned about Yandex's long-lived (Preview) containers.
func TestYandexServerlessDeadlineCase(t *testing.T) {
	for _, c := range []struct {
		duration string
		deadline string
		warning  bool
	}{{"5m", "5m0s", false}, {"15m", "15m0s", true}} {
		t.Run(c.duration, func(t *testing.T) {
			dir := exampleWith(t, "egg-yandex-serverless-5m-jobs.fly", "Eggs/lint/config.fly")
			path := filepath.Join(dir, "Eggs", "lint", "config.fly")
			src, _ := os.ReadFile(path)
			writeFile(t, dir, "Eggs/lint/config.fly", strings.Replace(string(src), `expected_job_duration = "5m"`, `expected_job_duration = "`+c.duration+`"`, 1))
			nest, diags := LoadNest(dir, Options{Getenv: testEnv})
			if nest == nil || diags.HasErrors() {
				t.Fatalf("errors: %v", diags)
			}
			var warnings []string
			for _, d := range diags.Diagnostics {
				if d.Severity == hcl.DiagWarning {
					warnings = append(warnings, d.Summary+": "+d.Detail)
					if d.Subject == nil || !strings.HasSuffix(filepath.ToSlash(d.Subject.Filename), "Eggs/lint/config.fly") || d.Subject.Start.Line != 19 {
						t.Errorf("warning at %v, want Eggs/lint/config.fly:19 (expected_job_duration)", d.Subject)
					}
				}
			}
			if got := len(warnings) > 0; got != c.warning {
				t.Errorf("warnings %q, want a warning: %t", warnings, c.warning)
			}
			if c.warning && !strings.Contains(strings.Join(warnings, ""), "Long-lived Serverless Container (Preview)") {
				t.Errorf("warnings %q lack the long-lived one", warnings)
			}
			egg, _ := nest.Egg("lint")
			if got := egg.Runner.ServerlessDeadline().String(); got != c.deadline {
				t.Errorf("deadline = %s, want %s", got, c.deadline)
			}
		})
	}
}
