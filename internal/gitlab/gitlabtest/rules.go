package gitlabtest

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Rule is one entry of a job's rules: (docs.gitlab.com/ci/yaml/#rules), in
// the subset the test server runs: an optional if: expression and an
// optional when: (on_success, always or never; the job's own when:, itself
// on_success by default, when empty).
type Rule struct {
	If   string
	When string
}

// Rule keys and rule when: values the test server understands.
var (
	ciRuleKeys  = []string{"if", "when"}
	ciRuleWhens = []string{"on_success", "always", "never"}
)

// maxRulesNesting is how deep GitLab flattens nested rules: lists (what
// !reference and anchors make).
const maxRulesNesting = 10

// decodeRules reads a job's rules: list, nested lists (up to
// maxRulesNesting) flattened and anchors followed. A rule's if: is checked
// for syntax here, as GitLab does when it validates the file. The result is
// never nil, so an empty rules: list still leaves the job out.
func decodeRules(node *yaml.Node, where string) ([]Rule, error) {
	for node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	if node.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s config should be an array of hashes", where)
	}
	var items []*yaml.Node
	var flatten func(list *yaml.Node, depth int) error
	flatten = func(list *yaml.Node, depth int) error {
		if depth > maxRulesNesting {
			return fmt.Errorf("%s config should be an array containing hashes and arrays of hashes, nested no more than %d levels", where, maxRulesNesting)
		}
		for _, item := range list.Content {
			for item.Kind == yaml.AliasNode {
				item = item.Alias
			}
			if item.Kind == yaml.SequenceNode {
				if err := flatten(item, depth+1); err != nil {
					return err
				}
				continue
			}
			items = append(items, item)
		}
		return nil
	}
	if err := flatten(node, 1); err != nil {
		return nil, err
	}
	out := []Rule{}
	for _, item := range items {
		if err := checkKeys(item, ciRuleKeys, where+":rule"); err != nil {
			return nil, err
		}
		// Decoding follows merge keys (<<: *anchor), which checkKeys lets
		// through; their keys are checked here.
		var raw map[string]any
		if err := item.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s:rule config: %w", where, err)
		}
		var unknown []string
		for k := range raw {
			if !slices.Contains(ciRuleKeys, k) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			slices.Sort(unknown)
			return nil, fmt.Errorf("%s:rule config contains unknown keys: %s (the GitLab test server understands %s)", where, strings.Join(unknown, ", "), strings.Join(ciRuleKeys, ", "))
		}
		var r Rule
		for _, f := range []struct {
			key string
			to  *string
		}{{"if", &r.If}, {"when", &r.When}} {
			v, ok := raw[f.key]
			if !ok || v == nil {
				continue
			}
			str, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%s:rule %s should be a string", where, f.key)
			}
			*f.to = str
		}
		if r.If != "" {
			if _, err := parseExpression(r.If); err != nil {
				return nil, fmt.Errorf("%s:rule if invalid expression syntax: %w", where, err)
			}
		}
		if r.When != "" && !slices.Contains(ciRuleWhens, r.When) {
			return nil, fmt.Errorf("%s:rule when: %s is not supported by the GitLab test server; use %s", where, r.When, strings.Join(ciRuleWhens, ", "))
		}
		out = append(out, r)
	}
	return out, nil
}

// applyRules is GitLab's Gitlab::Ci::Build::Rules: the first rule whose if:
// holds (a rule without if: always does) decides the job's when:, the
// job's own when (on_success when empty) if the rule has none. It returns
// that when and whether the job joins the pipeline: not when the rule says
// never, nor when no rule matches.
func applyRules(rules []Rule, jobWhen string, vars map[string]string) (string, bool) {
	for _, r := range rules {
		if r.If != "" && !evalExpression(r.If, vars) {
			continue
		}
		when := r.When
		if when == "" {
			when = jobWhen
		}
		if when == "" {
			when = "on_success"
		}
		return when, when != "never"
	}
	return "never", false
}

// evalExpression evaluates a rules:if: expression
// (docs.gitlab.com/ci/jobs/job_rules/#cicd-variable-expressions) against
// variables, as GitLab's Gitlab::Ci::Pipeline::Expression::Statement does:
//
//	$VAR                        true when defined and not blank
//	$VAR == "value"  'value' != $VAR   string comparison; undefined is null
//	$VAR == null     $VAR != null
//	$VAR =~ /regexp/i  $VAR !~ $PATTERN  RE2 match; flags i, s, m, U
//	a && b || (c)               && binds tighter than ||
//
// Like GitLab, && and || keep Ruby's truthiness (only null and false are
// false there, so "" && "x" is "x"), and the result holds when it is
// present: not null, false or blank. An expression that does not parse or
// a regexp that does not compile makes it false.
func evalExpression(expr string, variables map[string]string) bool {
	n, err := parseExpression(expr)
	if err != nil {
		return false
	}
	v, err := n.eval(variables)
	if err != nil {
		return false
	}
	return v.present()
}

// exprKind is the type of an expression's value.
type exprKind int

const (
	exprNull exprKind = iota
	exprString
	exprBool
	exprPattern
)

// exprValue is what a node of an expression evaluates to.
type exprValue struct {
	kind exprKind
	str  string // a string, or a pattern's source
	b    bool
	re   *regexp.Regexp
}

// truthy is Ruby's truthiness, which && and || use.
func (v exprValue) truthy() bool {
	return v.kind != exprNull && (v.kind != exprBool || v.b)
}

// present is ActiveSupport's present?, which decides the statement.
func (v exprValue) present() bool {
	switch v.kind {
	case exprString:
		return strings.TrimSpace(v.str) != ""
	case exprBool:
		return v.b
	case exprPattern:
		return true
	}
	return false
}

func (v exprValue) equal(w exprValue) bool {
	if v.kind != w.kind {
		return false
	}
	switch v.kind {
	case exprString, exprPattern:
		return v.str == w.str
	case exprBool:
		return v.b == w.b
	}
	return true
}

// text is Ruby's to_s of a value, the left side of =~.
func (v exprValue) text() string {
	switch v.kind {
	case exprString, exprPattern:
		return v.str
	case exprBool:
		return fmt.Sprint(v.b)
	}
	return ""
}

// exprNode is a parsed expression.
type exprNode interface {
	eval(vars map[string]string) (exprValue, error)
}

type (
	exprLiteral  exprValue
	exprVariable string
	exprBinary   struct {
		op          string
		left, right exprNode
	}
)

func (n exprLiteral) eval(map[string]string) (exprValue, error) { return exprValue(n), nil }

func (n exprVariable) eval(vars map[string]string) (exprValue, error) {
	v, ok := vars[string(n)]
	if !ok {
		return exprValue{}, nil
	}
	return exprValue{kind: exprString, str: v}, nil
}

func (n exprBinary) eval(vars map[string]string) (exprValue, error) {
	l, err := n.left.eval(vars)
	if err != nil {
		return exprValue{}, err
	}
	switch n.op {
	case "&&":
		if !l.truthy() {
			return l, nil
		}
		return n.right.eval(vars)
	case "||":
		if l.truthy() {
			return l, nil
		}
		return n.right.eval(vars)
	}
	r, err := n.right.eval(vars)
	if err != nil {
		return exprValue{}, err
	}
	switch n.op {
	case "==":
		return exprValue{kind: exprBool, b: l.equal(r)}, nil
	case "!=":
		return exprValue{kind: exprBool, b: !l.equal(r)}, nil
	}
	// =~ and !~: a string on the right (a variable's value) is read as a
	// /regexp/, as GitLab does since it compares with regexp variables.
	if r.kind == exprNull {
		return exprValue{kind: exprBool, b: n.op == "!~"}, nil
	}
	re := r.re
	if r.kind != exprPattern {
		if re, err = compilePattern(r.text()); err != nil {
			return exprValue{}, err
		}
	}
	matched := re.MatchString(l.text())
	return exprValue{kind: exprBool, b: matched == (n.op == "=~")}, nil
}

// Lexemes of GitLab's Gitlab::Ci::Pipeline::Expression::Lexer, tried in
// its order at each position.
var (
	lexVariable = regexp.MustCompile(`^\$(\w+)`)
	lexString   = regexp.MustCompile(`^(?:"([^"]*)"|'([^']*)')`)
	lexPattern  = regexp.MustCompile(`^/(?:[^/]|\\/)+[^\\]/[ismU]*`)
	lexWord     = regexp.MustCompile(`^(?:null|true|false)`)
	lexOperator = regexp.MustCompile(`^(?:==|=~|!=|!~|&&|\|\|)`)
	// rubyPattern splits /regexp/flags as UntrustedRegexp::RubySyntax does.
	rubyPattern = regexp.MustCompile(`^/(.*)/([ismU]*)$`)
)

// maxExprTokens is GitLab's Lexer::MAX_TOKENS.
const maxExprTokens = 100

type exprToken struct {
	kind string // "(", ")", "value", "op"
	text string
	node exprNode
}

func lexExpression(expr string) ([]exprToken, error) {
	var out []exprToken
	rest := expr
	for {
		rest = strings.TrimLeft(rest, " \t\r\n\f\v")
		if rest == "" {
			return out, nil
		}
		if len(out) == maxExprTokens {
			return nil, errors.New("too many tokens")
		}
		var tok exprToken
		switch {
		case rest[0] == '(' || rest[0] == ')':
			tok = exprToken{kind: rest[:1], text: rest[:1]}
		case lexVariable.MatchString(rest):
			m := lexVariable.FindStringSubmatch(rest)
			tok = exprToken{kind: "value", text: m[0], node: exprVariable(m[1])}
		case lexString.MatchString(rest):
			m := lexString.FindStringSubmatch(rest)
			tok = exprToken{kind: "value", text: m[0], node: exprLiteral{kind: exprString, str: m[1] + m[2]}}
		case lexPattern.MatchString(rest):
			src := lexPattern.FindString(rest)
			re, err := compilePattern(strings.ReplaceAll(src, `\/`, "/"))
			if err != nil {
				return nil, err
			}
			tok = exprToken{kind: "value", text: src, node: exprLiteral{kind: exprPattern, str: src, re: re}}
		case lexWord.MatchString(rest):
			w := lexWord.FindString(rest)
			lit := exprLiteral{}
			if w != "null" {
				lit = exprLiteral{kind: exprBool, b: w == "true"}
			}
			tok = exprToken{kind: "value", text: w, node: lit}
		case lexOperator.MatchString(rest):
			op := lexOperator.FindString(rest)
			tok = exprToken{kind: "op", text: op}
		default:
			return nil, fmt.Errorf("unknown lexeme at %q", rest)
		}
		out = append(out, tok)
		rest = rest[len(tok.text):]
	}
}

// compilePattern compiles a /regexp/flags value with Go's RE2, the engine
// GitLab uses for untrusted regexps, its flags put in front as (?flags).
func compilePattern(src string) (*regexp.Regexp, error) {
	m := rubyPattern.FindStringSubmatch(src)
	if m == nil {
		return nil, fmt.Errorf("%q is not a /regexp/", src)
	}
	body := m[1]
	if m[2] != "" {
		body = "(?" + m[2] + ")" + body
	}
	re, err := regexp.Compile(body)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %s: %w", src, err)
	}
	return re, nil
}

// exprParser is a recursive descent over the tokens, with GitLab's
// precedence: comparisons, then &&, then ||, each left-associative.
type exprParser struct {
	toks []exprToken
	pos  int
}

func parseExpression(expr string) (exprNode, error) {
	toks, err := lexExpression(expr)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, errors.New("empty expression")
	}
	p := &exprParser{toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.toks[p.pos].text)
	}
	// A string or regexp on the right of =~ must be a /regexp/ already.
	if err := checkPatterns(n); err != nil {
		return nil, err
	}
	return n, nil
}

func checkPatterns(n exprNode) error {
	b, ok := n.(exprBinary)
	if !ok {
		return nil
	}
	if lit, ok := b.right.(exprLiteral); ok && (b.op == "=~" || b.op == "!~") {
		switch lit.kind {
		case exprString:
			if _, err := compilePattern(lit.str); err != nil {
				return err
			}
		case exprBool:
			return fmt.Errorf("%s needs a /regexp/ on its right", b.op)
		}
	}
	if err := checkPatterns(b.left); err != nil {
		return err
	}
	return checkPatterns(b.right)
}

func (p *exprParser) peekOp(ops ...string) (string, bool) {
	if p.pos < len(p.toks) && p.toks[p.pos].kind == "op" && slices.Contains(ops, p.toks[p.pos].text) {
		return p.toks[p.pos].text, true
	}
	return "", false
}

func (p *exprParser) binary(next func() (exprNode, error), ops ...string) (exprNode, error) {
	left, err := next()
	if err != nil {
		return nil, err
	}
	for {
		op, ok := p.peekOp(ops...)
		if !ok {
			return left, nil
		}
		p.pos++
		right, err := next()
		if err != nil {
			return nil, err
		}
		left = exprBinary{op: op, left: left, right: right}
	}
}

func (p *exprParser) or() (exprNode, error)  { return p.binary(p.and, "||") }
func (p *exprParser) and() (exprNode, error) { return p.binary(p.comparison, "&&") }
func (p *exprParser) comparison() (exprNode, error) {
	return p.binary(p.operand, "==", "!=", "=~", "!~")
}

func (p *exprParser) operand() (exprNode, error) {
	if p.pos >= len(p.toks) {
		return nil, errors.New("unexpected end of expression")
	}
	t := p.toks[p.pos]
	p.pos++
	switch t.kind {
	case "value":
		return t.node, nil
	case "(":
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos].kind != ")" {
			return nil, errors.New("missing )")
		}
		p.pos++
		return n, nil
	}
	return nil, fmt.Errorf("unexpected %q", t.text)
}
