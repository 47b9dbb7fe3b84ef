package fly

import (
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Functions returns the functions fly expressions may call. getenv backs env().
func Functions(getenv func(string) (string, bool)) map[string]function.Function {
	return map[string]function.Function{
		"env":        envFunc(getenv),
		"lower":      stdlib.LowerFunc,
		"upper":      stdlib.UpperFunc,
		"title":      stdlib.TitleFunc,
		"format":     stdlib.FormatFunc,
		"formatlist": stdlib.FormatListFunc,
		"concat":     stdlib.ConcatFunc,
		"join":       stdlib.JoinFunc,
		"split":      stdlib.SplitFunc,
		"replace":    stdlib.ReplaceFunc,
		"trimspace":  stdlib.TrimSpaceFunc,
		"trimprefix": stdlib.TrimPrefixFunc,
		"trimsuffix": stdlib.TrimSuffixFunc,
		"substr":     stdlib.SubstrFunc,
		"coalesce":   stdlib.CoalesceFunc,
		"contains":   stdlib.ContainsFunc,
		"distinct":   stdlib.DistinctFunc,
		"length":     stdlib.LengthFunc,
		"lookup":     stdlib.LookupFunc,
		"merge":      stdlib.MergeFunc,
		"keys":       stdlib.KeysFunc,
		"values":     stdlib.ValuesFunc,
		"min":        stdlib.MinFunc,
		"max":        stdlib.MaxFunc,
		"ceil":       stdlib.CeilFunc,
		"floor":      stdlib.FloorFunc,
		"tostring":   stdlib.MakeToFunc(cty.String),
		"tonumber":   stdlib.MakeToFunc(cty.Number),
		"tobool":     stdlib.MakeToFunc(cty.Bool),
		"tolist":     stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
	}
}

// envFunc is env(name) or env(name, default). Without a default, an unset
// variable is an error, so a typo never silently becomes an empty value.
func envFunc(getenv func(string) (string, bool)) function.Function {
	return function.New(&function.Spec{
		Description: "Reads an environment variable of the process loading the Nest.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 2 {
				return cty.NilVal, fmt.Errorf("env takes a name and an optional default")
			}
			name := args[0].AsString()
			if v, ok := getenv(name); ok {
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.NilVal, fmt.Errorf("environment variable %s is not set; set it or give a default: env(%q, \"value\")", name, name)
		},
	})
}

// variableDecl is one `variable "name" { ... }` block.
type variableDecl struct {
	Name        string
	Type        cty.Type
	Default     cty.Value
	Description string
	DeclRange   hcl.Range
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"},
	},
}

func decodeVariableBlock(b *hcl.Block) (*variableDecl, hcl.Diagnostics) {
	v := &variableDecl{Name: b.Labels[0], Type: cty.DynamicPseudoType, DeclRange: b.DefRange}
	content, diags := b.Body.Content(variableSchema)
	if !hclsyntax.ValidIdentifier(v.Name) {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Invalid variable name",
			Detail:  "A variable name starts with a letter and holds letters, digits, underscores and dashes.",
			Subject: b.LabelRanges[0].Ptr(),
		})
	}
	if at, ok := content.Attributes["type"]; ok {
		ty, d := typeexpr.TypeConstraint(at.Expr)
		diags = append(diags, d...)
		if !d.HasErrors() {
			v.Type = ty
		}
	}
	if at, ok := content.Attributes["description"]; ok {
		d := newAttrs(nil, hcl.Attributes{"description": at}, &diags)
		v.Description = d.str("description", "")
	}
	if at, ok := content.Attributes["default"]; ok {
		val, d := at.Expr.Value(nil)
		diags = append(diags, d...)
		if !d.HasErrors() {
			c, err := convert.Convert(val, v.Type)
			if err != nil {
				v.Default = cty.DynamicVal // reported here; not again as missing
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError, Summary: "Invalid default value",
					Detail:  fmt.Sprintf("The default of variable %q does not match its type: %v.", v.Name, err),
					Subject: at.Expr.Range().Ptr(),
				})
			} else {
				v.Default = c
			}
		}
	}
	return v, diags
}

// localDecl is one attribute of a `locals` block.
type localDecl struct {
	Name string
	Expr hcl.Expression
	Attr *hcl.Attribute
}

// scope builds the evaluation context of a Nest: variables first, then locals
// in dependency order.
type scope struct {
	vars      []*variableDecl
	locals    []*localDecl
	varValues map[string]string
	getenv    func(string) (string, bool)
}

func (s *scope) evalContext() (*hcl.EvalContext, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	funcs := Functions(s.getenv)

	// Phase 1: variables.
	varVals := map[string]cty.Value{}
	firstVar := map[string]*variableDecl{}
	for _, v := range s.vars {
		if prev, dup := firstVar[v.Name]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Duplicate variable",
				Detail:  fmt.Sprintf("Variable %q was already declared at %s. Variables are shared by the whole Nest; rename one of them.", v.Name, at(prev.DeclRange)),
				Subject: v.DeclRange.Ptr(),
			})
			continue
		}
		firstVar[v.Name] = v
		val, d := s.variableValue(v)
		diags = append(diags, d...)
		varVals[v.Name] = val
	}

	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(varVals)},
		Functions: funcs,
	}

	// Phase 2: locals, each after the locals it refers to.
	byName := map[string]*localDecl{}
	for _, l := range s.locals {
		if prev, dup := byName[l.Name]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Duplicate local value",
				Detail:  fmt.Sprintf("Local value %q was already defined at %s. Locals are shared by the whole Nest; rename one of them.", l.Name, at(prev.Attr.NameRange)),
				Subject: l.Attr.NameRange.Ptr(),
			})
			continue
		}
		byName[l.Name] = l
	}
	localVals := map[string]cty.Value{}
	state := map[string]int{} // 0 new, 1 in progress, 2 done
	var visit func(l *localDecl, path []string)
	visit = func(l *localDecl, path []string) {
		switch state[l.Name] {
		case 2:
			return
		case 1:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Cycle in local values",
				Detail:  fmt.Sprintf("Local values refer to each other in a cycle: %s. Break the cycle by writing one of them as a constant.", joinPath(append(path, l.Name))),
				Subject: l.Attr.Expr.Range().Ptr(),
			})
			localVals[l.Name] = cty.DynamicVal
			state[l.Name] = 2
			return
		}
		state[l.Name] = 1
		for _, tr := range l.Expr.Variables() {
			if tr.RootName() != "local" || len(tr) < 2 {
				continue
			}
			if attr, ok := tr[1].(hcl.TraverseAttr); ok {
				if dep, ok := byName[attr.Name]; ok {
					visit(dep, append(path, l.Name))
				}
			}
		}
		ctx.Variables["local"] = cty.ObjectVal(localVals)
		val, d := l.Expr.Value(ctx)
		diags = append(diags, d...)
		if d.HasErrors() {
			val = cty.DynamicVal
		}
		localVals[l.Name] = val
		state[l.Name] = 2
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		visit(byName[n], nil)
	}
	ctx.Variables["local"] = cty.ObjectVal(localVals)
	return ctx, diags
}

func (s *scope) variableValue(v *variableDecl) (cty.Value, hcl.Diagnostics) {
	raw, ok := s.varValues[v.Name]
	if !ok && s.getenv != nil {
		raw, ok = s.getenv("GOSLING_VAR_" + v.Name)
	}
	if !ok {
		if v.Default == cty.NilVal {
			return cty.DynamicVal, hcl.Diagnostics{{
				Severity: hcl.DiagError, Summary: "No value for required variable",
				Detail:  fmt.Sprintf("Variable %q has no default. Give it one, set GOSLING_VAR_%s, or pass --var %s=VALUE.", v.Name, v.Name, v.Name),
				Subject: v.DeclRange.Ptr(),
			}}
		}
		return v.Default, nil
	}
	var val cty.Value
	if v.Type == cty.String || v.Type == cty.DynamicPseudoType {
		val = cty.StringVal(raw)
	} else {
		expr, d := hclsyntax.ParseExpression([]byte(raw), "GOSLING_VAR_"+v.Name, hcl.InitialPos)
		if d.HasErrors() {
			return cty.DynamicVal, hcl.Diagnostics{{
				Severity: hcl.DiagError, Summary: "Invalid variable value",
				Detail:  fmt.Sprintf("The value given for variable %q does not parse as %s.", v.Name, v.Type.FriendlyNameForConstraint()),
				Subject: v.DeclRange.Ptr(),
			}}
		}
		var vd hcl.Diagnostics
		val, vd = expr.Value(nil)
		if vd.HasErrors() {
			return cty.DynamicVal, vd
		}
	}
	c, err := convert.Convert(val, v.Type)
	if err != nil {
		return cty.DynamicVal, hcl.Diagnostics{{
			Severity: hcl.DiagError, Summary: "Invalid variable value",
			Detail:  fmt.Sprintf("The value given for variable %q does not match its type %s.", v.Name, v.Type.FriendlyNameForConstraint()),
			Subject: v.DeclRange.Ptr(),
		}}
	}
	return c, nil
}

func joinPath(p []string) string {
	out := ""
	for i, s := range p {
		if i > 0 {
			out += " -> "
		}
		out += "local." + s
	}
	return out
}
