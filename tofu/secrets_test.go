package tofu

import (
	"context"
	"io/fs"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The Filter sees every output line and the text of errors, so a value
// that reaches OpenTofu's output (here quoted back by a failed validation)
// reaches neither OnLine nor the error.
func TestFilterMasksOutputAndErrors(t *testing.T) {
	const secret = "filter-me-0123456789"
	ex := newExecutor(t)
	ex.Filter = strings.NewReplacer(secret, "[masked]").Replace
	m := localMachine(t, ex, "web-filter-1", fly.RunnerVM)
	vars, err := m.Variables()
	if err != nil {
		t.Fatal(err)
	}
	vars["state"] = secret // fails the module's validation, which prints it
	var mu sync.Mutex
	var lines []string
	_, err = ex.Apply(context.Background(), ApplyRequest{
		Workspace: m.RunnerID, Module: m.Module(), Vars: vars,
		OnLine: func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() },
	})
	if err == nil {
		t.Fatal("apply with an invalid state succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error holds the value: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	all := strings.Join(lines, "\n")
	if strings.Contains(all, secret) {
		t.Errorf("output holds the value:\n%s", all)
	}
	if !strings.Contains(all+err.Error(), "[masked]") {
		t.Errorf("OpenTofu never quoted the value, so the filter was not exercised:\n%s\n%v", all, err)
	}
}

// secretName matches variable names that suggest secret material. Such a
// variable must be declared sensitive; today none exists: runner tokens
// reach machines from the secret backend (token_ref is a URI) and cloud
// credentials reach OpenTofu through the environment, because tfvars and
// state would hold a variable's value in plain text, sensitive or not.
var secretName = regexp.MustCompile(`(token|secret|password|passwd|credential|private|key)`)

// notSecret are names secretName matches that hold references, not values.
var notSecret = map[string]bool{"token_ref": true}

func TestSecretVariablesAreSensitive(t *testing.T) {
	for _, m := range BuiltinModules() {
		fsys, err := ModuleFS(m)
		if err != nil {
			t.Fatal(err)
		}
		src, err := fs.ReadFile(fsys, "variables.tf")
		if err != nil {
			t.Fatal(err)
		}
		f, diags := hclsyntax.ParseConfig(src, m.String()+"/variables.tf", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		body := f.Body.(*hclsyntax.Body)
		for _, b := range body.Blocks {
			if b.Type != "variable" || len(b.Labels) != 1 {
				continue
			}
			name := b.Labels[0]
			sensitive := false
			if a, ok := b.Body.Attributes["sensitive"]; ok {
				v, d := a.Expr.Value(nil)
				sensitive = !d.HasErrors() && v.True()
			}
			if secretName.MatchString(name) && !notSecret[name] && !sensitive {
				t.Errorf("%s: variable %s looks like secret material but is not sensitive = true", m, name)
			}
		}
	}
	// token_ref carries a URI, never a token.
	for _, cloud := range []string{fly.CloudAWS, fly.CloudYandex} {
		vars, err := machineFor(cloud, fly.RunnerServerless).Variables()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fly.SecretRef(vars["token_ref"].(string)).Parse(); err != nil {
			t.Errorf("%s token_ref is not a secret URI: %v", cloud, err)
		}
	}
}
