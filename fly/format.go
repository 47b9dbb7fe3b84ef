package fly

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns src in canonical form. It refuses source that does not
// parse, so formatting never changes what a broken file means.
func Format(filename string, src []byte) ([]byte, hcl.Diagnostics) {
	if _, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos); diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), nil
}

// FlyFiles lists the .fly files under dir, skipping hidden directories.
func FlyFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), Extension) {
			out = append(out, path)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// FormatResult tells what formatting did to one file.
type FormatResult struct {
	Path    string
	Changed bool
}

// FormatFiles formats the given files; with write, changed files are
// rewritten in place. Files that do not parse are left alone and reported.
func FormatFiles(paths []string, write bool) ([]FormatResult, *Diagnostics) {
	out := &Diagnostics{Files: map[string]*hcl.File{}}
	var results []FormatResult
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			out.Diagnostics = append(out.Diagnostics, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read file", Detail: err.Error()})
			continue
		}
		formatted, diags := Format(p, src)
		if diags.HasErrors() {
			out.Diagnostics = append(out.Diagnostics, diags...)
			out.Files[p] = &hcl.File{Bytes: src}
			continue
		}
		changed := !bytes.Equal(src, formatted)
		results = append(results, FormatResult{Path: p, Changed: changed})
		if changed && write {
			st, err := os.Stat(p)
			if err != nil {
				out.Diagnostics = append(out.Diagnostics, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot write file", Detail: err.Error()})
				continue
			}
			if err := writeFileAtomic(p, formatted, st.Mode().Perm()); err != nil {
				out.Diagnostics = append(out.Diagnostics, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot write file", Detail: err.Error()})
			}
		}
	}
	return results, out
}

// writeFileAtomic replaces a file so that a crash leaves the old or the new
// content, never half of it.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}
