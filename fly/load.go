// Package fly reads a Nest: the GitOps repository of Gosling, written in fly,
// a strongly typed dialect of HCL. LoadNest parses and type-checks every file
// and returns one plain Nest value, or diagnostics with file:line:column.
package fly

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Extension is the file extension of fly files.
const Extension = ".fly"

// Diagnostics are the problems found in a Nest, with the parsed files their
// ranges point into (for printing source snippets).
type Diagnostics struct {
	hcl.Diagnostics
	Files map[string]*hcl.File
}

// Error makes Diagnostics usable as an error; it lists every diagnostic.
func (d *Diagnostics) Error() string { return d.Diagnostics.Error() }

// Options changes how a Nest loads.
type Options struct {
	// Vars sets variables, as `--var name=value` does.
	Vars map[string]string
	// Getenv backs env() and GOSLING_VAR_ variables; os.LookupEnv by default.
	// Eggs are decoded in parallel, so it may be called from several
	// goroutines at once.
	Getenv func(string) (string, bool)
}

// fileKind is what a file in the Nest declares.
type fileKind int

const (
	fileEgg fileKind = iota
	fileJob
	fileUF
	fileMG
)

// nestFile is one fly file found in the Nest.
type nestFile struct {
	kind fileKind
	rel  string // relative to the Nest, with forward slashes
	path string // as given to the parser and shown in diagnostics
	// eggDir is set on Eggs/<name>/config.fly while the directory is still
	// to be listed: the file may not exist (absent), and the directory's
	// other fly files are ignored (ignored lists their paths in the Nest).
	eggDir  bool
	absent  bool
	ignored []string
	src     []byte
	readErr error
	file    *hcl.File
	// parseDiags are the syntax errors of the file.
	parseDiags hcl.Diagnostics
}

type secretUse struct {
	ref SecretRef
	rng hcl.Range
}

type loader struct {
	dir          string
	opts         Options
	ctx          *hcl.EvalContext
	secretUses   []secretUse
	secretsBlock *hcl.Range
}

// LoadNest loads the Nest in dir. When the returned diagnostics have errors,
// the Nest is nil; warnings may come with a valid Nest.
func LoadNest(dir string, opts ...Options) (*Nest, *Diagnostics) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Getenv == nil {
		o.Getenv = os.LookupEnv
	}
	l := &loader{dir: dir, opts: o}
	return l.load()
}

func (l *loader) load() (*Nest, *Diagnostics) {
	found, diags := l.discover()
	// Listing egg directories, reading and parsing take most of a load and
	// each file's are independent of the others'.
	parallel(len(found), func(i int) { found[i].read() })
	var files []*nestFile
	for _, f := range found {
		for _, rel := range f.ignored {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning, Summary: "File ignored",
				Detail:  fmt.Sprintf("%s is not read: an egg is declared in its directory's config.fly.", rel),
				Subject: &hcl.Range{Filename: filepath.Join(l.dir, filepath.FromSlash(rel)), Start: hcl.InitialPos, End: hcl.InitialPos},
			})
		}
		if !f.absent {
			files = append(files, f)
		}
	}
	for _, f := range files {
		if f.readErr != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read file", Detail: f.readErr.Error()})
		}
	}
	if len(files) == 0 && diags.HasErrors() {
		sortDiagnostics(diags)
		return nil, &Diagnostics{Diagnostics: diags, Files: map[string]*hcl.File{}}
	}
	nest, out := l.loadFiles(files)
	out.Diagnostics = append(diags, out.Diagnostics...)
	sortDiagnostics(out.Diagnostics)
	return nest, out
}

// loadFiles parses, evaluates and checks files already read.
func (l *loader) loadFiles(files []*nestFile) (*Nest, *Diagnostics) {
	out := &Diagnostics{Files: make(map[string]*hcl.File, len(files))}
	parseAll(files)
	for _, f := range files {
		out.Files[f.path] = f.file
	}

	// Phase 1: the top-level structure of every file.
	type mainBlock struct {
		f *nestFile
		b *hcl.Block
	}
	var mains []mainBlock
	sc := &scope{varValues: l.opts.Vars, getenv: l.opts.Getenv}
	for _, f := range files {
		if f.file == nil {
			continue
		}
		out.Diagnostics = append(out.Diagnostics, f.parseDiags...)
		if f.parseDiags.HasErrors() {
			// A file that does not parse is reported by its syntax errors
			// only: its partial body would add confusing follow-up errors.
			continue
		}
		content, d := f.file.Body.Content(fileSchemas[f.kind])
		out.Diagnostics = append(out.Diagnostics, d...)
		var found []*hcl.Block
		for _, b := range content.Blocks {
			switch b.Type {
			case "variable":
				v, d := decodeVariableBlock(b)
				out.Diagnostics = append(out.Diagnostics, d...)
				sc.vars = append(sc.vars, v)
			case "locals":
				attrs, d := b.Body.JustAttributes()
				out.Diagnostics = append(out.Diagnostics, d...)
				for _, name := range sortedAttrNames(attrs) {
					at := attrs[name]
					sc.locals = append(sc.locals, &localDecl{Name: name, Expr: at.Expr, Attr: at})
				}
			default:
				found = append(found, b)
			}
		}
		switch {
		case len(found) == 0 && !d.HasErrors():
			out.Diagnostics = append(out.Diagnostics, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Nothing declared",
				Detail:  fmt.Sprintf("%s must declare %s.", f.rel, mainBlockHint[f.kind]),
				Subject: &hcl.Range{Filename: f.path, Start: hcl.InitialPos, End: hcl.InitialPos},
			})
		case len(found) > 1:
			for _, b := range found[1:] {
				out.Diagnostics = append(out.Diagnostics, &hcl.Diagnostic{
					Severity: hcl.DiagError, Summary: "One declaration per file",
					Detail:  fmt.Sprintf("%s already declares %s at %s; move this one to a file of its own.", f.rel, describeBlock(found[0]), at(found[0].DefRange)),
					Subject: b.DefRange.Ptr(),
				})
			}
		}
		if len(found) > 0 {
			mains = append(mains, mainBlock{f, found[0]})
		}
	}

	// Phase 2: variables and locals, shared by the whole Nest.
	ctx, d := sc.evalContext()
	out.Diagnostics = append(out.Diagnostics, d...)
	l.ctx = ctx

	// Phase 3: the blocks themselves. Eggs and buckets, nearly all of a
	// Nest, decode in parallel: each reads only its own block and the shared
	// evaluation context, and records its secret uses on a loader of its own.
	type decoded struct {
		decl  *eggDecl
		diags hcl.Diagnostics
		uses  []secretUse
	}
	var eggMains []mainBlock
	for _, m := range mains {
		if m.b.Type == "egg" || m.b.Type == "eggsbucket" {
			eggMains = append(eggMains, m)
		}
	}
	decodedEggs := make([]decoded, len(eggMains))
	parallel(len(eggMains), func(i int) {
		el := &loader{dir: l.dir, opts: l.opts, ctx: l.ctx}
		b := eggMains[i].b
		decl, d := el.decodeEggBlock(b, EggKind(b.Type))
		decodedEggs[i] = decoded{decl, d, el.secretUses}
	})

	nest := &Nest{Dir: l.dir, UglyFox: DefaultUglyFox()}
	eggs := make([]*eggDecl, 0, len(eggMains))
	var jobs []*jobDecl
	var mg *mgDecl
	for _, m := range mains {
		version := contentVersion(m.f.src)
		switch m.b.Type {
		case "egg", "eggsbucket":
			r := decodedEggs[len(eggs)]
			decl := r.decl
			out.Diagnostics = append(out.Diagnostics, r.diags...)
			l.secretUses = append(l.secretUses, r.uses...)
			decl.egg.File, decl.egg.Version = m.f.rel, version
			eggs = append(eggs, decl)
			if dir := filepath.Base(filepath.Dir(m.f.path)); dir != decl.egg.Name {
				out.Diagnostics = append(out.Diagnostics, &hcl.Diagnostic{
					Severity: hcl.DiagWarning, Summary: "Egg name differs from its directory",
					Detail:  fmt.Sprintf("%s %q lives in Eggs/%s/. Name the directory after the egg so it is easy to find.", m.b.Type, decl.egg.Name, dir),
					Subject: m.b.LabelRanges[0].Ptr(),
				})
			}
		case "job":
			decl, d := l.decodeJobBlock(m.b)
			out.Diagnostics = append(out.Diagnostics, d...)
			decl.job.File, decl.job.Version = m.f.rel, version
			jobs = append(jobs, decl)
		case "uglyfox":
			uf, d := l.decodeUglyFoxBlock(m.b)
			out.Diagnostics = append(out.Diagnostics, d...)
			uf.File = m.f.rel
			nest.UglyFox = uf
		case "mothergoose":
			decl, d := l.decodeMotherGooseBlock(m.b)
			out.Diagnostics = append(out.Diagnostics, d...)
			decl.mg.File = m.f.rel
			mg = decl
			nest.MotherGoose = *decl.mg
		}
	}

	// Phase 4: checks across files.
	out.Diagnostics = append(out.Diagnostics, l.crossCheck(eggs, jobs, mg)...)
	if out.HasErrors() {
		return nil, out
	}
	nest.Eggs = make([]Egg, 0, len(eggs))
	for _, e := range eggs {
		nest.Eggs = append(nest.Eggs, *e.egg)
	}
	for _, j := range jobs {
		nest.Jobs = append(nest.Jobs, *j.job)
	}
	sort.Slice(nest.Eggs, func(i, j int) bool { return nest.Eggs[i].Name < nest.Eggs[j].Name })
	sort.Slice(nest.Jobs, func(i, j int) bool { return nest.Jobs[i].Name < nest.Jobs[j].Name })
	if nest.Jobs == nil {
		nest.Jobs = []Job{}
	}
	return nest, out
}

var mainBlockHint = map[fileKind]string{
	fileEgg: `one egg "name" { ... } or eggsbucket "name" { ... } block`,
	fileJob: `one job "name" { ... } block`,
	fileUF:  `an uglyfox { ... } block`,
	fileMG:  `a mothergoose { ... } block`,
}

var fileSchemas = map[fileKind]*hcl.BodySchema{
	fileEgg: {Blocks: append(commonBlocks(),
		hcl.BlockHeaderSchema{Type: "egg", LabelNames: []string{"name"}},
		hcl.BlockHeaderSchema{Type: "eggsbucket", LabelNames: []string{"name"}})},
	fileJob: {Blocks: append(commonBlocks(), hcl.BlockHeaderSchema{Type: "job", LabelNames: []string{"name"}})},
	fileUF:  {Blocks: append(commonBlocks(), hcl.BlockHeaderSchema{Type: "uglyfox"})},
	fileMG:  {Blocks: append(commonBlocks(), hcl.BlockHeaderSchema{Type: "mothergoose"})},
}

func commonBlocks() []hcl.BlockHeaderSchema {
	return []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
	}
}

func describeBlock(b *hcl.Block) string {
	if len(b.Labels) > 0 {
		return fmt.Sprintf("%s %q", b.Type, b.Labels[0])
	}
	return b.Type
}

// discover finds the Nest's fly files and reads them.
func (l *loader) discover() ([]*nestFile, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	st, err := os.Stat(l.dir)
	if err != nil || !st.IsDir() {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError, Summary: "Nest not found",
			Detail: fmt.Sprintf("%s is not a directory. Create a Nest with `gosling init %s`.", l.dir, l.dir),
		}}
	}
	var files []*nestFile
	add := func(kind fileKind, rel string) *nestFile {
		f := &nestFile{kind: kind, rel: rel, path: filepath.Join(l.dir, filepath.FromSlash(rel))}
		files = append(files, f)
		return f
	}

	// Eggs/<name>/config.fly; each directory is listed when it is read.
	if entries, err := os.ReadDir(filepath.Join(l.dir, "Eggs")); err == nil {
		for _, e := range entries {
			rel := "Eggs/" + e.Name()
			switch {
			case e.IsDir():
				add(fileEgg, rel+"/config.fly").eggDir = true
			case strings.HasSuffix(e.Name(), Extension):
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagWarning, Summary: "File ignored",
					Detail:  fmt.Sprintf("%s is not read: eggs live in Eggs/<name>/config.fly.", rel),
					Subject: &hcl.Range{Filename: filepath.Join(l.dir, filepath.FromSlash(rel)), Start: hcl.InitialPos, End: hcl.InitialPos},
				})
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read Eggs", Detail: err.Error()})
	}

	// Jobs/<name>.fly
	if entries, err := os.ReadDir(filepath.Join(l.dir, "Jobs")); err == nil {
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), Extension) {
				add(fileJob, "Jobs/"+e.Name())
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read Jobs", Detail: err.Error()})
	}

	if _, err := os.Stat(filepath.Join(l.dir, "UF", "config.fly")); err == nil {
		add(fileUF, "UF/config.fly")
	}
	if _, err := os.Stat(filepath.Join(l.dir, "MG", "config.fly")); err == nil {
		add(fileMG, "MG/config.fly")
	} else {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Missing MG/config.fly",
			Detail: fmt.Sprintf("A Nest needs MG/config.fly, the mothergoose block that says where the servers run. "+
				"Run `gosling init %s` to create one, or check that %s is the Nest's root.", l.dir, l.dir),
		})
	}
	return files, diags
}

// read lists an egg's directory (see eggDir), then reads and parses the file.
func (f *nestFile) read() {
	if f.eggDir {
		f.listEggDir()
		if f.absent {
			return
		}
	}
	f.src, f.readErr = os.ReadFile(f.path)
	f.parse()
}

// listEggDir finds whether the egg's directory holds config.fly, as
// os.Stat would (a symbolic link counts when its target exists), and which
// other fly files it holds.
func (f *nestFile) listEggDir() {
	dir := filepath.Dir(f.path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		// A directory that can be searched but not listed.
		_, err := os.Stat(f.path)
		f.absent = err != nil
		return
	}
	f.absent = true
	for _, e := range entries {
		switch {
		case e.Name() == "config.fly":
			if e.Type()&fs.ModeSymlink != 0 {
				_, err := os.Stat(f.path)
				f.absent = err != nil
			} else {
				f.absent = false
			}
		case !e.IsDir() && strings.HasSuffix(e.Name(), Extension):
			f.ignored = append(f.ignored, path.Dir(f.rel)+"/"+e.Name())
		}
	}
}

// parse parses the file once it has been read.
func (f *nestFile) parse() {
	if f.src != nil && f.file == nil {
		f.file, f.parseDiags = hclsyntax.ParseConfig(f.src, f.path, hcl.InitialPos)
	}
}

// parseAll parses files already read, in parallel.
func parseAll(files []*nestFile) {
	parallel(len(files), func(i int) { files[i].parse() })
}

// parallel calls fn(i) for every i in [0, n) on up to GOMAXPROCS
// goroutines and returns when all calls have returned.
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				fn(i)
			}
		})
	}
	wg.Wait()
}

func contentVersion(src []byte) string {
	sum := sha256.Sum256(src)
	return hex.EncodeToString(sum[:6])
}

func sortedAttrNames(attrs hcl.Attributes) []string {
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return attrs[names[i]].Range.Start.Byte < attrs[names[j]].Range.Start.Byte
	})
	return names
}

// sortDiagnostics orders diagnostics by file and position, so output is stable.
func sortDiagnostics(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Byte != b.Start.Byte:
			return a.Start.Byte < b.Start.Byte
		}
		return false
	})
}

// nestPath resolves a path written in the Nest against the Nest's
// directory, so `gosling server --nest ../nest` finds the same files from
// anywhere; absolute and empty paths stay as they are.
func (l *loader) nestPath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	dir, err := filepath.Abs(l.dir)
	if err != nil {
		return p
	}
	return filepath.Join(dir, p)
}
