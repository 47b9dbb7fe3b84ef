package bootstrap

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// WriteText prints the plan as `tofu plan` does: one block per change,
// marked + (create), ~ (update, only the changed fields, old -> new),
// - (delete) and # (retained), then a summary line.
func (p *Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	if p.Empty() {
		fmt.Fprintf(&b, "No changes. The %s deployment %q matches the Nest (%d resources).\n", p.Cloud, p.Deployment, p.Unchanged)
	}
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			fmt.Fprintf(&b, "  # %s will be created\n  + resource %q %q {\n", c.Address, c.After.Type, c.After.Name)
			writeProps(&b, "      + ", Comparable(c.After.Props), 0)
			b.WriteString("    }\n\n")
		case Update:
			fmt.Fprintf(&b, "  # %s will be updated in-place\n  ~ resource %q %q {\n", c.Address, c.After.Type, c.After.Name)
			if c.Before.ID != "" {
				fmt.Fprintf(&b, "        id = %s\n", quote(c.Before.ID))
			}
			for _, f := range c.Fields {
				switch {
				case f.Before == nil:
					fmt.Fprintf(&b, "      + %s = %s\n", f.Path, value(f.After))
				case f.After == nil:
					fmt.Fprintf(&b, "      - %s = %s -> null\n", f.Path, value(f.Before))
				default:
					fmt.Fprintf(&b, "      ~ %s = %s -> %s\n", f.Path, value(f.Before), value(f.After))
				}
			}
			b.WriteString("    }\n\n")
		case Delete:
			fmt.Fprintf(&b, "  # %s will be destroyed\n  - resource %q %q {\n", c.Address, c.Before.Type, c.Before.Name)
			if c.Before.ID != "" {
				fmt.Fprintf(&b, "      - id = %s\n", quote(c.Before.ID))
			}
			b.WriteString("    }\n\n")
		case Retain:
			fmt.Fprintf(&b, "  # %s is no longer in the Nest but is retained (delete it by hand)\n\n", c.Address)
		}
	}
	if !p.Empty() {
		fmt.Fprintf(&b, "Plan: %d to add, %d to change, %d to destroy.\n", p.Count(Create), p.Count(Update), p.Count(Delete))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the plan as one JSON document.
func (p *Plan) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

func writeProps(b *strings.Builder, lead string, props map[string]any, depth int) {
	pad := strings.Repeat("    ", depth)
	keys := slices.Sorted(maps.Keys(props))
	width := 0
	for _, k := range keys {
		width = max(width, len(k))
	}
	for _, k := range keys {
		if m, ok := props[k].(map[string]any); ok && len(m) > 0 {
			fmt.Fprintf(b, "%s%s%s {\n", lead, pad, k)
			writeProps(b, lead, m, depth+1)
			fmt.Fprintf(b, "%s%s}\n", strings.Repeat(" ", len(lead)), pad)
			continue
		}
		if l, ok := props[k].([]any); ok && len(l) > 1 && isMapList(l) {
			// Policy statements and the like: one per line.
			fmt.Fprintf(b, "%s%s%-*s = [\n", lead, pad, width, k)
			for _, e := range l {
				fmt.Fprintf(b, "%s%s    %s,\n", lead, pad, value(e))
			}
			fmt.Fprintf(b, "%s%s]\n", lead, pad)
			continue
		}
		fmt.Fprintf(b, "%s%s%-*s = %s\n", lead, pad, width, k, value(props[k]))
	}
}

func isMapList(l []any) bool {
	for _, e := range l {
		if _, ok := e.(map[string]any); !ok {
			return false
		}
	}
	return true
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// value renders a field's value on one line: strings quoted, lists and
// maps as compact JSON.
func value(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if x == Unknown {
			return x
		}
		return quote(x)
	case float64:
		// JSON numbers: whole ones as integers (a memory of 134217728
		// bytes, not 1.34217728e+08), others in the shortest form.
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int, int32, int64:
		return fmt.Sprint(x)
	case bool:
		return fmt.Sprint(x)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(j)
}
