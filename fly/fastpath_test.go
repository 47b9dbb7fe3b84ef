package fly

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// blockContent must give what hclsyntax's Content gives, on every egg block
// of the examples and fixtures, valid or not.
func TestBlockContentAgreesWithContent(t *testing.T) {
	schemas := map[string]*hcl.BodySchema{
		"egg": eggSchema, "eggsbucket": bucketSchema, "gitlab": gitlabSchema, "repositories": repositoriesSchema,
		"runner": runnerSchema, "apex": poolSchema, "nadir": poolSchema, "rift": riftSchema, "mirror": riftMirrorSchema,
	}
	var bodies int
	var check func(path string, b *hclsyntax.Block)
	check = func(path string, b *hclsyntax.Block) {
		schema := schemas[b.Type]
		if schema == nil {
			return
		}
		bodies++
		got, gotDiags := blockContent(b.Body, schema)
		want, wantDiags := b.Body.Content(schema)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %s block: content %#v, want %#v", path, b.Type, got, want)
		}
		if !reflect.DeepEqual(gotDiags, wantDiags) {
			t.Errorf("%s: %s block: diagnostics %v, want %v", path, b.Type, gotDiags, wantDiags)
		}
		for _, inner := range b.Body.Blocks {
			check(path, inner)
		}
	}
	for _, root := range []string{"testdata", filepath.Join("..", "examples")} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasPrefix(path, root) || filepath.Ext(path) != Extension || !strings.Contains(path, "Eggs") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
			if diags.HasErrors() {
				return nil
			}
			for _, b := range f.Body.(*hclsyntax.Body).Blocks {
				check(path, b)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if bodies < 100 {
		t.Fatalf("checked only %d block bodies", bodies)
	}
}

// A list of literal strings reads as evaluating and converting it does.
func TestLiteralStringsAgreeWithEvaluation(t *testing.T) {
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"x": cty.StringVal("y")}}
	for _, c := range []struct {
		src     string
		literal bool
	}{
		{`["docker", "linux"]`, true}, {`[]`, true}, {`["e\u0301", "ﬁ"]`, true}, {`["a\nb", "\"q\""]`, true},
		{`["a", "${x}"]`, false}, {`["a", null]`, false}, {`["a", 1]`, false}, {`x`, false}, {`"docker"`, false},
	} {
		src, literal := c.src, c.literal
		expr, diags := hclsyntax.ParseExpression([]byte(src), "test.fly", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", src, diags)
		}
		got, ok := literalStrings(expr)
		v, _ := expr.Value(ctx)
		want, err := convert.Convert(v, cty.List(cty.String))
		if ok != literal {
			t.Errorf("%s: literal = %v, want %v", src, ok, literal)
		}
		if !ok {
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		var wantStrings []string
		for it := want.ElementIterator(); it.Next(); {
			_, e := it.Element()
			wantStrings = append(wantStrings, e.AsString())
		}
		if len(got) != len(wantStrings) || len(got) > 0 && !reflect.DeepEqual(got, wantStrings) {
			t.Errorf("%s: %q, want %q", src, got, wantStrings)
		}
	}
}

// A job's tags must all be carried by one egg: tags spread over several
// eggs are not enough.
func TestEggTagsAnyHasAll(t *testing.T) {
	egg := func(tags ...string) *eggDecl { return &eggDecl{egg: &Egg{Runner: Runner{Tags: tags}}} }
	idx := indexEggTags([]*eggDecl{egg("docker", "linux"), egg("gpu"), egg("docker", "arm", "linux"), egg()})
	for _, c := range []struct {
		tags []string
		want bool
	}{
		{[]string{"docker"}, true},
		{[]string{"linux", "docker"}, true},
		{[]string{"docker", "arm", "linux"}, true},
		{[]string{"docker", "gpu"}, false},
		{[]string{"gpu"}, true},
		{[]string{"windows"}, false},
		{[]string{"arm", "gpu"}, false},
		{[]string{"docker", "docker"}, true},
	} {
		if got := idx.anyHasAll(c.tags); got != c.want {
			t.Errorf("%q: %v, want %v", c.tags, got, c.want)
		}
	}
}

// An egg's directory counts when it holds config.fly, or a link to one that
// exists; its other fly files are reported as ignored.
func TestEggDirectories(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "MG/config.fly", "mothergoose {\n  cloud = \"local\"\n}\n")
	egg := func(name string) string {
		return `egg "` + name + `" {
  gitlab {
    host           = "gitlab.com"
    token          = "local://gitlab/token"
    webhook_secret = "local://gitlab/webhook"
  }
  project = "acme/` + name + `"
  runner {
    tags = ["docker"]
  }
}
`
	}
	writeFile(t, dir, "Eggs/plain/config.fly", egg("plain"))
	writeFile(t, dir, "Eggs/plain/notes.fly", "")
	writeFile(t, dir, "Eggs/linked/target.txt", egg("linked"))
	writeFile(t, dir, "Eggs/dangling/README", "")
	writeFile(t, dir, "Eggs/none/old.fly", egg("none"))
	if err := os.Symlink("target.txt", filepath.Join(dir, "Eggs", "linked", "config.fly")); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	if err := os.Symlink("missing.fly", filepath.Join(dir, "Eggs", "dangling", "config.fly")); err != nil {
		t.Fatal(err)
	}
	nest, diags := LoadNest(dir, Options{Getenv: testEnv})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	var names []string
	for _, e := range nest.Eggs {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != "linked,plain" {
		t.Errorf("eggs %v, want linked and plain", names)
	}
	var ignored []string
	for _, d := range diags.Diagnostics {
		if d.Summary == "File ignored" {
			rel, _ := filepath.Rel(dir, d.Subject.Filename)
			ignored = append(ignored, filepath.ToSlash(rel))
		}
	}
	if strings.Join(ignored, ",") != "Eggs/none/old.fly,Eggs/plain/notes.fly" {
		t.Errorf("ignored %v", ignored)
	}
}
