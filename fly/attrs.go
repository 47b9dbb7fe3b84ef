package fly

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// sensitive marks a diagnostic whose subject is a plaintext secret: writers
// must not print the subject's source text.
type sensitive struct{}

// IsSensitive tells whether a diagnostic's subject holds a secret that must
// not be printed.
func IsSensitive(d *hcl.Diagnostic) bool {
	_, ok := d.Extra.(sensitive)
	return ok
}

// attrs reads the attributes of one block with fly's typing rules, collecting
// diagnostics instead of stopping at the first.
type attrs struct {
	ctx   *hcl.EvalContext
	m     hcl.Attributes
	diags *hcl.Diagnostics
}

func newAttrs(ctx *hcl.EvalContext, m hcl.Attributes, diags *hcl.Diagnostics) *attrs {
	return &attrs{ctx: ctx, m: m, diags: diags}
}

func (a *attrs) has(name string) bool {
	_, ok := a.m[name]
	return ok
}

func (a *attrs) rng(name string) *hcl.Range {
	if at, ok := a.m[name]; ok {
		r := at.Expr.Range()
		return &r
	}
	return nil
}

func (a *attrs) errorf(name, summary, format string, args ...any) {
	*a.diags = append(*a.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  a.rng(name),
	})
}

// value evaluates an attribute. ok is false when it is absent, null, or did
// not evaluate (a diagnostic is then recorded).
func (a *attrs) value(name string) (cty.Value, bool) {
	at, ok := a.m[name]
	if !ok {
		return cty.NilVal, false
	}
	if lit, ok := literalString(at.Expr); ok {
		return lit, true
	}
	v, d := at.Expr.Value(a.ctx)
	*a.diags = append(*a.diags, d...)
	if d.HasErrors() || v.IsNull() {
		return cty.NilVal, false
	}
	if !v.IsWhollyKnown() {
		// Every fly value is known at load time; an unknown one stands for an
		// error already reported (an undefined or cyclic reference).
		return cty.NilVal, false
	}
	return v, true
}

// typed evaluates and converts an attribute, explaining a type mismatch with
// an example of a right value. example is called only for that diagnostic:
// most examples are formatted from a default, and most attributes are right.
func (a *attrs) typed(name string, want cty.Type, example func() string) (cty.Value, bool) {
	v, ok := a.value(name)
	if !ok {
		return cty.NilVal, false
	}
	return a.convert(name, v, want, example)
}

// convert converts an attribute's value as typed does.
func (a *attrs) convert(name string, v cty.Value, want cty.Type, example func() string) (cty.Value, bool) {
	if literalMismatch(a.m[name].Expr, v.Type(), want) {
		a.errorf(name, "Incorrect attribute value type", "%q takes %s, such as %s = %s; got %s. fly does not turn one into the other: write the value as the example does.",
			name, want.FriendlyNameForConstraint(), name, example(), v.Type().FriendlyName())
		return cty.NilVal, false
	}
	c, err := convert.Convert(v, want)
	if err != nil {
		a.errorf(name, "Incorrect attribute value type", "%q takes %s, such as %s = %s; got %s.", name, want.FriendlyNameForConstraint(), name, example(), v.Type().FriendlyName())
		return cty.NilVal, false
	}
	if c.IsNull() {
		return cty.NilVal, false
	}
	return c, true
}

// example returns an example for typed that is the text s.
func example(s string) func() string { return func() string { return s } }

// quotedExample returns an example for typed that is the quoted text of v.
func quotedExample(v fmt.Stringer) func() string {
	return func() string { return strconv.Quote(v.String()) }
}

// literalMismatch tells a value written as one primitive type where
// another is wanted (max_concurrent = "10", run_untagged = "true"), which
// HCL would convert: fly is typed more strictly. A value that refers to a
// variable is converted as HCL does, since --var and GOSLING_VAR_* give
// variables as strings.
func literalMismatch(expr hcl.Expression, got, want cty.Type) bool {
	if !want.IsPrimitiveType() || !got.IsPrimitiveType() || got.Equals(want) || got == cty.DynamicPseudoType {
		return false
	}
	return len(expr.Variables()) == 0
}

// rawLength is the number of elements of a list attribute, evaluated again
// without recording diagnostics; ok is false when it is not a list.
func (a *attrs) rawLength(name string) (int, bool) {
	at, ok := a.m[name]
	if !ok {
		return 0, false
	}
	v, d := at.Expr.Value(a.ctx)
	if d.HasErrors() || v.IsNull() || !v.IsWhollyKnown() || !v.CanIterateElements() {
		return 0, false
	}
	return v.LengthInt(), true
}

func (a *attrs) str(name, def string) string {
	v, ok := a.typed(name, cty.String, example(`"text"`))
	if !ok {
		return def
	}
	return v.AsString()
}

// name reads an identifier-like string: lower-case letters, digits and dashes.
func (a *attrs) name(name, def string) string {
	s := a.str(name, def)
	if a.has(name) && s != def {
		if err := validName(s); err != nil {
			a.errorf(name, "Invalid name", "%v.", err)
		}
	}
	return s
}

func (a *attrs) boolean(name string, def bool) bool {
	v, ok := a.typed(name, cty.Bool, example("true"))
	if !ok {
		return def
	}
	return v.True()
}

func (a *attrs) number(name string, def, lo, hi float64) float64 {
	v, ok := a.typed(name, cty.Number, func() string { return fmtNum(def) })
	if !ok {
		return def
	}
	f, _ := v.AsBigFloat().Float64()
	if f < lo || f > hi || math.IsNaN(f) {
		a.errorf(name, "Value out of range", "%q must be from %s to %s; got %s.", name, fmtNum(lo), fmtNum(hi), fmtNum(f))
		return def
	}
	return f
}

func (a *attrs) integer(name string, def, lo, hi int) int {
	v, ok := a.typed(name, cty.Number, func() string { return strconv.Itoa(def) })
	if !ok {
		return def
	}
	bf := v.AsBigFloat()
	if !bf.IsInt() {
		a.errorf(name, "Whole number required", "%q takes a whole number, such as %s = %d.", name, name, def)
		return def
	}
	i, _ := bf.Int64()
	if i < int64(lo) || i > int64(hi) {
		a.errorf(name, "Value out of range", "%q must be from %d to %d; got %s.", name, lo, hi, bf.Text('g', 12))
		return def
	}
	return int(i)
}

func (a *attrs) size(name string, def, lo, hi Size) Size {
	s, _ := a.sizeText(name, def, lo, hi)
	return s
}

// sizeText reads a size as size does and also returns its text as written
// (after evaluation) when it is a string, valid or not.
func (a *attrs) sizeText(name string, def, lo, hi Size) (Size, string) {
	v, ok := a.value(name)
	if !ok {
		return def, ""
	}
	if v.Type() == cty.Number {
		f, _ := v.AsBigFloat().Float64()
		a.errorf(name, "Size needs a unit", "%q is a size: write it with a unit, such as %s.", name, sizeHint(name, f))
		return def, ""
	}
	var text string
	if v.Type() == cty.String {
		text = v.AsString()
	}
	v, ok = a.convert(name, v, cty.String, quotedExample(def))
	if !ok {
		return def, text
	}
	s, err := ParseSize(v.AsString())
	if err != nil {
		a.errorf(name, "Invalid size", "%v.", err)
		return def, text
	}
	if s < lo || s > hi {
		a.errorf(name, "Value out of range", "%q must be from %s to %s; got %s.", name, lo, hi, s)
		return def, text
	}
	return s, text
}

func (a *attrs) duration(name string, def, lo, hi Duration) Duration {
	v, ok := a.value(name)
	if !ok {
		return def
	}
	if v.Type() == cty.Number {
		f, _ := v.AsBigFloat().Float64()
		a.errorf(name, "Duration needs a unit", "%q is a duration: write it with a unit, such as %s = \"%ss\" or \"%sm\".", name, name, fmtNum(f), fmtNum(f))
		return def
	}
	v, ok = a.convert(name, v, cty.String, quotedExample(def))
	if !ok {
		return def
	}
	d, err := ParseDuration(v.AsString())
	if err != nil {
		a.errorf(name, "Invalid duration", "%v.", err)
		return def
	}
	if d < lo || d > hi {
		a.errorf(name, "Value out of range", "%q must be from %s to %s; got %s.", name, lo, hi, d)
		return def
	}
	return d
}

func (a *attrs) enum(name, def string, allowed ...string) string {
	v, ok := a.typed(name, cty.String, func() string { return strconv.Quote(allowed[0]) })
	if !ok {
		return def
	}
	s := v.AsString()
	for _, x := range allowed {
		if s == x {
			return s
		}
	}
	a.errorf(name, "Unknown value", "%q must be one of %s; got %q.%s", name, quoteList(allowed), s, didYouMean(s, allowed))
	return def
}

// cron reads a schedule string (see ParseCron). A schedule that never runs
// is a warning: Temporal accepts it.
func (a *attrs) cron(name, def string) (string, CronSchedule) {
	defSched, _ := ParseCron(def)
	v, ok := a.typed(name, cty.String, example(`"*/5 * * * *"`))
	if !ok {
		return def, defSched
	}
	s := v.AsString()
	c, err := ParseCron(s)
	if err != nil {
		summary := "Invalid cron expression"
		if c.HasTimeZone {
			if zerr := CheckTimeZone(c.TimeZone); zerr != nil {
				summary = zoneSummary(zerr)
			}
		}
		a.errorf(name, summary, "%v.", err)
		return def, defSched
	}
	if c.SecondsFirst != "" {
		*a.diags = append(*a.diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning, Summary: "Six-field schedule",
			Detail: fmt.Sprintf("Temporal reads six fields as minute, hour, day of month, month, day of week and year: %q runs in the hours its second field names, "+
				"not on the seconds-first schedule of Spring or Quartz. If that is what you meant, write five fields without the seconds: %q "+
				"(a sixth field of \"*\", any year, adds nothing).", s, c.SecondsFirst),
			Subject: a.rng(name),
		})
	}
	if c.NeverFires() {
		*a.diags = append(*a.diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning, Summary: "Schedule never runs",
			Detail:  fmt.Sprintf("%q matches no date, so Temporal takes it but never starts it.%s", s, c.neverFiresDetail()),
			Subject: a.rng(name),
		})
	}
	return s, c
}

func (a *attrs) host(name, def string) string {
	v, ok := a.typed(name, cty.String, example(`"gitlab.example.com"`))
	if !ok {
		return def
	}
	s := v.AsString()
	if err := ValidHost(s); err != nil {
		a.errorf(name, "Invalid host", "%v.", err)
		return def
	}
	return strings.ToLower(s)
}

// secret reads a secret URI. A plaintext value is an error whose diagnostic
// is marked sensitive and never repeats the value.
func (a *attrs) secret(name string) SecretRef {
	v, ok := a.typed(name, cty.String, example(`"vault://ci/gitlab/token"`))
	if !ok {
		return ""
	}
	ref, ok := a.checkSecret(name, v.AsString())
	if !ok {
		return ""
	}
	return ref
}

func (a *attrs) checkSecret(name, s string) (SecretRef, bool) {
	_, err := ParseSecretURI(s)
	if err == errNotSecretURI {
		*a.diags = append(*a.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Plaintext secret",
			Detail: fmt.Sprintf("%q holds a secret, so it takes a secret URI, not the secret itself. Store the value in a secret backend and reference it: "+
				"yc-lockbox://{secret-id}/{key}, aws-sm://{secret-name}/{key} or vault://{path}/{key}. "+
				"If this value was ever committed, revoke it: it is in the repository's history.", name),
			Subject: a.rng(name),
			Extra:   sensitive{},
		})
		return "", false
	}
	if err != nil {
		a.errorf(name, "Invalid secret URI", "%v.", err)
		return "", false
	}
	return SecretRef(s), true
}

func (a *attrs) strings(name string) []string {
	if at, ok := a.m[name]; ok {
		if out, ok := literalStrings(at.Expr); ok {
			return out
		}
	}
	v, ok := a.value(name)
	if !ok {
		return nil
	}
	if !stringList(v) {
		if v, ok = a.convert(name, v, cty.List(cty.String), example(`["a", "b"]`)); !ok {
			return nil
		}
	}
	out := make([]string, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			a.errorf(name, "Null list element", "%q cannot hold null elements.", name)
			continue
		}
		out = append(out, e.AsString())
	}
	return out
}

func (a *attrs) enumList(name string, def []string, allowed ...string) []string {
	if !a.has(name) {
		return def
	}
	vals := a.strings(name)
	seen := map[string]bool{}
	out := make([]string, 0, len(vals))
	for _, s := range vals {
		known := false
		for _, x := range allowed {
			known = known || x == s
		}
		switch {
		case seen[s]:
			a.errorf(name, "Duplicate value", "%q lists %q twice.", name, s)
		case !known:
			a.errorf(name, "Unknown value", "%q may only hold %s; got %q.%s", name, quoteList(allowed), s, didYouMean(s, allowed))
		default:
			out = append(out, s)
		}
		seen[s] = true
	}
	return out
}

// env reads a map of environment variables whose values are plain strings or
// secret URIs. Well-known credential formats written in plain text are errors.
func (a *attrs) env(name string) map[string]EnvValue {
	v, ok := a.value(name)
	if !ok {
		return nil
	}
	if !stringMap(v) {
		if v, ok = a.convert(name, v, cty.Map(cty.String), example(`{ GOFLAGS = "-mod=mod" }`)); !ok {
			return nil
		}
	}
	out := make(map[string]EnvValue, v.LengthInt())
	// Where each entry is, found when a diagnostic needs it.
	var ranges map[string]hcl.Range
	rangeOf := func(key string) *hcl.Range {
		if ranges == nil {
			ranges = a.mapValueRanges(name)
		}
		if r, ok := ranges[key]; ok {
			return &r
		}
		return a.rng(name)
	}
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		key := k.AsString()
		if !validEnvName(key) {
			*a.diags = append(*a.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Invalid variable name",
				Detail:  fmt.Sprintf("%q is not a valid environment variable name: use letters, digits and underscores, not starting with a digit.", key),
				Subject: rangeOf(key),
			})
			continue
		}
		s := e.AsString()
		if _, err := ParseSecretURI(s); err == nil {
			out[key] = EnvValue{Secret: SecretRef(s)}
			continue
		} else if err != errNotSecretURI {
			*a.diags = append(*a.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Invalid secret URI",
				Detail: fmt.Sprintf("%s: %v.", key, err), Subject: rangeOf(key),
			})
			continue
		}
		if looksLikeToken(s) {
			*a.diags = append(*a.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Plaintext secret",
				Detail: fmt.Sprintf("The value of %s looks like a credential. Store it in a secret backend and reference it instead, "+
					"such as %s = \"vault://ci/%s/value\"; revoke it if it was ever committed.", key, key, strings.ToLower(key)),
				Subject: rangeOf(key),
				Extra:   sensitive{},
			})
			continue
		}
		out[key] = EnvValue{Value: s}
	}
	return out
}

// mapValueRanges returns the source range of each value of a literal map
// expression, keyed by the key's string value, so diagnostics can point at
// the entry at fault.
func (a *attrs) mapValueRanges(name string) map[string]hcl.Range {
	at, ok := a.m[name]
	if !ok {
		return nil
	}
	pairs, d := hcl.ExprMap(at.Expr)
	if d.HasErrors() {
		return nil
	}
	out := make(map[string]hcl.Range, len(pairs))
	for _, p := range pairs {
		k, d := p.Key.Value(a.ctx)
		if d.HasErrors() || k.IsNull() || !k.IsKnown() || k.Type() != cty.String {
			continue
		}
		out[k.AsString()] = p.Value.Range()
	}
	return out
}

// params reads an object of job parameters into plain JSON values.
func (a *attrs) params(name string) map[string]any {
	v, ok := a.value(name)
	if !ok {
		return nil
	}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		a.errorf(name, "Incorrect attribute value type", "%q takes an object, such as %s = { eggs = [\"web\"] }; got %s.", name, name, v.Type().FriendlyName())
		return nil
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		a.errorf(name, "Invalid parameters", "%q cannot be represented as JSON: %v.", name, err)
		return nil
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		a.errorf(name, "Invalid parameters", "%q cannot be represented as JSON: %v.", name, err)
		return nil
	}
	return out
}

func validName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%q must be 1 to 63 characters", s)
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (c == '-' && i > 0 && i < len(s)-1)
		if !ok {
			return fmt.Errorf("%q may only hold lower-case letters, digits and inner dashes, such as \"web-app\"", s)
		}
	}
	return nil
}

func validEnvName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

func fmtNum(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", f), "0"), ".")
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// didYouMean suggests the closest allowed value, or nothing.
func didYouMean(given string, allowed []string) string {
	best, bestD := "", 3
	cands := append([]string(nil), allowed...)
	sort.Strings(cands)
	for _, c := range cands {
		if d := levenshtein(strings.ToLower(given), c); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// literalStrings reads a list written as quoted strings without
// interpolation, such as tags = ["docker", "linux"], without evaluating it:
// its value is those strings.
func literalStrings(expr hcl.Expression) ([]string, bool) {
	t, ok := expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(t.Exprs))
	for _, e := range t.Exprs {
		lit, ok := literalString(e)
		if !ok {
			return nil, false
		}
		out = append(out, lit.AsString())
	}
	return out, true
}

// literalString is the value of a quoted string without interpolation,
// most of a Nest's values: its one literal part, which TemplateExpr.Value
// would copy, normalise again and refine to the same value.
func literalString(expr hcl.Expression) (cty.Value, bool) {
	t, ok := expr.(*hclsyntax.TemplateExpr)
	if !ok || !t.IsStringLiteral() {
		return cty.NilVal, false
	}
	lit := t.Parts[0].(*hclsyntax.LiteralValueExpr).Val
	if !lit.Type().Equals(cty.String) || !lit.IsKnown() || lit.IsNull() || lit.IsMarked() {
		return cty.NilVal, false
	}
	return lit, true
}

// stringList tells whether v is a list or tuple of strings, and stringMap
// whether it is a map or object of strings: reading their elements then
// gives what converting them to a list or map of strings would, without the
// copy Convert makes.
func stringList(v cty.Value) bool {
	ty := v.Type()
	if ty.IsTupleType() {
		return !slices.ContainsFunc(ty.TupleElementTypes(), notString)
	}
	return ty.IsListType() && ty.ElementType().Equals(cty.String)
}

func stringMap(v cty.Value) bool {
	ty := v.Type()
	if ty.IsObjectType() {
		for _, at := range ty.AttributeTypes() {
			if notString(at) {
				return false
			}
		}
		return true
	}
	return ty.IsMapType() && ty.ElementType().Equals(cty.String)
}

func notString(t cty.Type) bool { return !t.Equals(cty.String) }

// blockContent is body.Content(schema) for the bodies of parsed blocks. When the
// body holds only what the schema names, with every required attribute and
// every block's labels, it builds the same content itself: hclsyntax's
// Content spends most of its time on the maps it keeps to report extraneous
// items, and a Nest's blocks have none. Any other body goes to Content,
// which reports what is wrong.
func blockContent(body hcl.Body, schema *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	b, ok := body.(*hclsyntax.Body)
	if !ok || !holdsOnly(b, schema) {
		return body.Content(schema)
	}
	out := &hcl.BodyContent{Attributes: make(hcl.Attributes, len(b.Attributes)), MissingItemRange: b.MissingItemRange()}
	// One allocation for all attributes and one for all blocks.
	attrs := make([]hcl.Attribute, 0, len(b.Attributes))
	for name, at := range b.Attributes {
		attrs = append(attrs, *at.AsHCLAttribute())
		out.Attributes[name] = &attrs[len(attrs)-1]
	}
	if len(b.Blocks) > 0 {
		blocks := make([]hcl.Block, len(b.Blocks))
		out.Blocks = make(hcl.Blocks, len(b.Blocks))
		for i, blk := range b.Blocks {
			blocks[i] = *blk.AsHCLBlock()
			out.Blocks[i] = &blocks[i]
		}
	}
	return out, nil
}

// holdsOnly tells whether a body has nothing but the schema's attributes and
// blocks, the blocks with the labels the schema gives them, and every
// required attribute.
func holdsOnly(b *hclsyntax.Body, schema *hcl.BodySchema) bool {
	known := 0
	for _, s := range schema.Attributes {
		if _, ok := b.Attributes[s.Name]; ok {
			known++
		} else if s.Required {
			return false
		}
	}
	if known != len(b.Attributes) {
		return false
	}
blocks:
	for _, blk := range b.Blocks {
		for _, s := range schema.Blocks {
			if s.Type == blk.Type {
				if len(blk.Labels) != len(s.LabelNames) {
					return false
				}
				continue blocks
			}
		}
		return false
	}
	return true
}

// sizeHint writes a number given without a unit as the sizes it most
// probably meant: MiB for large numbers (4096 is "4096MiB" or "4GiB"), GiB
// for small ones (4 is "4GiB").
func sizeHint(name string, f float64) string {
	switch {
	case f >= 128 && f == float64(int64(f)) && int64(f)%1024 == 0:
		return fmt.Sprintf("%s = \"%sMiB\" or \"%dGiB\"", name, fmtNum(f), int64(f)/1024)
	case f >= 128:
		return fmt.Sprintf("%s = \"%sMiB\"", name, fmtNum(f))
	}
	return fmt.Sprintf("%s = \"%sGiB\"", name, fmtNum(f))
}
