// Package tofu drives OpenTofu through terraform-exec: one workspace per
// runner under a state directory, with locking, embedded modules for each
// (cloud, runner kind), typed variables and streamed output. It knows
// nothing of Temporal; callers pass a line callback to turn output into
// heartbeats.
package tofu

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

//go:embed modules
var modulesFS embed.FS

// Module names a built-in module by cloud and runner kind.
type Module struct {
	Cloud string `json:"cloud"`
	Kind  string `json:"kind"`
	// Source, when set, is a user's own module (any OpenTofu module source)
	// used instead of the built-in one. It must declare the built-in
	// module's variables and outputs.
	Source string `json:"source,omitempty"`
}

func (m Module) String() string {
	if m.Source != "" {
		return m.Source
	}
	return m.Cloud + "/" + m.Kind
}

func (m Module) dir() string { return "modules/" + m.Cloud + "/" + m.Kind }

// BuiltinModules lists the embedded modules.
func BuiltinModules() []Module {
	var out []Module
	clouds, _ := fs.ReadDir(modulesFS, "modules")
	for _, c := range clouds {
		kinds, _ := fs.ReadDir(modulesFS, "modules/"+c.Name())
		for _, k := range kinds {
			out = append(out, Module{Cloud: c.Name(), Kind: k.Name()})
		}
	}
	return out
}

// ModuleFS returns the files of a built-in module.
func ModuleFS(m Module) (fs.FS, error) {
	sub, err := fs.Sub(modulesFS, m.dir())
	if err != nil {
		return nil, err
	}
	if _, err := fs.Stat(sub, "main.tf"); err != nil {
		return nil, fmt.Errorf("no built-in module for cloud %q and kind %q", m.Cloud, m.Kind)
	}
	return sub, nil
}

// Variable is a module's declared input variable.
type Variable struct {
	Name     string
	Required bool // no default
}

// Signature is what a module declares: its variables and outputs.
type Signature struct {
	Variables []Variable
	Outputs   []string
}

// Inspect reads a built-in module's variables and outputs from its source.
func Inspect(m Module) (Signature, error) {
	fsys, err := ModuleFS(m)
	if err != nil {
		return Signature{}, err
	}
	return inspectFS(fsys)
}

func inspectFS(fsys fs.FS) (Signature, error) {
	var sig Signature
	files, err := fs.Glob(fsys, "*.tf")
	if err != nil {
		return sig, err
	}
	schema := &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "output", LabelNames: []string{"name"}},
	}}
	for _, name := range files {
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			return sig, err
		}
		f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		if diags.HasErrors() {
			return sig, fmt.Errorf("parse %s: %s", name, diags.Error())
		}
		content, _, diags := f.Body.PartialContent(schema)
		if diags.HasErrors() {
			return sig, fmt.Errorf("parse %s: %s", name, diags.Error())
		}
		for _, b := range content.Blocks {
			switch b.Type {
			case "variable":
				attrs, _ := b.Body.JustAttributes()
				_, hasDefault := attrs["default"]
				if !hasDefault {
					// JustAttributes fails on nested blocks (validation);
					// look again with a schema that tolerates them.
					c, _, _ := b.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "default"}}})
					_, hasDefault = c.Attributes["default"]
				}
				sig.Variables = append(sig.Variables, Variable{Name: b.Labels[0], Required: !hasDefault})
			case "output":
				sig.Outputs = append(sig.Outputs, b.Labels[0])
			}
		}
	}
	sort.Slice(sig.Variables, func(i, j int) bool { return sig.Variables[i].Name < sig.Variables[j].Name })
	sort.Strings(sig.Outputs)
	return sig, nil
}

// CheckVariables compares the variables Gosling passes with what a module
// declares: every passed variable must be declared and every required one
// passed.
func CheckVariables(m Module, vars map[string]any) error {
	sig, err := Inspect(m)
	if err != nil {
		return err
	}
	declared := map[string]bool{}
	var problems []string
	for _, v := range sig.Variables {
		declared[v.Name] = true
		if _, ok := vars[v.Name]; v.Required && !ok {
			problems = append(problems, "missing required variable "+v.Name)
		}
	}
	for name := range vars {
		if !declared[name] {
			problems = append(problems, "undeclared variable "+name)
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("module %s: %s", m, strings.Join(problems, "; "))
	}
	return nil
}
