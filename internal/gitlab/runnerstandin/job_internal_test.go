package runnerstandin

import (
	"strings"
	"testing"
)

// A variable's value is expanded against every variable of the job, as
// gitlab-runner's JobVariables.Expand does, whatever their order: a script
// variable that names another variable sent after it still sees its value.
func TestJobVariablesExpandInAnyOrder(t *testing.T) {
	m := &Multi{workDir: "/work"}
	rc := RunnerConfig{Token: "glrt-abcdefghijklmnop", Environment: []string{"FROM_CONFIG=cfg"}}
	job := &jobResponse{ID: 7, Token: "glcbt-job", Variables: []jobVariable{
		{Key: "SCRIPT", Value: `echo "$NAME in $CI_PROJECT_PATH, $$HOME, $FROM_CONFIG, $NAME_RAW"`},
		{Key: "CI_PROJECT_PATH", Value: "acme/nest"},
		{Key: "NAME", Value: "first"},
		{Key: "NAME_RAW", Value: "$NAME", Raw: true},
		{Key: "NAME", Value: "prune-registry"},
	}}
	env, _ := m.jobEnvironment(rc, job, 0)
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	if want := `echo "prune-registry in acme/nest, $HOME, cfg, $NAME"`; got["SCRIPT"] != want {
		t.Errorf("SCRIPT = %q, want %q", got["SCRIPT"], want)
	}
	if got["NAME_RAW"] != "$NAME" || got["NAME"] != "prune-registry" {
		t.Errorf("NAME_RAW = %q, NAME = %q", got["NAME_RAW"], got["NAME"])
	}
}
