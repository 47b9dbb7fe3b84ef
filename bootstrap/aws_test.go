package bootstrap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	smithy "github.com/aws/smithy-go"

	"github.com/gosling-ci/gosling/bootstrap/awstest"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/mototest"
)

// awsStack is an AWS account of its own on moto (awstest.New).
type awsStack struct {
	moto *awstest.Account
}

func newAWSStack(t testing.TB) *awsStack {
	t.Helper()
	return &awsStack{moto: awstest.New(t)}
}

// provider is the deployment's provider on moto; it retries what AWS
// says passes every millisecond, not every 5 seconds.
func (st *awsStack) provider(deployment string) *AWSProvider {
	p := NewAWSProvider(st.moto.Config(), deployment, nil)
	p.retryDelay = time.Millisecond
	return p
}

// nest loads the Nest in dir with the account's VPC, subnets and
// certificate in place of the AWS provider's.
func (st *awsStack) nest(t testing.TB, dir string) *fly.Nest {
	t.Helper()
	n := loadNest(t, dir)
	st.moto.Place(t, n)
	return n
}

func loadNest(t testing.TB, dir string) *fly.Nest {
	t.Helper()
	n, diags := fly.LoadNest(dir, fly.Options{Getenv: func(string) (string, bool) { return "", false }})
	if diags.HasErrors() {
		t.Fatalf("load %s: %v", dir, diags.Diagnostics)
	}
	return n
}

func awsEngine(t testing.TB, st *awsStack, n *fly.Nest) (*Engine, []Resource) {
	t.Helper()
	ctx := context.Background()
	p := st.provider(DeploymentName(n))
	acct, err := p.Account(ctx, n.MotherGoose.Region)
	if err != nil {
		t.Fatal(err)
	}
	desired, err := AWSDesired(n, acct)
	if err != nil {
		t.Fatal(err)
	}
	return &Engine{Deployment: DeploymentName(n), Cloud: "aws", Providers: []Provider{p}, Journal: p.NewAWSJournal()}, desired
}

func TestAWSDeploySequence(t *testing.T) {
	ctx := context.Background()
	st := newAWSStack(t)
	n := st.nest(t, "testdata/aws-nest")
	e, desired := awsEngine(t, st, n)

	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if p.Count(Create) != len(desired) || p.Count(Update)+p.Count(Delete) != 0 {
		t.Fatalf("first plan: %d creates of %d", p.Count(Create), len(desired))
	}
	var text bytes.Buffer
	_ = p.WriteText(&text)
	for _, want := range []string{
		`+ resource "aws_iam_role" "api"`, `+ resource "aws_ecs_service" "mothergoose-worker"`, `task_role_arn      = (known after apply)`,
		// The gateway: the HTTP API, the auth function as its authorizer,
		// the REST API's route behind it and the $default route without.
		`+ resource "aws_apigatewayv2_api" "api"`, `protocol_type = "HTTP"`,
		`+ resource "aws_lambda_function" "auth"`, `command      = ["authorizer"]`, `GOSLING_AUTH_TOKENS    = "aws-sm://gosling/api/ops"`,
		`+ resource "aws_iam_role" "auth"`, `"Principal":{"Service":"lambda.amazonaws.com"}`,
		`{"Action":"secretsmanager:GetSecretValue","Effect":"Allow","Resource":["arn:aws:secretsmanager:eu-central-1:123456789012:secret:gosling/api-??????"]}`,
		`+ resource "aws_apigatewayv2_authorizer" "auth"`, `authorizer_result_ttl_in_seconds  = 300`,
		`authorizer_uri                    = "arn:aws:apigateway:eu-central-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-central-1:123456789012:function:gosling-test-gosling-auth/invocations"`,
		`+ resource "aws_apigatewayv2_route" "api"`, `route_key          = "ANY /api/{proxy+}"`, `authorization_type = "CUSTOM"`,
		`+ resource "aws_apigatewayv2_route" "default"`, `+ resource "aws_lambda_permission" "auth"`,
		`+ resource "aws_apigatewayv2_integration" "api"`, `connection_type        = "VPC_LINK"`,
		`+ resource "aws_service_discovery_service" "api"`, `service_registry = (known after apply)`,
		// The custom domain, mapped to the API's $default stage.
		`+ resource "aws_apigatewayv2_domain_name" "api"`, `"ci-runners.example.com"`, `"REGIONAL"`, `"TLS_1_2"`,
		`+ resource "aws_apigatewayv2_api_mapping" "api"`, `"$default"`,
		// The security groups: the VPC link's reaches the API's tasks on
		// 8080 and nothing else; the API's lets only it in.
		`+ resource "aws_security_group" "vpclink"`, `name        = "gosling-test-vpclink"`, `vpc_id      = "` + st.moto.VPC + `"`,
		`+ resource "aws_security_group" "api"`, `+ resource "aws_security_group" "workers"`,
		`+ resource "aws_security_group_rule" "vpclink-egress-api"`, `+ resource "aws_security_group_rule" "api-ingress-vpclink"`,
		`from_port                = 8080`, `protocol                 = "tcp"`, `type                     = "ingress"`,
		`+ resource "aws_security_group_rule" "api-egress-all"`, `+ resource "aws_security_group_rule" "workers-egress-all"`,
		`cidr_blocks              = ["0.0.0.0/0"]`, `security_group_ids = ["(known after apply)"]`, `security_groups  = ["(known after apply)"]`,
	} {
		if want = strings.ReplaceAll(want, "123456789012", st.moto.Account); !strings.Contains(text.String(), want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	// The store's outbox keeps accepted webhooks and Temporal Schedules
	// run UglyFox and the jobs: no queue, no schedule, no role for them.
	for _, unwanted := range []string{"aws_sqs_queue", "aws_scheduler_schedule", `"sqs:`, "scheduler.amazonaws.com"} {
		if strings.Contains(text.String(), unwanted) {
			t.Errorf("plan has %q", unwanted)
		}
	}
	if t.Failed() {
		t.Logf("plan:\n%s", text.String())
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	// Deploying again changes nothing.
	p, _, err = e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		text.Reset()
		_ = p.WriteText(&text)
		t.Fatalf("second plan is not empty:\n%s", text.String())
	}

	checkGateway(t, e, desired)
	checkSecurityGroups(t, e, desired, st.moto.VPC)

	// A container's memory: one update.
	n.MotherGoose.Containers.API.Memory = 2 * fly.GiB
	e, desired = awsEngine(t, st, n)
	p, actual, _ = e.Plan(ctx, desired)
	if len(p.Changes) != 1 || p.Changes[0].Address != "aws_ecs_service.api" || len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != "task.memory" {
		t.Fatalf("memory change plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := serviceMemory(t, e); m != 2048 {
		t.Fatalf("memory after deploy: %v", m)
	}

	// Rollback: the old value is back.
	entries, _ := e.Journal.Entries(ctx)
	to, _ := PreviousEntry(entries)
	rp, actual, err := e.RollbackPlan(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(rp.Changes) != 1 {
		t.Fatalf("rollback plan: %+v", rp.Changes)
	}
	if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := serviceMemory(t, e); m != 1024 {
		t.Fatalf("memory after rollback: %v", m)
	}

	// The auth function's cache: the function's environment and the
	// authorizer's TTL change in place, and roll back.
	n.MotherGoose.Containers.API.Memory = 1 * fly.GiB
	n.MotherGoose.APIGateway.Auth.CacheTTL = fly.Duration(time.Minute)
	e, desired = awsEngine(t, st, n)
	p, actual, _ = e.Plan(ctx, desired)
	var changed []string
	for _, c := range p.Changes {
		for _, f := range c.Fields {
			changed = append(changed, c.Address+" "+f.Path)
		}
	}
	if want := []string{"aws_lambda_function.auth environment.GOSLING_AUTH_CACHE_TTL", "aws_apigatewayv2_authorizer.auth authorizer_result_ttl_in_seconds"}; !slices.Equal(changed, want) {
		t.Fatalf("cache change plan: %q, want %q", changed, want)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if ttl := readProps(t, e, desired, "aws_apigatewayv2_authorizer.auth")["authorizer_result_ttl_in_seconds"]; ttl != 60.0 {
		t.Fatalf("authorizer TTL after deploy: %v", ttl)
	}
	entries, _ = e.Journal.Entries(ctx)
	to, _ = PreviousEntry(entries)
	rp, actual, err = e.RollbackPlan(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if env := mapOf(readProps(t, e, desired, "aws_lambda_function.auth"), "environment"); env["GOSLING_AUTH_CACHE_TTL"] != "5m0s" {
		t.Fatalf("auth function after rollback: %v", env)
	}

	// A renewed certificate: the domain name changes in place.
	n.MotherGoose.APIGateway.Auth.CacheTTL = fly.Duration(5 * time.Minute)
	renewed := st.moto.Certificate(t, "ci-runners.example.com")
	n.MotherGoose.APIGateway.CertificateARN = renewed
	e, desired = awsEngine(t, st, n)
	p, actual, _ = e.Plan(ctx, desired)
	if len(p.Changes) != 1 || p.Changes[0].Address != "aws_apigatewayv2_domain_name.api" || p.Changes[0].Action != Update ||
		len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != "certificate_arn" {
		t.Fatalf("certificate change plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if c := readProps(t, e, desired, "aws_apigatewayv2_domain_name.api")["certificate_arn"]; c != renewed {
		t.Fatalf("certificate after deploy: %v", c)
	}
	checkGateway(t, e, desired)

	// Another domain: the domain name keeps its name, so the deploy stops
	// and says to delete it; once it is gone, the next deploy makes the new
	// one and its mapping.
	n.MotherGoose.APIGateway.Domain = "ci.example.org"
	e, desired = awsEngine(t, st, n)
	p, actual, _ = e.Plan(ctx, desired)
	if p.Count(Update) != 2 || len(p.Changes) != 2 {
		t.Fatalf("domain change plan: %+v", p.Changes)
	}
	_, err = e.Apply(ctx, p, actual, ApplyOptions{})
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Address != "aws_apigatewayv2_domain_name.api" || !strings.Contains(err.Error(), "aws apigatewayv2 delete-domain-name --domain-name ci-runners.example.com") {
		t.Fatalf("domain change: %v", err)
	}
	if err := e.Providers[0].(*AWSProvider).deleteDomainName(ctx, "ci-runners.example.com"); err != nil {
		t.Fatal(err)
	}
	p, actual, _ = e.Plan(ctx, desired)
	if p.Count(Create) != 2 || len(p.Changes) != 2 {
		t.Fatalf("plan after the old domain's deletion: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	checkGateway(t, e, desired)
	if p, _, _ = e.Plan(ctx, desired); !p.Empty() {
		t.Fatalf("plan after the domain change: %+v", p.Changes)
	}
}

// checkGateway checks what the deployed gateway is wired to: the REST
// API's route to the authorizer and the $default route to no authorizer,
// both to the integration; the integration to the VPC link and the Cloud
// Map service the API service registers in; the permission to the API.
func checkGateway(t *testing.T, e *Engine, desired []Resource) {
	t.Helper()
	got, err := e.Read(context.Background(), desired)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Resource{}
	for _, r := range got {
		by[r.Address()] = r
	}
	api, authz, integ := by["aws_apigatewayv2_api.api"], by["aws_apigatewayv2_authorizer.auth"], by["aws_apigatewayv2_integration.api"]
	rest, def := by["aws_apigatewayv2_route.api"], by["aws_apigatewayv2_route.default"]
	if authz.ID == "" || Comparable(rest.Props)["authorizer_id"] != authz.ID || Comparable(rest.Props)["authorization_type"] != "CUSTOM" {
		t.Errorf("REST API route %v, authorizer %s", Comparable(rest.Props), authz.ID)
	}
	if Comparable(def.Props)["authorizer_id"] != "" || Comparable(def.Props)["authorization_type"] != "NONE" {
		t.Errorf("$default route %v", Comparable(def.Props))
	}
	for _, r := range []Resource{rest, def} {
		if Comparable(r.Props)["target"] != "integrations/"+integ.ID {
			t.Errorf("route %s targets %v, not integration %s", r.Name, Comparable(r.Props)["target"], integ.ID)
		}
	}
	cloudMap := by["aws_service_discovery_service.api"].Outputs["arn"]
	if Comparable(integ.Props)["integration_uri"] != cloudMap || cloudMap == "" || Comparable(integ.Props)["connection_id"] != by["aws_apigatewayv2_vpc_link.api"].ID {
		t.Errorf("integration %v, Cloud Map service %s", Comparable(integ.Props), cloudMap)
	}
	if reg := Comparable(by["aws_ecs_service.api"].Props)["service_registry"]; reg != cloudMap {
		t.Errorf("API service registers in %v, not %s", reg, cloudMap)
	}
	perm := Comparable(by["aws_lambda_permission.auth"].Props)
	if perm["source_arn"] != api.Outputs["execution_arn"]+"/*" || perm["principal"] != "apigateway.amazonaws.com" {
		t.Errorf("permission %v for API %s", perm, api.Outputs["execution_arn"])
	}
	if ep := api.Outputs["api_endpoint"]; !strings.HasPrefix(ep, "https://"+api.ID+".execute-api.") {
		t.Errorf("API endpoint %q", ep)
	}
	// The custom domain: one mapping of its root to the $default stage.
	var domain Resource
	for _, r := range desired {
		if r.Address() == "aws_apigatewayv2_domain_name.api" {
			domain = by[r.Address()]
		}
	}
	if domain.ID == "" {
		return
	}
	mapping := by["aws_apigatewayv2_api_mapping.api"]
	if Comparable(mapping.Props)["api_id"] != api.ID || Comparable(mapping.Props)["stage"] != "$default" || Comparable(mapping.Props)["domain_name"] != domain.ID || Comparable(mapping.Props)["api_mapping_key"] != "" {
		t.Errorf("API mapping %v for API %s on %s", Comparable(mapping.Props), api.ID, domain.ID)
	}
	if target := domain.Outputs["target_domain_name"]; !strings.HasPrefix(target, "d-") || !strings.HasSuffix(target, ".execute-api.eu-central-1.amazonaws.com") || domain.Outputs["hosted_zone_id"] == "" {
		t.Errorf("domain name outputs %v", domain.Outputs)
	}
}

// checkSecurityGroups checks the deployed security groups: the VPC link
// names the vpclink group, whose one rule lets it reach the api group on
// TCP 8080; the API service's tasks are in the api group, which lets in
// only the vpclink group and lets out everything; the workers' tasks are
// in the workers group, which lets nothing in.
func checkSecurityGroups(t *testing.T, e *Engine, desired []Resource, vpc string) {
	t.Helper()
	got, err := e.Read(context.Background(), desired)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Resource{}
	rules := map[string][]string{} // group ID -> rule names
	for _, r := range got {
		by[r.Address()] = r
		if r.Type == AWSSecurityGroupRule {
			g := str(Comparable(r.Props), "security_group_id")
			rules[g] = append(rules[g], r.Name)
		}
	}
	vpclink, api, workers := by["aws_security_group.vpclink"], by["aws_security_group.api"], by["aws_security_group.workers"]
	for _, g := range []Resource{vpclink, api, workers} {
		if !strings.HasPrefix(g.ID, "sg-") || Comparable(g.Props)["vpc_id"] != vpc || mapOf(Comparable(g.Props), "tags")[TagDeployment] != "gosling-test" {
			t.Errorf("security group %s: %s %v", g.Name, g.ID, Comparable(g.Props))
		}
	}
	want := map[string][]string{
		vpclink.ID: {"vpclink-egress-api"}, api.ID: {"api-ingress-vpclink", "api-egress-all"}, workers.ID: {"workers-egress-all"},
	}
	for g, names := range want {
		if slices.Sort(rules[g]); !slices.Equal(rules[g], slices.Sorted(slices.Values(names))) {
			t.Errorf("rules of %s: %v, want %v", g, rules[g], names)
		}
	}
	in, out := Comparable(by["aws_security_group_rule.api-ingress-vpclink"].Props), Comparable(by["aws_security_group_rule.vpclink-egress-api"].Props)
	if in["source_security_group_id"] != vpclink.ID || in["protocol"] != "tcp" || in["from_port"] != 8080.0 || in["to_port"] != 8080.0 || in["type"] != "ingress" {
		t.Errorf("API ingress rule %v, vpclink group %s", in, vpclink.ID)
	}
	if out["source_security_group_id"] != api.ID || out["security_group_id"] != vpclink.ID || out["from_port"] != 8080.0 || out["type"] != "egress" {
		t.Errorf("VPC link egress rule %v, api group %s", out, api.ID)
	}
	if all := Comparable(by["aws_security_group_rule.api-egress-all"].Props); all["protocol"] != "-1" || !slices.Equal(strList(all, "cidr_blocks"), []string{"0.0.0.0/0"}) {
		t.Errorf("API egress rule %v", all)
	}
	if l := strList(Comparable(by["aws_apigatewayv2_vpc_link.api"].Props), "security_group_ids"); !slices.Equal(l, []string{vpclink.ID}) {
		t.Errorf("VPC link security groups %v, want %s", l, vpclink.ID)
	}
	for svc, g := range map[string]string{"api": api.ID, "mothergoose-worker": workers.ID, "uglyfox-worker": workers.ID} {
		if l := strList(Comparable(by["aws_ecs_service."+svc].Props), "security_groups"); !slices.Equal(l, []string{g}) {
			t.Errorf("ECS service %s security groups %v, want %s", svc, l, g)
		}
	}
}

// readProps reads one resource's props; the desired set names the auth
// function's resources, as in a plan.
func readProps(t *testing.T, e *Engine, desired []Resource, address string) map[string]any {
	t.Helper()
	got, err := e.Read(context.Background(), desired)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Address() == address {
			return Comparable(r.Props)
		}
	}
	t.Fatalf("no %s", address)
	return nil
}

func serviceMemory(t *testing.T, e *Engine) float64 {
	t.Helper()
	got, err := e.Read(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Address() == "aws_ecs_service.api" {
			return mapOf(Comparable(r.Props), "task")["memory"].(float64)
		}
	}
	t.Fatal("no api service")
	return 0
}

func TestAWSFailedDeployIsUndone(t *testing.T) {
	for _, tc := range []struct {
		fail, address string
		undo          map[string]int // calls the undo makes
	}{
		{"ecs:CreateService", "aws_ecs_service.", map[string]int{
			"servicediscovery:DeleteService": 1, "servicediscovery:DeleteNamespace": 1,
			"ec2:DeleteSecurityGroup": 3, "ec2:RevokeSecurityGroupIngress": 1, "ec2:RevokeSecurityGroupEgress": 3 + 3,
		}},
		// The groups exist when the first ingress rule fails; each one's
		// default egress rule was revoked when it was made.
		{"ec2:AuthorizeSecurityGroupIngress", "aws_security_group_rule.", map[string]int{
			"ec2:DeleteSecurityGroup": 3, "ec2:RevokeSecurityGroupIngress": 0, "servicediscovery:DeleteNamespace": 0,
		}},
		// A group whose default egress rule cannot be revoked is deleted
		// at once, so nothing allows more than its rules say.
		{"ec2:RevokeSecurityGroupEgress", "aws_security_group.", map[string]int{"ec2:DeleteSecurityGroup": 1, "ec2:CreateSecurityGroup": 1}},
		// Most of the gateway exists when its first route fails.
		{"apigateway:CreateRoute", "aws_apigatewayv2_route.", map[string]int{
			"apigateway:DeleteApi": 1, "apigateway:DeleteAuthorizer": 1, "apigateway:DeleteIntegration": 1,
			"apigateway:DeleteVpcLink": 1, "lambda:DeleteFunction": 1, "ecs:DeleteService": 3, "servicediscovery:DeleteNamespace": 1,
			"ec2:DeleteSecurityGroup": 3,
		}},
		// The whole gateway and its domain name exist when the mapping fails.
		{"apigateway:CreateApiMapping", "aws_apigatewayv2_api_mapping.", map[string]int{
			"apigateway:DeleteDomainName": 1, "apigateway:DeleteApi": 1, "apigateway:DeleteStage": 1, "lambda:DeleteFunction": 1,
		}},
		// Both scalable targets are registered when the first policy fails.
		{"application-autoscaling:PutScalingPolicy", "aws_appautoscaling_policy.", map[string]int{
			"application-autoscaling:DeregisterScalableTarget": 2, "application-autoscaling:DeleteScalingPolicy": 0, "ecs:DeleteService": 3,
		}},
	} {
		t.Run(tc.fail, func(t *testing.T) {
			ctx := context.Background()
			st := newAWSStack(t)
			n := st.nest(t, "testdata/aws-nest")
			e, desired := awsEngine(t, st, n)
			p, actual, err := e.Plan(ctx, desired)
			if err != nil {
				t.Fatal(err)
			}
			st.moto.Fail(tc.fail, 100) // the SDK retries a 500
			_, err = e.Apply(ctx, p, actual, ApplyOptions{})
			var ae *ApplyError
			if !errors.As(err, &ae) || !ae.Undone || !strings.HasPrefix(ae.Address, tc.address) {
				t.Fatalf("apply: %v", err)
			}
			st.moto.Fail(tc.fail, 0)
			left, err := e.Read(ctx, desired)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range left {
				if !r.Retain {
					t.Errorf("%s was left behind by the failed deploy", r.Address())
				}
			}
			calls := st.moto.Calls()
			if calls["iam:DeleteRole"] == 0 {
				t.Errorf("undo calls: %v", calls)
			}
			for op, want := range tc.undo {
				if calls[op] != want {
					t.Errorf("%s: %d calls, want %d", op, calls[op], want)
				}
			}
			entries, _ := e.Journal.Entries(ctx)
			if len(entries) != 1 || entries[0].Status != StatusUndone {
				t.Errorf("journal: %+v", entries)
			}
			// The next deploy makes everything.
			p, actual, _ = e.Plan(ctx, desired)
			if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestAWSDomainNeedsCertificate: a Nest built without fly's checks gets
// no domain name without its certificate.
func TestAWSDomainNeedsCertificate(t *testing.T) {
	n := loadNest(t, "testdata/aws-nest")
	n.MotherGoose.APIGateway.CertificateARN = ""
	_, err := AWSDesired(n, AWSAccount{ID: "123456789012", Region: "eu-central-1", Partition: "aws"})
	if err == nil || !strings.Contains(err.Error(), "set certificate_arn") {
		t.Fatalf("AWSDesired: %v", err)
	}
}

func TestAWSCredentialsFailed(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&smithy.GenericAPIError{Code: "InvalidClientTokenId", Message: "The security token included in the request is invalid."}, true},
		{&smithy.GenericAPIError{Code: "ExpiredToken", Message: "The security token included in the request is expired"}, true},
		{&smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}, false},
		{errors.New("operation error STS: GetCallerIdentity, get identity: get credentials: failed to refresh cached credentials, no EC2 IMDS role found"), true},
		{errors.New("dial tcp: lookup sts.eu-central-1.amazonaws.com: no such host"), false},
	} {
		if got := awsCredentialsFailed(c.err); got != c.want {
			t.Errorf("%v: %v", c.err, got)
		}
	}
}

// The AWS auth function has only its role: a token outside Secrets
// Manager is refused before anything is planned.
func TestAWSAuthTokensInSecretsManager(t *testing.T) {
	n := loadNest(t, "testdata/aws-nest")
	n.MotherGoose.APIGateway.Auth.Tokens = append(n.MotherGoose.APIGateway.Auth.Tokens, "vault://kv/gosling/api/token")
	_, err := AWSDesired(n, AWSAccount{ID: "123456789012", Region: "eu-central-1", Partition: "aws"})
	if err == nil || !strings.Contains(err.Error(), "aws-sm://") {
		t.Fatalf("AWSDesired: %v", err)
	}
}

// withoutSecurityGroups is desired as deploy made it before security
// groups: no groups or rules, and neither the VPC link nor the services
// name one.
func withoutSecurityGroups(desired []Resource) []Resource {
	var out []Resource
	for _, r := range desired {
		switch r.Type {
		case AWSSecurityGroup, AWSSecurityGroupRule:
			continue
		case AWSVPCLink:
			r = r.clone()
			link := as[VPCLinkProps](r)
			link.SecurityGroupIDs = []string{}
			r.Props = link
		case AWSService:
			r = r.clone()
			svc := as[ServiceProps](r)
			svc.SecurityGroups = []string{}
			r.Props = svc
		}
		out = append(out, r)
	}
	return out
}

// TestAWSSecurityGroupsRollback: rolling back to a deployment without the
// gateway takes the services out of their groups, then deletes the
// groups with the gateway.
func TestAWSSecurityGroupsRollback(t *testing.T) {
	ctx := context.Background()
	st := newAWSStack(t)
	n := st.nest(t, "testdata/aws-nest")
	aws := n.MotherGoose.Providers[fly.CloudAWS]
	vpc := aws.VPCID
	aws.VPCID = ""
	n.MotherGoose.Providers[fly.CloudAWS] = aws
	e, desired := awsEngine(t, st, n)
	for _, r := range desired {
		if r.Type == AWSSecurityGroup || r.Type == AWSSecurityGroupRule {
			t.Fatalf("%s without a VPC", r.Address())
		}
	}
	p, actual, _ := e.Plan(ctx, desired)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	aws.VPCID = vpc
	n.MotherGoose.Providers[fly.CloudAWS] = aws
	e, desired = awsEngine(t, st, n)
	p, actual, _ = e.Plan(ctx, desired)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	checkSecurityGroups(t, e, desired, st.moto.VPC)

	// A group still named by the VPC link is waited for, not given up on
	// (EC2 says DependencyViolation until the link's interfaces are gone).
	groups, _ := e.Read(ctx, desired)
	i := slices.IndexFunc(groups, func(r Resource) bool { return r.Address() == "aws_security_group.vpclink" })
	if i < 0 {
		t.Fatal("no aws_security_group.vpclink")
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := e.Providers[0].(*AWSProvider).deleteSecurityGroup(short, groups[i].ID)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || st.moto.Calls()["ec2:DeleteSecurityGroup"] != 1 {
		t.Fatalf("delete the VPC link's group: %v, %d calls", err, st.moto.Calls()["ec2:DeleteSecurityGroup"])
	}

	entries, _ := e.Journal.Entries(ctx)
	to, _ := PreviousEntry(entries)
	rp, actual, err := e.RollbackPlan(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if n := rp.Count(Delete); n < 7 {
		t.Fatalf("rollback plan deletes %d resources", n)
	}
	if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := e.Read(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Type == AWSSecurityGroup || r.Type == AWSSecurityGroupRule {
			t.Errorf("%s is left after the rollback", r.Address())
		}
		if r.Type == AWSService && len(strList(Comparable(r.Props), "security_groups")) != 0 {
			t.Errorf("ECS service %s is still in %v", r.Name, Comparable(r.Props)["security_groups"])
		}
	}
}

// TestAWSSecurityGroupsOnAnExistingGateway: a gateway deployed before the
// security groups gets them, but its VPC link cannot take one in place
// (UpdateVpcLink changes only the name): the deploy stops, before any
// service rolls, with the commands that delete the link, and is undone;
// once the link, its integration and the routes are gone, the next deploy
// makes them with the group.
func TestAWSSecurityGroupsOnAnExistingGateway(t *testing.T) {
	ctx := context.Background()
	st := newAWSStack(t)
	n := st.nest(t, "testdata/aws-nest")
	e, desired := awsEngine(t, st, n)
	p, actual, _ := e.Plan(ctx, withoutSecurityGroups(desired))
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	p, actual, _ = e.Plan(ctx, desired)
	if p.Count(Create) != 7 || p.Count(Update) != 4 {
		t.Fatalf("plan: %+v", p.Changes)
	}
	st.moto.ResetCalls()
	_, err := e.Apply(ctx, p, actual, ApplyOptions{})
	var ae *ApplyError
	if !errors.As(err, &ae) || !ae.Undone || ae.Address != "aws_apigatewayv2_vpc_link.api" || !strings.Contains(err.Error(), "a VPC link keeps its security groups") ||
		!strings.Contains(err.Error(), "aws apigatewayv2 delete-vpc-link --vpc-link-id ") {
		t.Fatalf("apply: %v", err)
	}
	// The link comes before the services: none of them rolled.
	if n := st.moto.Calls()["ecs:UpdateService"]; n != 0 {
		t.Errorf("%d ECS service updates before the VPC link stopped the deploy", n)
	}
	got, err := e.Read(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Resource{}
	for _, r := range got {
		by[r.Address()] = r
		if r.Type == AWSSecurityGroup || r.Type == AWSSecurityGroupRule {
			t.Errorf("%s is left by the undone deploy", r.Address())
		}
		if r.Type == AWSService && len(strList(Comparable(r.Props), "security_groups")) != 0 {
			t.Errorf("ECS service %s is still in %v after the undo", r.Name, Comparable(r.Props)["security_groups"])
		}
	}
	// What the message says: the routes and the integration, then the link.
	prov := e.Providers[0].(*AWSProvider)
	for _, a := range []string{"aws_apigatewayv2_route.api", "aws_apigatewayv2_route.default", "aws_apigatewayv2_integration.api", "aws_apigatewayv2_vpc_link.api"} {
		if err := prov.Delete(ctx, by[a]); err != nil {
			t.Fatal(err)
		}
	}
	p, actual, _ = e.Plan(ctx, desired)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	checkSecurityGroups(t, e, desired, st.moto.VPC)
	checkGateway(t, e, desired)
	if p, _, _ = e.Plan(ctx, desired); !p.Empty() {
		t.Fatalf("plan after the link's replacement: %+v", p.Changes)
	}
}

// lambdaConfigChange deploys testdata/aws-nest, then plans the auth
// function's cache TTL as a change of its configuration and returns the
// plan's engine, desired resources, plan and read state.
func lambdaConfigChange(t *testing.T, st *awsStack) (*Engine, []Resource, *Plan, []Resource) {
	t.Helper()
	ctx := context.Background()
	n := st.nest(t, "testdata/aws-nest")
	e, desired := awsEngine(t, st, n)
	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	n.MotherGoose.APIGateway.Auth.CacheTTL = fly.Duration(time.Minute)
	e, desired = awsEngine(t, st, n)
	p, actual, err = e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if got := planFields(p); !slices.Contains(got, "update aws_lambda_function.auth environment.GOSLING_AUTH_CACHE_TTL") {
		t.Fatalf("plan %q", got)
	}
	return e, desired, p, actual
}

// TestAWSLambdaUpdateInProgress: Lambda takes one update at a time. The
// deploy waits for the function's LastUpdateStatus before its first
// update, and when Lambda refuses the update all the same (409
// ResourceConflictException, as real Lambda sends it: shared case
// lambda-update-in-progress), it waits again and retries.
func TestAWSLambdaUpdateInProgress(t *testing.T) {
	ctx := context.Background()
	st := newAWSStack(t)
	e, desired, p, actual := lambdaConfigChange(t, st)

	// The function reads as still updating once, as it does for a while
	// after another update; then as moto has it.
	var inProgress atomic.Int32
	inProgress.Store(1)
	st.moto.Handle("lambda:GetFunction", func(w http.ResponseWriter, r *http.Request, _ []byte) {
		resp, body, err := st.moto.Call(r.Context(), "lambda", r.Method, r.URL.RequestURI(), nil, nil)
		var out map[string]any
		if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil {
			t.Errorf("GetFunction %s: %v %v: %s", r.URL, resp, err, body)
			mototest.WriteError(w, r, mototest.Fault{Status: 500, Code: "ServiceException", Message: "GetFunction failed"})
			return
		}
		if inProgress.Add(-1) >= 0 {
			out["Configuration"].(map[string]any)["LastUpdateStatus"] = string(lambdatypes.LastUpdateStatusInProgress)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	arn := "arn:aws:lambda:eu-central-1:" + st.moto.Account + ":function:gosling-test-gosling-auth"
	st.moto.Inject("lambda:UpdateFunctionConfiguration", mototest.Fault{Status: 409, Code: "ResourceConflictException", Type: "User",
		Message: "The operation cannot be performed at this time. An update is in progress for resource: " + arn})
	st.moto.ResetCalls()
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	calls := st.moto.Calls()
	if inProgress.Load() >= 0 {
		t.Errorf("the deploy did not wait for the function's update before its own")
	}
	if calls["lambda:UpdateFunctionConfiguration"] != 2 {
		t.Errorf("%d UpdateFunctionConfiguration calls, want the refused one and its retry", calls["lambda:UpdateFunctionConfiguration"])
	}
	st.moto.Handle("lambda:GetFunction", nil)
	if p, _, _ = e.Plan(ctx, desired); !p.Empty() {
		t.Fatalf("plan after the update: %+v", p.Changes)
	}
}

// TestAWSLambdaRoleNotYetAssumable: IAM is eventually consistent, so
// Lambda may say for a while that a role cannot be assumed; creating and
// updating a function both retry then.
func TestAWSLambdaRoleNotYetAssumable(t *testing.T) {
	notYet := mototest.Fault{Status: 400, Code: "InvalidParameterValueException", Type: "User",
		Message: "The role defined for the function cannot be assumed by Lambda."}
	ctx := context.Background()
	st := newAWSStack(t)
	n := st.nest(t, "testdata/aws-nest")
	e, desired := awsEngine(t, st, n)
	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	st.moto.Inject("lambda:CreateFunction", notYet, notYet)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if c := st.moto.Calls()["lambda:CreateFunction"]; c != 3 {
		t.Errorf("%d CreateFunction calls, want 3", c)
	}

	n.MotherGoose.APIGateway.Auth.CacheTTL = fly.Duration(time.Minute)
	e, desired = awsEngine(t, st, n)
	p, actual, _ = e.Plan(ctx, desired)
	st.moto.Inject("lambda:UpdateFunctionConfiguration", notYet)
	st.moto.ResetCalls()
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if c := st.moto.Calls()["lambda:UpdateFunctionConfiguration"]; c != 2 {
		t.Errorf("%d UpdateFunctionConfiguration calls, want 2", c)
	}
	if p, _, _ = e.Plan(ctx, desired); !p.Empty() {
		t.Fatalf("plan after the update: %+v", p.Changes)
	}
}

// Every AWS type is read back after a change by a reader of its own
// family; a type without one would be read back by nothing.
func TestAWSEveryTypeHasAReader(t *testing.T) {
	p := &AWSProvider{}
	for _, typ := range awsTypes {
		if p.readersOf(typ) == nil {
			t.Errorf("no reader reads %s back", typ)
		}
	}
}
