package fly

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// Fixtures under testdata/invalid are Nests whose files mark every expected
// diagnostic on its line: `# ERROR: <summary>` or `# WARNING: <summary>`.
// The test fails on any diagnostic without a marker and any marker without
// a diagnostic. Fixtures under testdata/valid must load with no errors and
// carry no markers.

var markerRE = regexp.MustCompile(`#\s*(ERROR|WARNING):\s*([^#]+?)\s*(?:#|$)`)

type expectation struct {
	file     string
	line     int
	severity string
	summary  string
}

func (e expectation) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.file, e.line, e.severity, e.summary)
}

func readMarkers(t *testing.T, dir string) []expectation {
	t.Helper()
	files, err := FlyFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []expectation
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			rest := line
			for {
				m := markerRE.FindStringSubmatchIndex(rest)
				if m == nil {
					break
				}
				out = append(out, expectation{file: f, line: i + 1, severity: rest[m[2]:m[3]], summary: rest[m[4]:m[5]]})
				// Continue after the summary, keeping a following '#'.
				rest = rest[m[5]:]
			}
		}
	}
	return out
}

func actual(diags hcl.Diagnostics) []expectation {
	var out []expectation
	for _, d := range diags {
		e := expectation{severity: "ERROR", summary: d.Summary}
		if d.Severity == hcl.DiagWarning {
			e.severity = "WARNING"
		}
		if d.Subject != nil {
			e.file, e.line = d.Subject.Filename, d.Subject.Start.Line
		}
		out = append(out, e)
	}
	return out
}

func fixtureDirs(t *testing.T, kind string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("testdata", kind))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("testdata", kind, e.Name()))
		}
	}
	if len(dirs) == 0 {
		t.Fatalf("no fixtures in testdata/%s", kind)
	}
	return dirs
}

func testEnv(name string) (string, bool) {
	if name == "GOSLING_FIXTURE_REGION" {
		return "eu-north-1", true
	}
	return "", false
}

func TestInvalidFixtures(t *testing.T) {
	for _, dir := range fixtureDirs(t, "invalid") {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want := readMarkers(t, dir)
			if len(want) == 0 {
				t.Fatal("fixture has no # ERROR: markers")
			}
			nest, diags := LoadNest(dir, Options{Getenv: testEnv})
			if nest != nil {
				t.Errorf("LoadNest returned a Nest despite errors")
			}
			if !diags.HasErrors() {
				t.Fatalf("no errors reported")
			}
			got := actual(diags.Diagnostics)
			compare(t, want, got)
		})
	}
}

func TestValidFixtures(t *testing.T) {
	nests := []string{filepath.Join("..", "examples", "nest"), filepath.Join("..", "deploy", "compose", "nest")}
	for _, dir := range append(fixtureDirs(t, "valid"), nests...) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			if m := readMarkers(t, dir); len(m) > 0 {
				t.Fatalf("valid fixture carries markers: %v", m)
			}
			nest, diags := LoadNest(dir, Options{Getenv: testEnv})
			if diags.HasErrors() || nest == nil {
				var b strings.Builder
				_ = WriteText(&b, diags.Diagnostics, diags.Files, false)
				t.Fatalf("unexpected errors:\n%s", b.String())
			}
			for _, d := range diags.Diagnostics {
				t.Errorf("unexpected warning: %s: %s", d.Subject, d.Summary)
			}
		})
	}
}

func compare(t *testing.T, want, got []expectation) {
	t.Helper()
	key := func(e expectation) string { return e.String() }
	count := map[string]int{}
	for _, e := range want {
		count[key(e)]++
	}
	var extra, missing []string
	for _, e := range got {
		if count[key(e)] > 0 {
			count[key(e)]--
			continue
		}
		extra = append(extra, key(e))
	}
	for k, n := range count {
		for ; n > 0; n-- {
			missing = append(missing, k)
		}
	}
	sort.Strings(extra)
	sort.Strings(missing)
	for _, e := range extra {
		t.Errorf("unexpected diagnostic: %s", e)
	}
	for _, m := range missing {
		t.Errorf("expected diagnostic not reported: %s", m)
	}
}
