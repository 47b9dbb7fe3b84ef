package fly

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadEggFile feeds arbitrary bytes as an egg file of a Nest: loading
// must never panic, and must either give a Nest or an error.
func FuzzLoadEggFile(f *testing.F) {
	for _, dir := range []string{"../examples/nest/Eggs/web-app", "../examples/nest/Eggs/platform", "testdata/invalid/types/Eggs/typed", "testdata/invalid/plaintext/Eggs/leaky"} {
		src, err := os.ReadFile(filepath.Join(dir, "config.fly"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(`egg "x" { gitlab { host = "${` + "\x00" + `" } }`))
	f.Add([]byte("locals { a = local.a }\negg \"a\" { project = local.a }"))
	mg := []byte("mothergoose {\n  cloud = \"local\"\n}\n")
	f.Fuzz(func(t *testing.T, src []byte) {
		l := &loader{dir: "fuzz", opts: Options{Getenv: func(string) (string, bool) { return "", false }}}
		files := []*nestFile{
			{kind: fileEgg, rel: "Eggs/f/config.fly", path: "fuzz/Eggs/f/config.fly", src: src},
			{kind: fileMG, rel: "MG/config.fly", path: "fuzz/MG/config.fly", src: mg},
		}
		nest, diags := l.loadFiles(files)
		if (nest == nil) != diags.HasErrors() {
			t.Fatalf("nest=%v errors=%v", nest != nil, diags.HasErrors())
		}
		var sink discard
		_ = WriteText(&sink, diags.Diagnostics, diags.Files, false)
		_ = WriteJSON(&sink, diags.Diagnostics, diags.Files)
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
