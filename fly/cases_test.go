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
