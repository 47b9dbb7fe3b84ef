package gitlabtest

import (
	"strings"
	"testing"
)

func TestEvalExpression(t *testing.T) {
	vars := map[string]string{
		"GOSLING_JOB":        "prune-registry",
		"CI_PIPELINE_SOURCE": "api",
		"CI_COMMIT_BRANCH":   "main",
		"EMPTY":              "",
		"BLANK":              "  ",
		"TAG":                "v1.2.3",
		"SLASHED":            "feature/x",
		"RE":                 "/^v\\d+/",
		"NOT_A_RE":           "v1",
	}
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`$GOSLING_JOB`, true},
		{`$UNDEFINED`, false},
		{`$EMPTY`, false},
		{`$BLANK`, false},
		{`$CI_PIPELINE_SOURCE == "api"`, true},
		{`$CI_PIPELINE_SOURCE == 'api'`, true},
		{`$CI_PIPELINE_SOURCE == "push"`, false},
		{`"api" == $CI_PIPELINE_SOURCE`, true},
		{`$CI_PIPELINE_SOURCE != "schedule"`, true},
		{`$CI_PIPELINE_SOURCE != "api"`, false},
		{`$UNDEFINED == null`, true},
		{`$EMPTY == null`, false},
		{`$EMPTY == ""`, true},
		{`$UNDEFINED == ""`, false},
		{`$GOSLING_JOB != null`, true},
		{`$UNDEFINED != null`, false},
		{`$CI_COMMIT_BRANCH == $CI_COMMIT_BRANCH`, true},
		{`$UNDEFINED == $ALSO_UNDEFINED`, true},
		{`$GOSLING_JOB && $CI_PIPELINE_SOURCE == "api"`, true},
		{`$GOSLING_JOB && $CI_PIPELINE_SOURCE == "push"`, false},
		{`$UNDEFINED || $CI_PIPELINE_SOURCE == "api"`, true},
		{`$UNDEFINED || $EMPTY`, false},
		// && binds tighter than ||.
		{`$CI_PIPELINE_SOURCE == "push" && $UNDEFINED || $GOSLING_JOB`, true},
		{`$GOSLING_JOB || $UNDEFINED && $CI_PIPELINE_SOURCE == "push"`, true},
		{`($GOSLING_JOB || $UNDEFINED) && $CI_PIPELINE_SOURCE == "push"`, false},
		{`$CI_PIPELINE_SOURCE == "push" && ($UNDEFINED || $GOSLING_JOB)`, false},
		{`(($GOSLING_JOB))`, true},
		// Ruby's truthiness: "" is true to &&, so the right side decides.
		{`$EMPTY && $GOSLING_JOB`, true},
		{`$UNDEFINED && $GOSLING_JOB`, false},
		{`$TAG =~ /^v\d+\.\d+/`, true},
		{`$TAG =~ /^V1/i`, true},
		{`$TAG =~ /^V1/`, false},
		{`$TAG !~ /^v/`, false},
		{`$SLASHED =~ /^feature\/x$/`, true},
		{`$UNDEFINED =~ /^$/`, true},
		{`$TAG =~ $RE`, true},
		{`$TAG =~ $NOT_A_RE`, false},
		{`$TAG =~ $UNDEFINED`, false},
		{`$TAG !~ $UNDEFINED`, true},
		{`$TAG =~ "/^v1/"`, true},
		{`null`, false},
		{`true`, true},
		{`$GOSLING_JOB == `, false},
		{`$GOSLING_JOB ==== "x"`, false},
		{`($GOSLING_JOB`, false},
		{`${GOSLING_JOB}`, false},
		{`$GOSLING_JOB = "x"`, false},
		{``, false},
	} {
		if got := evalExpression(tc.expr, vars); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.expr, got, tc.want)
		}
	}
}

func TestParseExpressionErrors(t *testing.T) {
	for expr, want := range map[string]string{
		`$A == `:          "unexpected end",
		`$A "x"`:          `unexpected "\"x\""`,
		`($A`:             "missing )",
		`$A)`:             `unexpected ")"`,
		`$A = "x"`:        "unknown lexeme",
		`${A}`:            "unknown lexeme",
		`$A =~ /a(/`:      "invalid regular expression",
		`$A =~ "abc"`:     "not a /regexp/",
		`   `:             "empty expression",
		`$A == "x" &&`:    "unexpected end",
		`$A =~ true`:      "needs a /regexp/",
		`$A == 'x" || $B`: "unknown lexeme",
	} {
		_, err := parseExpression(expr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", expr, err, want)
		}
	}
	if _, err := parseExpression(strings.Repeat("$A && ", 50) + "$A"); err == nil || !strings.Contains(err.Error(), "too many tokens") {
		t.Errorf("101 tokens: %v", err)
	}
}

func TestApplyRules(t *testing.T) {
	vars := map[string]string{"GOSLING_JOB": "x"}
	for _, tc := range []struct {
		name    string
		rules   []Rule
		jobWhen string
		when    string
		in      bool
	}{
		{"no rules", []Rule{}, "", "never", false},
		{"match", []Rule{{If: "$GOSLING_JOB"}}, "", "on_success", true},
		{"no match", []Rule{{If: "$OTHER"}}, "", "never", false},
		{"first match wins", []Rule{{If: "$GOSLING_JOB", When: "never"}, {When: "always"}}, "", "never", false},
		{"falls through", []Rule{{If: "$OTHER", When: "never"}, {If: "$GOSLING_JOB", When: "always"}}, "", "always", true},
		{"rule without if", []Rule{{If: "$OTHER"}, {When: "always"}}, "", "always", true},
		{"job when is the default", []Rule{{If: "$GOSLING_JOB"}}, "on_success", "on_success", true},
	} {
		when, in := applyRules(tc.rules, tc.jobWhen, vars)
		if when != tc.when || in != tc.in {
			t.Errorf("%s: %s %v, want %s %v", tc.name, when, in, tc.when, tc.in)
		}
	}
}
