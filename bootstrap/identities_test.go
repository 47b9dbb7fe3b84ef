package bootstrap

import (
	"context"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/runnerid"
)

// allowed evaluates an IAM policy document as IAM does for identity
// policies without conditions: an action on a resource is allowed when an
// Allow statement names both (* and ? wildcards), and nothing denies it.
func allowed(doc map[string]any, action, resource string) bool {
	list := func(v any) []string {
		switch x := v.(type) {
		case string:
			return []string{x}
		case []any:
			var out []string
			for _, e := range x {
				out = append(out, e.(string))
			}
			return out
		}
		return nil
	}
	match := func(patterns []string, s string) bool {
		for _, p := range patterns {
			if ok, _ := path.Match(strings.ReplaceAll(p, "/", "\x00"), strings.ReplaceAll(s, "/", "\x00")); ok {
				return true
			}
		}
		return false
	}
	allow := false
	stmts, _ := doc["Statement"].([]any)
	for _, st := range stmts {
		s := st.(map[string]any)
		if _, cond := s["Condition"]; cond {
			continue
		}
		if match(list(s["Action"]), action) && match(list(s["Resource"]), resource) {
			if s["Effect"] == "Deny" {
				return false
			}
			allow = allow || s["Effect"] == "Allow"
		}
	}
	return allow
}

// Each egg with runners on AWS gets a runner role (with its instance
// profile), trusted by EC2, ECS tasks and Lambda, whose policy allows
// reading that egg's runner tokens and own secrets and nothing else, and an
// ECS task execution role that reads the egg's tokens into its tasks.
func TestAWSRunnerIdentityPolicies(t *testing.T) {
	n := loadNest(t, "testdata/aws-nest")
	web, _ := n.Egg("web")
	web.Runner.Env = map[string]fly.EnvValue{"NPM_TOKEN": {Secret: "aws-sm://ci/web/npm/token"}}
	api := *web
	api.Name, api.Runner.Env = "api", map[string]fly.EnvValue{"DEPLOY_KEY": {Secret: "aws-sm://ci/api/deploy/key"}}
	n.Eggs = append(n.Eggs, api)
	acct := AWSAccount{ID: "123456789012", Region: "eu-central-1", Partition: "aws"}
	desired, err := AWSDesired(n, acct)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Resource{}
	for _, r := range desired {
		if r.Type == AWSRole {
			byName[str(Comparable(r.Props), "name")] = r
		}
	}
	dep := DeploymentName(n)
	secret := func(name string) string {
		return "arn:aws:secretsmanager:eu-central-1:123456789012:secret:" + name + "-AbCdEf"
	}
	for _, egg := range []string{"web", "api"} {
		other := map[string]string{"web": "api", "api": "web"}[egg]
		role, ok := byName[runnerid.AWSRole(dep, egg)]
		if !ok {
			t.Fatalf("no runner role for %s: %v", egg, slices.Sorted(maps.Keys(byName)))
		}
		if Comparable(role.Props)["instance_profile"] != true || str(Comparable(role.Props), "path") != runnerid.AWSPath(dep) {
			t.Errorf("%s: role %v", egg, Comparable(role.Props))
		}
		trust := jsonString(Comparable(role.Props)["assume_role_policy"])
		for _, svc := range []string{"ec2.amazonaws.com", "ecs-tasks.amazonaws.com", "lambda.amazonaws.com"} {
			if !strings.Contains(trust, svc) {
				t.Errorf("%s: %s may not assume the runner role: %s", egg, svc, trust)
			}
		}
		pol := mapOf(Comparable(role.Props), "policy")
		own := map[string]string{"web": "ci/web/npm", "api": "ci/api/deploy"}
		for _, c := range []struct {
			action, resource string
			want             bool
		}{
			{"secretsmanager:GetSecretValue", secret(runnerid.AWSTokenPrefix(dep, egg) + egg + "-0a1b2c/token"), true},
			{"secretsmanager:GetSecretValue", secret(own[egg]), true},
			{"logs:PutLogEvents", "arn:aws:logs:eu-central-1:123456789012:log-group:/gosling/" + dep + "/runners:log-stream:x", true},
			{"secretsmanager:GetSecretValue", secret(runnerid.AWSTokenPrefix(dep, other) + other + "-0a1b2c/token"), false},
			{"secretsmanager:GetSecretValue", secret(own[other]), false},
			{"secretsmanager:GetSecretValue", secret("gosling/gitlab/api_token"), false},
			{"secretsmanager:GetSecretValue", secret("gosling/runners/" + egg + "-0a1b2c/token"), false},
			{"secretsmanager:PutSecretValue", secret(runnerid.AWSTokenPrefix(dep, egg) + egg + "-0a1b2c/token"), false},
			{"secretsmanager:ListSecrets", "*", false},
			{"s3:GetObject", "arn:aws:s3:::any/object", false},
			{"logs:PutLogEvents", "arn:aws:logs:eu-central-1:123456789012:log-group:/gosling/" + dep + "/api:log-stream:x", false},
		} {
			if got := allowed(pol, c.action, c.resource); got != c.want {
				t.Errorf("%s runner role: %s on %s allowed %t, want %t", egg, c.action, c.resource, got, c.want)
			}
		}
		exec, ok := byName[runnerid.AWSExecutionRole(dep, egg)]
		if !ok || Comparable(exec.Props)["instance_profile"] != false || !strings.Contains(jsonString(Comparable(exec.Props)["assume_role_policy"]), "ecs-tasks.amazonaws.com") {
			t.Fatalf("%s: execution role %v", egg, Comparable(exec.Props))
		}
		ep := mapOf(Comparable(exec.Props), "policy")
		if !allowed(ep, "secretsmanager:GetSecretValue", secret(runnerid.AWSTokenPrefix(dep, egg)+egg+"-1/token")) ||
			allowed(ep, "secretsmanager:GetSecretValue", secret(runnerid.AWSTokenPrefix(dep, other)+other+"-1/token")) ||
			!allowed(ep, "ecr:BatchGetImage", "arn:aws:ecr:eu-central-1:123456789012:repository/runner") {
			t.Errorf("%s: execution role policy %s", egg, jsonString(ep))
		}
	}
	if _, old := byName[dep+"-runner"]; old {
		t.Error("the shared runner role is still made")
	}
	// The workers look the roles up and pass them to the machines.
	worker := mapOf(Comparable(byName[dep+"-mothergoose-worker"].Props), "policy")
	for _, egg := range []string{"web", "api"} {
		arn := "arn:aws:iam::123456789012:role" + runnerid.AWSPath(dep) + runnerid.AWSRole(dep, egg)
		if !allowed(worker, "iam:PassRole", arn) || !allowed(worker, "iam:GetRole", arn) {
			t.Errorf("the worker may not pass or read %s", arn)
		}
	}
	if allowed(worker, "iam:PassRole", "arn:aws:iam::123456789012:role/admin") {
		t.Error("the worker may pass any role")
	}
	// The plan prints each policy.
	p, err := Diff(desired, nil, awsTypes)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_ = p.WriteText(&b)
	text := b.String()
	for _, want := range []string{
		`resource "aws_iam_role" "runner-web"`, `resource "aws_iam_role" "runner-web-exec"`,
		`"Resource":["arn:aws:secretsmanager:eu-central-1:123456789012:secret:` + runnerid.AWSTokenPrefix(dep, "web") + `*"]`,
		`"Resource":["arn:aws:secretsmanager:eu-central-1:123456789012:secret:ci/web/npm-??????"]`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the plan lacks %s", want)
		}
	}
}

// Each egg with runners on Yandex Cloud gets its service account, its
// Lockbox secret of runner tokens, and lockbox.payloadViewer for the
// account on that secret and the egg's own secrets: bound on each secret,
// never on the folder. A deploy makes exactly that, and a second one
// changes nothing.
func TestYandexRunnerIdentities(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	n := loadNest(t, "../examples/nest")
	e, desired := yandexEngine(t, srv, n)
	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_ = p.WriteText(&b)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	made, err := e.Read(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, r := range made {
		ids[r.Address()] = r.ID
	}
	dep := DeploymentName(n)
	eggs := runnerEggs(n, fly.CloudYandex)
	if len(eggs) < 2 {
		t.Fatalf("the example Nest has %d eggs on yandex", len(eggs))
	}
	for _, egg := range eggs {
		sa := ids[YCServiceAccount+"."+strings.TrimPrefix(runnerid.YandexServiceAccount(dep, egg.Name), dep+"-")]
		secretName := runnerid.LockboxTokenSecret(dep, egg.Name)
		sec := srv.Secret(secretName)
		if sa == "" || sec == nil {
			t.Fatalf("%s: service account %q, secret %v", egg.Name, sa, sec)
		}
		if sec.GetLabels()["gosling-egg"] != egg.Name || sec.GetCurrentVersion() != nil {
			t.Errorf("%s: secret %v", egg.Name, sec)
		}
		bs := srv.SecretBindings(sec.GetId())
		if len(bs) != 1 || bs[0].GetRoleId() != "lockbox.payloadViewer" || bs[0].GetSubject().GetId() != sa {
			t.Errorf("%s: bindings on its token secret %v, want the egg's account as lockbox.payloadViewer only", egg.Name, bs)
		}
		for _, other := range eggs {
			if other.Name == egg.Name {
				continue
			}
			for _, ob := range srv.SecretBindings(srv.Secret(runnerid.LockboxTokenSecret(dep, other.Name)).GetId()) {
				if ob.GetSubject().GetId() == sa {
					t.Errorf("%s's account holds %s on %s's token secret", egg.Name, ob.GetRoleId(), other.Name)
				}
			}
		}
		for _, fb := range srv.Bindings(YandexFolder(n)) {
			if fb.GetSubject().GetId() == sa {
				t.Errorf("%s's account holds %s on the folder", egg.Name, fb.GetRoleId())
			}
		}
		if !strings.Contains(b.String(), `resource "yandex_lockbox_secret_iam_binding" "runners-`+egg.Name+`"`) {
			t.Errorf("the plan does not print %s's binding", egg.Name)
		}
	}
	p, _, err = e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Errorf("second plan: %+v", p.Changes)
	}
}
