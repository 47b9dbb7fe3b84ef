// Package bootstrap is `gosling plan`, `gosling deploy` and `gosling
// rollback`: it turns MG/config.fly into the servers' own cloud resources
// (AWS or Yandex Cloud) and the GitLab webhooks of every egg, through the
// clouds' and GitLab's Go SDKs.
//
// The model is OpenTofu's without a state file: a Provider builds nothing
// itself but reads what exists (every resource carries the deployment's
// name in a tag, a label, an IAM path or a name prefix), the engine diffs it
// against the desired set (Desired), prints the plan, applies it in
// dependency order, undoes a failed deploy's changes, and records every
// applied change with its previous value in a Journal kept in the cloud
// itself, so `gosling rollback` works from a fresh checkout.
package bootstrap

import (
	"maps"
	"slices"
	"strings"
)

// Resource is one cloud object, desired or read. Props is its whole
// configuration, the struct of its kind: the desired set and what Read
// returns use one shape, so the diff compares them field by field
// (Comparable), and a journal's Props can make the resource again. Props
// never hold a secret value.
type Resource struct {
	// Type is the resource type, such as aws_iam_role.
	Type string `json:"type"`
	// Name is the logical name, unique within Type.
	Name  string `json:"name"`
	Props Props  `json:"props"`
	// DependsOn lists the addresses this resource needs to exist first.
	DependsOn []string `json:"depends_on,omitempty"`
	// ID is the cloud's identifier (an ARN, a Yandex ID, a queue URL, a
	// GitLab hook ID); set by Read and Create, never diffed.
	ID string `json:"id,omitempty"`
	// Outputs are attributes other resources refer to as
	// ${type.name.attr}; set by Read and Create.
	Outputs map[string]string `json:"outputs,omitempty"`
	// CreateOnly lists top-level Props keys that are set when the resource
	// is made and never diffed after, as Terraform's lifecycle
	// ignore_changes: something else owns them then, such as an ECS
	// service's desired_count once Application Auto Scaling moves it. An
	// update keeps the value read; Read marks them on what it finds, so a
	// rollback to a journaled value leaves them alone too.
	CreateOnly []string `json:"create_only,omitempty"`
	// Retain keeps the resource when it leaves the desired set (databases):
	// the plan says so and deploy never deletes it.
	Retain bool `json:"retain,omitempty"`
}

// Address is type.name.
func (r Resource) Address() string { return r.Type + "." + r.Name }

// Ref is the reference to one of r's outputs, resolved at apply time.
func Ref(address, attr string) string { return "${" + address + "." + attr + "}" }

// clone deep-copies r; Props go through JSON.
func (r Resource) clone() Resource {
	out := r.cloneMeta()
	out.Props = fromComparable(r.Type, Comparable(r.Props))
	return out
}

// cloneMeta copies r's slices and maps but not its Props, for a caller
// that replaces them.
func (r Resource) cloneMeta() Resource {
	out := r
	out.DependsOn = slices.Clone(r.DependsOn)
	out.CreateOnly = slices.Clone(r.CreateOnly)
	out.Outputs = maps.Clone(r.Outputs)
	return out
}

// refs lists the addresses referenced by ${addr.attr} anywhere in v.
func refs(v any, out map[string]bool) {
	switch x := v.(type) {
	case string:
		for s := x; ; {
			i := strings.Index(s, "${")
			if i < 0 {
				return
			}
			j := strings.Index(s[i:], "}")
			if j < 0 {
				return
			}
			ref := s[i+2 : i+j]
			if k := strings.LastIndexByte(ref, '.'); k > 0 {
				out[ref[:k]] = true
			}
			s = s[i+j+1:]
		}
	case []any:
		for _, e := range x {
			refs(e, out)
		}
	case map[string]any:
		for _, e := range x {
			refs(e, out)
		}
	}
}

// Outputs maps an address to its known outputs.
type Outputs map[string]map[string]string

// resolve replaces ${addr.attr} in v with known outputs; ok is false when
// any reference is not known yet.
func (o Outputs) resolve(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "${") {
			return x, true
		}
		var b strings.Builder
		ok := true
		s := x
		for {
			i := strings.Index(s, "${")
			if i < 0 {
				b.WriteString(s)
				break
			}
			j := strings.Index(s[i:], "}")
			if j < 0 {
				b.WriteString(s)
				break
			}
			b.WriteString(s[:i])
			ref := s[i+2 : i+j]
			k := strings.LastIndexByte(ref, '.')
			val, found := "", false
			if k > 0 {
				val, found = o[ref[:k]][ref[k+1:]]
			}
			if !found {
				ok = false
				b.WriteString(s[i : i+j+1])
			} else {
				b.WriteString(val)
			}
			s = s[i+j+1:]
		}
		return b.String(), ok
	case []any:
		out := make([]any, len(x))
		ok := true
		for i, e := range x {
			var eok bool
			out[i], eok = o.resolve(e)
			ok = ok && eok
		}
		return out, ok
	case map[string]any:
		out := make(map[string]any, len(x))
		ok := true
		for k, e := range x {
			var eok bool
			out[k], eok = o.resolve(e)
			ok = ok && eok
		}
		return out, ok
	}
	return v, true
}

// resolveResource resolves r's Props; ok is false when a reference is
// not known yet.
func (o Outputs) resolveResource(r Resource) (Resource, bool) {
	out := r.cloneMeta()
	p, ok := o.resolve(Comparable(r.Props))
	out.Props = fromComparable(r.Type, p.(map[string]any))
	return out, ok
}
