package bootstrap

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	functions "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/functions/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gosling-ci/gosling/bootstrap/awstest"
	"github.com/gosling-ci/gosling/bootstrap/yctest"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

const ycToken = "t1.test-deployer"

// ycStack is the Yandex stand-in and, for Message Queue, the SQS one.
type ycStack struct {
	*yctest.Server
	ymq *awstest.Server
}

func yandexEngine(t testing.TB, srv *ycStack, n *fly.Nest) (*Engine, []Resource) {
	t.Helper()
	ymq := awstest.Config(srv.ymq.URL)
	ymq.Region = "ru-central1"
	p, err := NewYandexProvider(context.Background(), DeploymentName(n), n, YandexOptions{
		Auth: yandexauth.Options{Endpoint: srv.Addr, Plaintext: true, IAMToken: ycToken}, PollInterval: time.Millisecond,
		MessageQueue: &ymq,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	desired, err := YandexDesired(n, p.FolderID)
	if err != nil {
		t.Fatal(err)
	}
	return &Engine{Deployment: DeploymentName(n), Cloud: "yandex", Providers: []Provider{p}, Journal: p.NewYandexJournal()}, desired
}

func newYC(t testing.TB) *ycStack {
	t.Helper()
	srv, err := yctest.New(ycToken)
	if err != nil {
		t.Fatal(err)
	}
	ymq := awstest.New()
	t.Cleanup(func() { srv.Close(); ymq.Close() })
	// The secret the example Nest's URIs name, made by hand before any
	// deploy; the auth function reads its two API tokens.
	srv.PutSecret(exampleFolder, exampleLockbox, "gosling-by-hand", map[string]string{"api_token_ops": "ops-token", "api_token_ci": "ci-token"})
	return &ycStack{Server: srv, ymq: ymq}
}

// The folder and the Lockbox secret of examples/nest.
const (
	exampleFolder  = "b1gexamplefolder0001"
	exampleLockbox = "e6qexamplelockbox0001"
)

func apiRevision(t *testing.T, srv *ycStack, e *Engine) map[string]any {
	t.Helper()
	got, err := e.Read(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Address() == YCContainer+".api" {
			if revs := srv.Revisions(r.ID); len(revs) == 0 {
				t.Fatal("the api container has no revision")
			}
			return mapOf(r.Props, "revision")
		}
	}
	t.Fatal("no api container")
	return nil
}

func TestYandexDeploySequence(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	n := loadNest(t, "../examples/nest")
	e, desired := yandexEngine(t, srv, n)

	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if p.Count(Create) != len(desired) {
		t.Fatalf("first plan: %+v", p.Changes)
	}
	checkAuthPlan(t, p)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	checkAuthMade(t, srv, e)
	if calls := srv.Calls(); calls["Get"] == 0 {
		t.Errorf("no operation was polled: %v", calls)
	}
	roles := 0
	for _, b := range srv.Bindings(YandexFolder(n)) {
		if b.GetSubject().GetType() == "serviceAccount" {
			roles++
		}
	}
	want := 0
	for _, rs := range ycRoles {
		want += len(rs)
	}
	if roles != want {
		t.Errorf("%d folder roles bound, want %d", roles, want)
	}
	if ts := srv.Triggers(); len(ts) != 1+len(n.Jobs) || ts[0].GetRule().GetTimer().GetInvokeContainerWithRetry().GetContainerId() == "" {
		t.Errorf("triggers: %v", ts)
	}
	for _, tr := range srv.Triggers() {
		if tr.GetName() == "gosling-prod-uglyfox" && tr.GetRule().GetTimer().GetCronExpression() != "*/5 * * * ? *" {
			t.Errorf("uglyfox trigger cron: %q", tr.GetRule().GetTimer().GetCronExpression())
		}
	}
	made, err := e.Read(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	secrets := 0
	for _, r := range made {
		if r.Type == YCSecret && r.Retain && r.Outputs["id"] != "" {
			secrets++
		}
	}
	if want := 2 + len(runnerEggs(n, fly.CloudYandex)); secrets != want {
		t.Errorf("%d Lockbox secrets made, want %d (the servers', the runner tokens' and each egg's)", secrets, want)
	}
	if sec := srv.Secret("gosling-prod-runner-tokens"); sec == nil || sec.GetCurrentVersion() != nil {
		t.Errorf("the runner tokens' secret is not empty: %v", sec)
	}
	if calls := srv.ymq.Calls(); calls["sqs:CreateQueue"] != 2 {
		t.Errorf("Message Queue calls: %v", calls)
	}
	if spec := srv.Gateways()["gosling-prod"]; !strings.Contains(spec, `"type":"serverless_containers"`) || strings.Contains(spec, "${") {
		t.Errorf("API gateway spec: %s", spec)
	}

	p, _, err = e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Fatalf("second plan: %+v", p.Changes)
	}

	n.MotherGoose.Containers.API.Memory = 1 * fly.GiB
	e, desired = yandexEngine(t, srv, n)
	p, actual, _ = e.Plan(ctx, desired)
	if len(p.Changes) != 1 || p.Changes[0].Address != YCContainer+".api" || len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != "revision.memory" {
		t.Fatalf("memory change plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := apiRevision(t, srv, e)["memory"]; m != float64(fly.GiB) {
		t.Fatalf("memory after deploy: %v", m)
	}

	entries, _ := e.Journal.Entries(ctx)
	to, _ := PreviousEntry(entries)
	rp, actual, err := e.RollbackPlan(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := apiRevision(t, srv, e)["memory"]; m != float64(512*fly.MiB) {
		t.Fatalf("memory after rollback: %v", m)
	}

	// The authorizer's cache TTL is one field of the gateway's spec.
	n.MotherGoose.Containers.API.Memory = 512 * fly.MiB // as rolled back
	n.MotherGoose.APIGateway.Auth.CacheTTL = fly.Duration(time.Minute)
	e, desired = yandexEngine(t, srv, n)
	p, actual, _ = e.Plan(ctx, desired)
	ttl := "openapi_spec.components.securitySchemes.gosling-auth.x-yc-apigateway-authorizer.authorizer_result_ttl_in_seconds"
	if len(p.Changes) != 1 || p.Changes[0].Address != YCGateway+".api" || len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != ttl {
		t.Fatalf("cache_ttl change plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if spec := srv.Gateways()["gosling-prod"]; !strings.Contains(spec, `"authorizer_result_ttl_in_seconds":60`) {
		t.Errorf("spec after the cache_ttl change: %s", spec)
	}

	// One token fewer is a new version of the function, nothing else.
	n.MotherGoose.APIGateway.Auth.Tokens = n.MotherGoose.APIGateway.Auth.Tokens[:1]
	e, desired = yandexEngine(t, srv, n)
	p, actual, _ = e.Plan(ctx, desired)
	if len(p.Changes) != 1 || p.Changes[0].Address != YCFunction+".auth" || len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != "version.secrets" {
		t.Fatalf("tokens change plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if vs, _ := srv.FunctionVersions("gosling-prod-auth"); len(vs) != 2 || len(vs[0].GetSecrets()) != 1 || vs[1].GetTags() != nil {
		t.Fatalf("versions after the tokens change: %v", vs)
	}
	if p, _, _ := e.Plan(ctx, desired); !p.Empty() {
		t.Fatalf("plan after the tokens change: %+v", p.Changes)
	}

	// A token rotated in Lockbox (a new current version) is a new version
	// of the function at the next deploy.
	rotated := srv.PutSecret(exampleFolder, exampleLockbox, "", map[string]string{"api_token_ops": "ops-token-2"})
	p, actual, _ = e.Plan(ctx, desired)
	if len(p.Changes) != 1 || p.Changes[0].Address != YCFunction+".auth" {
		t.Fatalf("rotation plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if vs, _ := srv.FunctionVersions("gosling-prod-auth"); len(vs) != 3 || vs[0].GetSecrets()[0].GetVersionId() != rotated {
		t.Fatalf("versions after the rotation: %v", vs)
	}

	// Rolling back the rotation's deploy brings back the version before.
	entries, _ = e.Journal.Entries(ctx)
	to, _ = PreviousEntry(entries)
	rp, actual, err = e.RollbackPlan(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	vs, _ := srv.FunctionVersions("gosling-prod-auth")
	if len(vs) != 4 || vs[0].GetSecrets()[0].GetVersionId() == rotated || len(vs[0].GetSecrets()) != 1 {
		t.Fatalf("versions after the rollback: %v", vs)
	}
}

// checkAuthPlan checks the first plan's auth function and the authorizer
// in the gateway's spec.
func checkAuthPlan(t *testing.T, p *Plan) {
	t.Helper()
	var fn, gw *Resource
	for _, c := range p.Changes {
		switch c.Address {
		case YCFunction + ".auth":
			fn = c.After
		case YCGateway + ".api":
			gw = c.After
		}
	}
	if fn == nil || gw == nil {
		t.Fatalf("no auth function or gateway in the plan: %+v", p.Changes)
	}
	v := mapOf(fn.Props, "version")
	if str(v, "runtime") != "golang123" || str(v, "entrypoint") != "index.Handler" || num(v, "memory") != 128<<20 || num(v, "timeout_seconds") != 5 ||
		str(v, "code_sha256") != AuthCodeSHA256 || len(v["secrets"].([]any)) != 2 {
		t.Errorf("auth function version: %v", v)
	}
	if sec := v["secrets"].([]any)[1].(map[string]any); str(sec, "environment_variable") != "GOSLING_AUTH_TOKEN_2" || str(sec, "key") != "api_token_ci" || str(sec, "version") != "current" {
		t.Errorf("second token: %v", sec)
	}
	spec := mapOf(gw.Props, "openapi_spec")
	authz := mapOf(mapOf(mapOf(mapOf(spec, "components"), "securitySchemes"), "gosling-auth"), "x-yc-apigateway-authorizer")
	if str(authz, "type") != "function" || str(authz, "tag") != "$latest" || num(authz, "authorizer_result_ttl_in_seconds") != 300 ||
		str(authz, "function_id") != Unknown && !strings.HasPrefix(str(authz, "function_id"), "${") {
		t.Errorf("authorizer: %v", authz)
	}
	paths := mapOf(spec, "paths")
	if api := mapOf(mapOf(paths, "/api/{proxy+}"), "x-yc-apigateway-any-method"); api["security"] == nil {
		t.Errorf("/api/{proxy+} is not behind the authorizer: %v", api)
	}
	if open := mapOf(mapOf(paths, "/{proxy+}"), "x-yc-apigateway-any-method"); open["security"] != nil {
		t.Errorf("webhook and agent paths are behind the authorizer: %v", open)
	}
}

// checkAuthMade checks the auth function, its version and the roles the
// first deploy made.
func checkAuthMade(t *testing.T, srv *ycStack, e *Engine) {
	t.Helper()
	made, err := e.Read(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, r := range made {
		ids[r.Address()] = r.ID
	}
	authSA, invoker, fnID := ids[YCServiceAccount+".auth"], ids[YCServiceAccount+".invoker"], ids[YCFunction+".auth"]
	vs, content := srv.FunctionVersions("gosling-prod-auth")
	if len(vs) != 1 || fnID == "" {
		t.Fatalf("auth function versions: %v", vs)
	}
	v := vs[0]
	if v.GetServiceAccountId() != authSA || v.GetResources().GetMemory() != 128<<20 || v.GetExecutionTimeout().AsDuration() != 5*time.Second ||
		len(v.GetSecrets()) != 2 || v.GetSecrets()[0].GetEnvironmentVariable() != "GOSLING_AUTH_TOKEN_1" || v.GetSecrets()[0].GetVersionId() == "" {
		t.Errorf("auth function version: %v", v)
	}
	zr, err := zip.NewReader(bytes.NewReader(content), int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		_ = rc.Close()
		if f.Name == "index.go" && !bytes.Equal(b, authFuncSource) || f.Name == "go.mod" && strings.Contains(string(b), "\ngo ") {
			t.Errorf("uploaded %s:\n%s", f.Name, b)
		}
	}
	// The auth function's account reads the token secret and nothing
	// else; the invoker may call that one function.
	for _, b := range srv.Bindings(exampleFolder) {
		if b.GetSubject().GetId() == authSA {
			t.Errorf("folder role for the auth function's account: %s", b.GetRoleId())
		}
	}
	if bs := srv.SecretBindings(exampleLockbox); len(bs) != 1 || bs[0].GetRoleId() != "lockbox.payloadViewer" || bs[0].GetSubject().GetId() != authSA {
		t.Errorf("token secret's bindings: %v", bs)
	}
	if bs := srv.Bindings(fnID); len(bs) != 1 || bs[0].GetRoleId() != "functions.functionInvoker" || bs[0].GetSubject().GetId() != invoker {
		t.Errorf("auth function's bindings: %v", bs)
	}
	if spec := srv.Gateways()["gosling-prod"]; !strings.Contains(spec, `"function_id":"`+fnID+`"`) {
		t.Errorf("the gateway's authorizer does not call %s: %s", fnID, spec)
	}
}

func TestYandexNoAuthTokensNoFunction(t *testing.T) {
	n := loadNest(t, "../examples/nest")
	n.MotherGoose.APIGateway.Auth.Tokens = nil
	desired, err := YandexDesired(n, exampleFolder)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range desired {
		switch {
		case r.Type == YCFunction || r.Type == YCFunctionBinding || r.Address() == YCServiceAccount+".auth",
			r.Type == YCSecretBinding && str(r.Props, "service_account_id") == Ref(YCServiceAccount+".auth", "id"):
			t.Errorf("%s without auth tokens", r.Address())
		case r.Type == YCGateway:
			if spec := mapOf(r.Props, "openapi_spec"); spec["components"] != nil || len(mapOf(spec, "paths")) != 1 {
				t.Errorf("gateway spec without auth tokens: %v", spec)
			}
			if !strings.Contains(str(r.Props, "description"), "no auth function") {
				t.Errorf("gateway description: %q", str(r.Props, "description"))
			}
		}
	}
	n.MotherGoose.APIGateway.Auth.Tokens = []fly.SecretRef{"vault://kv/gosling/api#token"}
	if _, err := YandexDesired(n, exampleFolder); err == nil || !strings.Contains(err.Error(), "yc-lockbox://") {
		t.Errorf("a token outside Lockbox: %v", err)
	}
}

func TestYandexFailedDeployIsUndone(t *testing.T) {
	ctx := context.Background()
	n := loadNest(t, "../examples/nest")
	for _, tc := range []struct {
		name   string
		break_ func(*ycStack)
		code   codes.Code
	}{
		{"internal error in the middle", func(s *ycStack) { s.Fail("DeployRevision", 1) }, codes.Internal},
		{"permission denied", func(s *ycStack) { s.Deny("DeployRevision") }, codes.PermissionDenied},
		{"quota exceeded", func(s *ycStack) { s.SetQuota(yctest.QuotaContainers, 2) }, codes.ResourceExhausted},
		{"auth function version refused", func(s *ycStack) { s.Fail("CreateVersion", 1) }, codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newYC(t)
			e, desired := yandexEngine(t, srv, n)
			p, actual, err := e.Plan(ctx, desired)
			if err != nil {
				t.Fatal(err)
			}
			tc.break_(srv)
			_, err = e.Apply(ctx, p, actual, ApplyOptions{})
			var ae *ApplyError
			if !errors.As(err, &ae) || !ae.Undone || status.Code(errors.Unwrap(ae.Err)) != tc.code {
				t.Fatalf("apply: %v (code %v)", err, status.Code(errors.Unwrap(errorsUnwrapAll(err))))
			}
			if sas, cts, dbs := srv.Counts(); sas != 0 || cts != 0 || dbs != 1 {
				t.Errorf("left behind: %d service accounts, %d containers, %d databases (the database is retained)", sas, cts, dbs)
			}
			if len(srv.Bindings(YandexFolder(n))) != 0 || len(srv.SecretBindings(exampleLockbox)) != 0 {
				t.Error("folder or secret roles left behind")
			}
			if srv.FunctionCount() != 0 {
				t.Error("the auth function was left behind")
			}
			if c := srv.ymq.Calls(); c["sqs:CreateQueue"] != c["sqs:DeleteQueue"] {
				t.Errorf("queues left behind: %v", c)
			}
		})
	}
}

// errorsUnwrapAll returns the innermost error.
func errorsUnwrapAll(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

func TestYandexNameTaken(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	n := loadNest(t, "../examples/nest")
	e, desired := yandexEngine(t, srv, n)
	// Someone made a container of that name by hand: it carries no label,
	// so deploy does not adopt it and Yandex refuses the name.
	p, actual, _ := e.Plan(ctx, desired)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	e2, desired2 := yandexEngine(t, srv, n)
	e2.Deployment = "another"
	for _, pr := range e2.Providers {
		pr.(*YandexProvider).Deployment = "another"
	}
	p, actual, _ = e2.Plan(ctx, desired2)
	_, err := e2.Apply(ctx, p, actual, ApplyOptions{})
	if status.Code(errorsUnwrapAll(err)) != codes.AlreadyExists || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("apply over taken names: %v", err)
	}
}

// A rollback to a deploy whose auth function had other code copies that
// code from the function's earlier version: this build only holds its own.
func TestYandexAuthRollbackToOlderCode(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	n := loadNest(t, "../examples/nest")
	e, desired := yandexEngine(t, srv, n)
	p, actual, _ := e.Plan(ctx, desired)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	prov := e.Providers[0].(*YandexProvider)
	got, err := prov.Read(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	var fn Resource
	for _, r := range got {
		if r.Address() == YCFunction+".auth" {
			fn = r
		}
	}
	// An earlier gosling's code, as an earlier deploy left it.
	c, err := prov.conn(ctx, ycFunctionService)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte("package main\n\nfunc Handler() (string, error) { return \"old\", nil }\n")
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("index.go")
	_, _ = w.Write(old)
	_ = zw.Close()
	v := mapOf(fn.Props, "version")
	if _, err := prov.wait(ctx)(functions.NewFunctionServiceClient(c).CreateVersion(ctx, &functions.CreateFunctionVersionRequest{
		FunctionId: fn.ID, Runtime: "golang123", Entrypoint: "index.Handler", Description: "gosling deploy: code sha256 0ld",
		Resources: &functions.Resources{Memory: 128 << 20}, ExecutionTimeout: durationpb.New(5 * time.Second), ServiceAccountId: str(v, "service_account_id"),
		PackageSource: &functions.CreateFunctionVersionRequest_Content{Content: buf.Bytes()},
	})); err != nil {
		t.Fatal(err)
	}
	before := fn.clone()
	mapOf(before.Props, "version")["code_sha256"] = "0ld"
	after := fn.clone()
	if _, err := prov.Update(ctx, fn, before); err != nil {
		t.Fatal(err)
	}
	vs, content := srv.FunctionVersions("gosling-prod-auth")
	if len(vs) != 3 || vs[0].GetDescription() != "gosling deploy: code sha256 0ld" || len(content) == 0 {
		t.Fatalf("versions after going back to the old code: %v", vs)
	}
	zr, _ := zip.NewReader(bytes.NewReader(content), int64(len(content)))
	rc, _ := zr.File[0].Open()
	if b, _ := io.ReadAll(rc); !bytes.Equal(b, old) {
		t.Errorf("code after going back: %s", b)
	}
	// Code neither this build's nor in an earlier version is refused.
	mapOf(after.Props, "version")["code_sha256"] = "n0where"
	if _, err := prov.Update(ctx, before, after); err == nil || !strings.Contains(err.Error(), "n0where") {
		t.Errorf("update to unknown code: %v", err)
	}
}

// A token whose URI pins a Lockbox version keeps it: the next plan is
// empty, also after the secret gets a newer version.
func TestYandexAuthPinnedTokenVersion(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	n := loadNest(t, "../examples/nest")
	pinned := srv.Secret("gosling-by-hand").GetCurrentVersion().GetId()
	n.MotherGoose.APIGateway.Auth.Tokens[0] = fly.SecretRef("yc-lockbox://" + exampleLockbox + "/api_token_ops?version=" + pinned)
	e, desired := yandexEngine(t, srv, n)
	p, actual, _ := e.Plan(ctx, desired)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := e.Plan(ctx, desired); !p.Empty() {
		t.Fatalf("second plan: %+v", p.Changes)
	}
	srv.PutSecret(exampleFolder, exampleLockbox, "", map[string]string{"api_token_ci": "ci-token-2"})
	p, _, _ = e.Plan(ctx, desired)
	if len(p.Changes) != 1 || p.Changes[0].Address != YCFunction+".auth" {
		t.Fatalf("plan after a new version of the secret: %+v", p.Changes)
	}
	secrets := mapOf(p.Changes[0].Before.Props, "version")["secrets"].([]any)
	if got := str(secrets[0].(map[string]any), "version"); got != pinned {
		t.Errorf("the pinned token reads as version %q, want %s", got, pinned)
	}
}

// A token whose Lockbox secret has no version yet, or does not exist,
// stops the plan with the command that fixes it, before anything is made.
func TestYandexAuthTokenWithoutVersion(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	srv.PutSecret(exampleFolder, "e6qemptysecret000001", "made-empty", nil)
	n := loadNest(t, "../examples/nest")
	n.MotherGoose.APIGateway.Auth.Tokens[1] = "yc-lockbox://e6qemptysecret000001/api_token_ci"
	e, desired := yandexEngine(t, srv, n)
	p := e.Providers[0].(*YandexProvider)
	err := p.CheckAuthTokens(ctx, desired)
	if err == nil || !strings.Contains(err.Error(), "gosling secrets put yc-lockbox://e6qemptysecret000001/api_token_ci") {
		t.Fatalf("no version: %v", err)
	}
	n.MotherGoose.APIGateway.Auth.Tokens[1] = "yc-lockbox://e6qnosuchsecret000001/api_token_ci"
	_, desired = yandexEngine(t, srv, n)
	if err := p.CheckAuthTokens(ctx, desired); err == nil || !strings.Contains(err.Error(), "e6qnosuchsecret000001") {
		t.Fatalf("no secret: %v", err)
	}
	srv.PutSecret(exampleFolder, "e6qemptysecret000001", "", map[string]string{"api_token_ci": "ci-token"})
	n.MotherGoose.APIGateway.Auth.Tokens[1] = "yc-lockbox://e6qemptysecret000001/api_token_ci"
	_, desired = yandexEngine(t, srv, n)
	if err := p.CheckAuthTokens(ctx, desired); err != nil {
		t.Fatalf("with a version: %v", err)
	}
	if sas, cts, _ := srv.Counts(); sas != 0 || cts != 0 {
		t.Errorf("a check made %d service accounts, %d containers", sas, cts)
	}
}
