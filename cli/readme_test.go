package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// readmeBlock matches a generated block of the README: its name, then a
// fenced block, between <!-- name: ... --> and <!-- /name -->.
func readmeBlock(name string) *regexp.Regexp {
	return regexp.MustCompile(`(?s)(<!-- ` + name + `:[^>]*-->\n` + "```" + `\n)(.*?)(` + "```" + `\n<!-- /` + name + ` -->)`)
}

// TestREADMECIKeywords: the README lists the .gitlab-ci.yml keywords the
// GitLab test server reads exactly as gitlabtest.CIKeywords makes them
// (`gosling dev pipeline --help` prints the same). GOSLING_UPDATE_README=1
// rewrites the block.
func TestREADMECIKeywords(t *testing.T) {
	path := filepath.Join("..", "README.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := readmeBlock("ci-keywords")
	m := re.FindSubmatch(b)
	if m == nil {
		t.Fatal("the README has no ci-keywords block")
	}
	want := gitlabtest.CIKeywords()
	if os.Getenv("GOSLING_UPDATE_README") == "1" {
		b = re.ReplaceAllLiteral(b, []byte(string(m[1])+want+string(m[3])))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if string(m[2]) != want {
		t.Errorf("the README's keywords are not gitlabtest.CIKeywords (GOSLING_UPDATE_README=1 go test -run TestREADMECIKeywords ./cli):\n%s\nwant:\n%s", m[2], want)
	}
	help := NewCmdDevPipeline(newTestIO("", false).f, nil).Long
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.Contains(help, line) {
			t.Errorf("dev pipeline --help lacks %q", line)
		}
	}
}
