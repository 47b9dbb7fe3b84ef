package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/itchyny/gojq"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// exportFlags are --json FIELDS and --jq EXPR, which every command that
// prints a list (or one record) shares, after GitHub CLI's
// cmdutil.AddJSONFlags: --json prints the named fields of each item as JSON,
// --json alone lists the fields there are, --jq filters that JSON through a
// jq expression (gojq).
type exportFlags struct {
	// Fields are the fields --json selected; none means a table.
	Fields []string
	// JQ is the --jq expression, if any.
	JQ string
	// available are the fields the command's view type has.
	available []string
}

// addJSONFlags gives cmd --json and --jq. views are values of the types
// the printed items have (view types of the REST API or the command, never
// store rows; more than one when a command prints one of several); their
// JSON field names are what --json may select.
func addJSONFlags(cmd *cobra.Command, ex *exportFlags, views ...any) {
	for _, v := range views {
		ex.available = append(ex.available, jsonFields(reflect.TypeOf(v))...)
	}
	sort.Strings(ex.available)
	ex.available = slices.Compact(ex.available)
	fl := cmd.Flags()
	fl.StringSliceVar(&ex.Fields, "json", nil, "print JSON with these `fields` (comma-separated; --json alone lists them)")
	fl.StringVar(&ex.JQ, "jq", "", "filter the JSON output through this jq `expression` (needs --json)")
	cmd.Long = strings.TrimRight(cmd.Long, "\n")
	if cmd.Long == "" {
		cmd.Long = cmd.Short + "."
	}
	cmd.Long += "\n\n"
	cmd.Long += wrapWords("JSON fields (--json): "+strings.Join(ex.available, ", ")+".", 76)

	parentErr := cmd.FlagErrorFunc()
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if c == cmd && err.Error() == "flag needs an argument: --json" {
			return &CodeError{Code: ExitError, Err: ex.fieldsError("Specify one or more comma-separated fields for `--json`")}
		}
		return parentErr(c, err)
	})
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if err := ex.check(c.Flags()); err != nil {
			return err
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
}

// check refuses unknown fields and --jq without --json.
func (ex *exportFlags) check(fl *pflag.FlagSet) error {
	if fl.Changed("json") {
		for _, f := range ex.Fields {
			if !slices.Contains(ex.available, f) {
				return &CodeError{Code: ExitError, Err: ex.fieldsError(fmt.Sprintf("Unknown JSON field: %q", f))}
			}
		}
		if len(ex.Fields) == 0 {
			return &CodeError{Code: ExitError, Err: ex.fieldsError("Specify one or more comma-separated fields for `--json`")}
		}
	}
	if ex.JQ != "" && len(ex.Fields) == 0 {
		return flagErrorf("--jq needs --json with the fields to filter")
	}
	return nil
}

func (ex *exportFlags) fieldsError(head string) error {
	return errors.New(head + ":\n  " + strings.Join(ex.available, "\n  "))
}

// Enabled tells whether JSON was asked for.
func (ex *exportFlags) Enabled() bool { return len(ex.Fields) > 0 }

// Write prints data, a view value or a slice of them, as JSON with only the
// selected fields of each item (an array stays an array), or what --jq
// makes of that: strings as they are, other values as compact JSON, one a
// line.
func (ex *exportFlags) Write(ctx context.Context, w io.Writer, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if v == nil && reflect.TypeOf(data) != nil && reflect.TypeOf(data).Kind() == reflect.Slice {
		v = []any{} // a nil list is an empty one
	}
	v = ex.pick(v)
	if ex.JQ == "" {
		return printJSON(w, v)
	}
	q, err := gojq.Parse(ex.JQ)
	if err != nil {
		return flagErrorf("--jq: %v", err)
	}
	code, err := gojq.Compile(q)
	if err != nil {
		return flagErrorf("--jq: %v", err)
	}
	iter := code.RunWithContext(ctx, v)
	for {
		out, ok := iter.Next()
		if !ok {
			return nil
		}
		if err, ok := out.(error); ok {
			var halt *gojq.HaltError
			if errors.As(err, &halt) && halt.Value() == nil {
				return nil
			}
			return fmt.Errorf("--jq: %w", err)
		}
		if s, ok := out.(string); ok {
			if _, err := fmt.Fprintln(w, s); err != nil {
				return err
			}
			continue
		}
		line, err := gojq.Marshal(out)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
			return err
		}
	}
}

// pick keeps the selected fields of an object, or of each object of an
// array.
func (ex *exportFlags) pick(v any) any {
	switch t := v.(type) {
	case []any:
		out := make([]any, len(t))
		for i, item := range t {
			out[i] = ex.pick(item)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(ex.Fields))
		for _, f := range ex.Fields {
			out[f] = t[f] // a field left out when empty is null
		}
		return out
	}
	return v
}

// jsonFields lists the JSON names of a struct type's fields (of its
// elements, for a slice), sorted.
func jsonFields(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable writes rows as an aligned table with a header on a terminal,
// and as tab-separated lines without a header in a pipe, so scripts read
// the rows alone.
func printTable(ios *IOStreams, header []string, rows [][]string) error {
	clean := func(cells []string) string {
		out := make([]string, len(cells))
		for i, c := range cells {
			out[i] = strings.Map(func(r rune) rune {
				if r == '\t' || r == '\n' || r == '\r' {
					return ' '
				}
				return r
			}, c)
		}
		return strings.Join(out, "\t")
	}
	if !ios.StdoutTTY {
		for _, r := range rows {
			if _, err := fmt.Fprintln(ios.Out, clean(r)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(ios.Out, 0, 4, 2, ' ', 0)
	if len(header) > 0 {
		fmt.Fprintln(tw, clean(header))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, clean(r))
	}
	return tw.Flush()
}

// listPrinter prints a list command's items: JSON when --json asked for it,
// else a table with a header row on a terminal; an empty list says so on a
// terminal (stderr) and prints nothing in a pipe.
type listPrinter struct {
	IO     *IOStreams
	Export *exportFlags
	// Header names the table's columns; Empty is said when there are no
	// rows.
	Header []string
	Empty  string
}

// Print writes items (a slice of view values) as JSON, or rows as a table.
func (p listPrinter) Print(ctx context.Context, items any, rows [][]string) error {
	if p.Export != nil && p.Export.Enabled() {
		return p.Export.Write(ctx, p.IO.Out, items)
	}
	if len(rows) == 0 {
		if p.IO.StdoutTTY && p.Empty != "" {
			fmt.Fprintln(p.IO.ErrOut, p.Empty)
		}
		return nil
	}
	return printTable(p.IO, p.Header, rows)
}

// wrapWords breaks text into lines of at most width characters, at spaces.
func wrapWords(text string, width int) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(text) {
		switch {
		case i == 0:
		case n+1+len(w) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}
