// Package scripts holds the tests of the repository's shell scripts.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The comment markers are split so that this file passes the check itself.
const (
	task = "// Ta" + "sk "
	todo = "// TO" + "DO: "
)

// TestCheckComments runs scripts/check-comments.sh on Go files with and
// without offending comments.
func TestCheckComments(t *testing.T) {
	cases := []struct {
		name, src string
		ok        bool
		report    string
	}{
		{"short task", task + "3: retry on 429\n", true, ""},
		{"short sub-task", task + "3.2: retry the create call\n", true, ""},
		{"exactly 42", task + "12.3: " + strings.Repeat("x", 42-len(task+"12.3: ")) + "\n", true, ""},
		{"43 characters", task + "3: " + strings.Repeat("x", 43-len(task+"3: ")) + "\n", false, "(43 characters)"},
		{"long sub-task", "x := 1 " + task + "3.2: " + strings.Repeat("x", 43-len(task+"3.2: ")) + "\n", false, "(43 characters)"},
		{"deep sub-task", task + "3.2.1: " + strings.Repeat("x", 43-len(task+"3.2.1: ")) + "\n", false, "(43 characters)"},
		{"todo", todo + "later\n", false, "a.go:2:"},
		{"prose", "// The task 3: is not a marker here.\n", true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "a.go"), []byte("package a\n"+c.src), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("bash", "check-comments.sh", dir).CombinedOutput()
			if ok := err == nil; ok != c.ok {
				t.Fatalf("passed = %v, want %v:\n%s", ok, c.ok, out)
			}
			if !strings.Contains(string(out), c.report) {
				t.Errorf("output lacks %q:\n%s", c.report, out)
			}
		})
	}
}
