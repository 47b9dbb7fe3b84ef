package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateHandedCases runs `gosling validate` on the example Nest with
// each configuration of fly/testdata/cases dropped in: each must exit 3 with
// the hint that fixes it.
func TestValidateHandedCases(t *testing.T) {
	cases := []struct {
		file, rel string
		hints     []string
	}{
		{"uf-every-2w.fly", "UF/config.fly", []string{"UF/config.fly:4:", `"@every 2w"`, "write 2w as 14d"}},
		{"bucket-fargate-4GB.fly", "Eggs/platform/config.fly", []string{"Eggs/platform/config.fly:17:", "Not a serverless size", `memory = "3GiB" or "4GiB"`}},
		{"egg-yandex-vm-1-core.fly", "Eggs/tiny-vm/config.fly", []string{"Eggs/tiny-vm/config.fly:15:", "Not a VM size", `Nearest: cpu = 2 with memory = "2GiB"`}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS("../examples/nest")); err != nil {
				t.Fatal(err)
			}
			src, err := os.ReadFile(filepath.Join("../fly/testdata/cases", c.file))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, c.rel)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, c.rel), src, 0o644); err != nil {
				t.Fatal(err)
			}
			tio := newTestIO("", false)
			if code := run(t, tio, "validate", dir); code != ExitInvalidConfig {
				t.Fatalf("exit %d, want %d: %s", code, ExitInvalidConfig, tio.err)
			}
			// The text writer wraps details: compare with spaces folded.
			out := strings.Join(strings.Fields(tio.err.String()), " ")
			for _, h := range c.hints {
				if !strings.Contains(out, h) {
					t.Errorf("stderr lacks %q:\n%s", h, tio.err)
				}
			}
		})
	}
}

// TestValidateSaysWhatAutoChose checks the note on type = "auto" runners.
func TestValidateSaysWhatAutoChose(t *testing.T) {
	tio := newTestIO("", false)
	if code := run(t, tio, "validate", "../examples/nest"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	want := `Note: egg "web-app" (type auto): serverless on yandex (Serverless Containers: 2 cores at 100% with 4GiB); ` +
		`serverless on aws (AWS Lambda: 4GiB (2.32 vCPU)).`
	if !strings.Contains(tio.err.String(), want) {
		t.Errorf("stderr = %q, want %q", tio.err, want)
	}
}
