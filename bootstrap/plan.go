package bootstrap

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// Action is what a change does.
type Action string

// Actions of a plan, as `tofu plan` marks them: + create, ~ update, - delete.
// Retain is a resource that left the desired set but is kept (databases).
const (
	Create Action = "create"
	Update Action = "update"
	Delete Action = "delete"
	Retain Action = "retain"
)

// Unknown stands for a value only known after apply, such as the ID of a
// resource the same deploy creates.
const Unknown = "(known after apply)"

// FieldChange is one changed field of an update; Path is dotted
// (container.memory).
type FieldChange struct {
	Path   string `json:"path"`
	Before any    `json:"before"`
	After  any    `json:"after"`
}

// Change is one step of a plan. Before is the resource as read (nil for a
// create), After as desired (nil for a delete), with references resolved
// where known.
type Change struct {
	Action  Action        `json:"action"`
	Address string        `json:"address"`
	Before  *Resource     `json:"before,omitempty"`
	After   *Resource     `json:"after,omitempty"`
	Fields  []FieldChange `json:"fields,omitempty"`

	// desired is After with the references not known at plan time still
	// in place; apply resolves them.
	desired *Resource
}

// Plan is the ordered set of changes that makes what exists what is
// desired: creates and updates in dependency order, then deletes in the
// reverse order.
type Plan struct {
	Deployment string   `json:"deployment"`
	Cloud      string   `json:"cloud"`
	Changes    []Change `json:"changes"`
	// Unchanged counts desired resources that already match.
	Unchanged int `json:"unchanged"`
}

// Empty tells whether the plan changes nothing (retained resources aside).
func (p *Plan) Empty() bool {
	for _, c := range p.Changes {
		if c.Action != Retain {
			return false
		}
	}
	return true
}

// Count returns how many changes have action a.
func (p *Plan) Count(a Action) int {
	n := 0
	for _, c := range p.Changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// Diff compares the desired resources with the existing ones. typeOrder
// ranks resource types (earlier types are made first) and breaks ties
// between resources the dependencies do not order. A desired resource's
// CreateOnly keys take the value read when it exists, so they never make
// an update nor change one.
func Diff(desired, actual []Resource, typeOrder []string) (*Plan, error) {
	have := map[string]Resource{}
	outs := Outputs{}
	for _, a := range actual {
		a = a.clone()
		have[a.Address()] = a
		outs[a.Address()] = a.Outputs
	}
	want := map[string]bool{}
	p := &Plan{}
	var upserts []Change
	for _, d := range desired {
		addr := d.Address()
		if want[addr] {
			return nil, fmt.Errorf("resource %s is desired twice", addr)
		}
		want[addr] = true
		raw, _ := outs.resolveResource(d)
		shown := Comparable(raw.Props)
		markUnknown(shown)
		resolved := raw.cloneMeta()
		resolved.Props = fromComparable(d.Type, shown)
		a, exists := have[addr]
		if !exists {
			r := resolved
			upserts = append(upserts, Change{Action: Create, Address: addr, After: &r, desired: &raw})
			continue
		}
		// Create-only keys keep what exists, in the plan and in what apply
		// sends.
		read, sent := Comparable(a.Props), Comparable(raw.Props)
		if len(d.CreateOnly) > 0 {
			for _, k := range d.CreateOnly {
				if v, ok := read[k]; ok {
					shown[k], sent[k] = v, v
				}
			}
			resolved.Props, raw.Props = fromComparable(d.Type, shown), fromComparable(d.Type, sent)
		}
		fields := diffProps("", read, shown)
		if len(fields) == 0 {
			p.Unchanged++
			continue
		}
		before, after := a, resolved
		after.ID, after.Outputs = a.ID, a.Outputs
		upserts = append(upserts, Change{Action: Update, Address: addr, Before: &before, After: &after, Fields: fields, desired: &raw})
	}
	var deletes []Change
	for addr, a := range have {
		if want[addr] {
			continue
		}
		before := a
		action := Delete
		if a.Retain {
			action = Retain
		}
		deletes = append(deletes, Change{Action: action, Address: addr, Before: &before})
	}
	var err error
	if upserts, err = order(upserts, typeOrder, func(c Change) []string { return depsOf(*c.desired) }); err != nil {
		return nil, err
	}
	if deletes, err = order(deletes, typeOrder, func(c Change) []string { return depsOf(*c.Before) }); err != nil {
		return nil, err
	}
	slices.Reverse(deletes)
	p.Changes = append(upserts, deletes...)
	return p, nil
}

// depsOf is DependsOn plus every address the props refer to.
func depsOf(r Resource) []string {
	set := map[string]bool{}
	for _, d := range r.DependsOn {
		set[d] = true
	}
	refs(Comparable(r.Props), set)
	return slices.Sorted(maps.Keys(set))
}

// markUnknown shows references not known yet as Unknown.
func markUnknown(m map[string]any) {
	for k, v := range m {
		m[k] = unknownize(v)
	}
}

func unknownize(v any) any {
	switch x := v.(type) {
	case string:
		if strings.Contains(x, "${") {
			return Unknown
		}
	case []any:
		for i := range x {
			x[i] = unknownize(x[i])
		}
	case map[string]any:
		markUnknown(x)
	}
	return v
}

// diffProps lists the fields that differ; maps are compared key by key,
// everything else whole.
func diffProps(prefix string, before, after map[string]any) []FieldChange {
	var out []FieldChange
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		b, bok := before[k]
		a, aok := after[k]
		bm, bIsMap := b.(map[string]any)
		am, aIsMap := a.(map[string]any)
		if bIsMap && aIsMap {
			out = append(out, diffProps(path, bm, am)...)
			continue
		}
		if bok && aok && reflect.DeepEqual(a, b) {
			continue
		}
		out = append(out, FieldChange{Path: path, Before: b, After: a})
	}
	return out
}

// order sorts changes so that every change comes after those it depends on
// (among the changes), breaking ties by type rank and address.
func order(cs []Change, typeOrder []string, deps func(Change) []string) ([]Change, error) {
	rank := func(addr string) int {
		t, _, _ := strings.Cut(addr, ".")
		if i := slices.Index(typeOrder, t); i >= 0 {
			return i
		}
		return len(typeOrder)
	}
	less := func(a, b Change) int {
		return cmp.Or(cmp.Compare(rank(a.Address), rank(b.Address)), cmp.Compare(a.Address, b.Address))
	}
	slices.SortFunc(cs, less)
	idx := map[string]int{}
	for i, c := range cs {
		idx[c.Address] = i
	}
	indeg := make([]int, len(cs))
	next := make([][]int, len(cs))
	for i, c := range cs {
		for _, d := range deps(c) {
			if j, ok := idx[d]; ok && j != i {
				indeg[i]++
				next[j] = append(next[j], i)
			}
		}
	}
	var ready []int
	for i := range cs {
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]Change, 0, len(cs))
	for len(ready) > 0 {
		sort.Ints(ready)
		i := ready[0]
		ready = ready[1:]
		out = append(out, cs[i])
		for _, j := range next[i] {
			if indeg[j]--; indeg[j] == 0 {
				ready = append(ready, j)
			}
		}
	}
	if len(out) != len(cs) {
		var cyc []string
		for i, c := range cs {
			if indeg[i] > 0 {
				cyc = append(cyc, c.Address)
			}
		}
		return nil, fmt.Errorf("resources depend on each other in a cycle: %s", strings.Join(cyc, ", "))
	}
	return out, nil
}
