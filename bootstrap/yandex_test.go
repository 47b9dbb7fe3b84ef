package bootstrap

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	compute "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1"
	ig "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1/instancegroup"
	functions "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/functions/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gosling-ci/gosling/bootstrap/yctest"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/mototest"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

const ycToken = "t1.test-deployer"

// ycStack is the Yandex stand-in and, for Message Queue (SQS's API),
// moto.
type ycStack struct {
	*yctest.Server
	ymq *mototest.Proxy
}

func yandexEngine(t testing.TB, srv *ycStack, n *fly.Nest) (*Engine, []Resource) {
	t.Helper()
	ymq := srv.ymq.Config()
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
	ymq := mototest.NewProxy(t)
	t.Cleanup(srv.Close)
	// The secret the example Nest's URIs name, made by hand before any
	// deploy; the auth function reads its two API tokens.
	srv.PutSecret(exampleFolder, exampleLockbox, "gosling-by-hand", map[string]string{"api_token_ops": "ops-token", "api_token_ci": "ci-token"})
	// The subnet the example Nest's provider names, where the workers' VMs go.
	srv.PutSubnet(exampleFolder, exampleSubnet, "enpexamplenetwork001", "ru-central1-a")
	return &ycStack{Server: srv, ymq: ymq}
}

// The folder and the Lockbox secret of examples/nest.
const (
	exampleFolder  = "b1gexamplefolder0001"
	exampleLockbox = "e6qexamplelockbox0001"
	exampleSubnet  = "e9bexamplesubnet0001"
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
			return mapOf(Comparable(r.Props), "revision")
		}
	}
	t.Fatal("no api container")
	return nil
}

// checkWorkerGroup checks that the instance group name runs gosling worker
// --queue queue from image on the Container-Optimized Image, as the
// worker's service account, between lo and hi instances, health-checked
// on the worker's /healthz, every instance made from the group's template.
func checkWorkerGroup(t *testing.T, srv *ycStack, name, image, queue string, lo, hi int64) *ig.InstanceGroup {
	t.Helper()
	g, instances, _ := srv.InstanceGroup(name)
	if g == nil {
		t.Fatalf("no instance group %s", name)
	}
	tmpl := g.GetInstanceTemplate()
	c, err := containerOfDeclaration(tmpl.GetMetadata()[yctest.COIMetadataKey])
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if c.Image != image || !slices.Equal(c.Args, workerCommand(queue)) {
		t.Errorf("%s runs %v", name, c)
	}
	if tmpl.GetServiceAccountId() == "" || tmpl.GetServiceAccountId() == g.GetServiceAccountId() {
		t.Errorf("%s: VMs run as %q, the group acts as %q", name, tmpl.GetServiceAccountId(), g.GetServiceAccountId())
	}
	im, err := imageFamily(srv, tmpl.GetBootDiskSpec().GetDiskSpec().GetImageId())
	if err != nil || im != yctest.COIFamily {
		t.Errorf("%s boots %q (%v), not the Container-Optimized Image", name, im, err)
	}
	sp := g.GetScalePolicy()
	switch {
	case lo == hi && sp.GetFixedScale().GetSize() != lo:
		t.Errorf("%s: scale policy %v, want %d fixed", name, sp, lo)
	case lo != hi && (sp.GetAutoScale().GetMinZoneSize() != lo || sp.GetAutoScale().GetMaxSize() != hi || sp.GetAutoScale().GetCpuUtilizationRule().GetUtilizationTarget() != ScalingTargetCPU):
		t.Errorf("%s: scale policy %v, want %d to %d on CPU", name, sp, lo, hi)
	}
	hc := g.GetHealthChecksSpec().GetHealthCheckSpecs()
	if len(hc) != 1 || hc[0].GetHttpOptions().GetPath() != "/healthz" || hc[0].GetHttpOptions().GetPort() != WorkerMetricsPort || g.GetAutoHealingPolicy().GetAutoHealingAction() != ig.AutoHealingPolicy_RECREATE {
		t.Errorf("%s: health checks %v", name, hc)
	}
	if len(instances) != int(lo) {
		t.Errorf("%s runs %d instances, want %d", name, len(instances), lo)
	}
	for _, in := range instances {
		if !proto.Equal(in.Template, tmpl) {
			t.Errorf("%s: instance %s runs an old template", name, in.ID)
		}
	}
	return g
}

// imageFamily asks the stand-in's Compute API for an image's family.
func imageFamily(srv *ycStack, id string) (string, error) {
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+ycToken)
	im, err := compute.NewImageServiceClient(conn).Get(ctx, &compute.GetImageRequest{ImageId: id})
	return im.GetFamily(), err
}

// deployAll plans desired and applies the whole plan.
func deployAll(tb testing.TB, e *Engine, desired []Resource) {
	tb.Helper()
	p, actual, err := e.Plan(context.Background(), desired)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := e.Apply(context.Background(), p, actual, ApplyOptions{}); err != nil {
		tb.Fatal(err)
	}
}

// A new worker image rolls that worker's instance group and nothing else;
// a new size only rescales it; a rollback rolls it back.
func TestYandexWorkersRollOnNewImage(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	n := loadNest(t, "../examples/nest")
	e, desired := yandexEngine(t, srv, n)
	deployAll(t, e, desired)
	if p, _, _ := e.Plan(ctx, desired); !p.Empty() {
		t.Fatalf("second plan: %+v", p.Changes)
	}
	const name = "gosling-prod-mothergoose-worker"
	_, before, _ := srv.InstanceGroup(name)
	// A newer Container-Optimized Image is no change: the next rollout
	// takes it.
	srv.AddImage(yctest.StandardImagesFolder, yctest.COIFamily)
	if p, _, _ := e.Plan(ctx, desired); !p.Empty() {
		t.Fatalf("plan after a new COI release: %+v", p.Changes)
	}

	n.MotherGoose.Containers.Worker.Image = "cr.yandex/crpexample/gosling:1.1.0"
	e, desired = yandexEngine(t, srv, n)
	p, actual, _ := e.Plan(ctx, desired)
	if len(p.Changes) != 1 || p.Changes[0].Address != YCInstanceGroup+".mothergoose-worker" || len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != "instance.container.image" {
		t.Fatalf("image change plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	checkWorkerGroup(t, srv, name, "cr.yandex/crpexample/gosling:1.1.0", "mothergoose", 1, 5)
	_, after, rolled := srv.InstanceGroup(name)
	if rolled != len(before) || after[0].ID == before[0].ID {
		t.Errorf("the group was not rolled: %d instances replaced of %d", rolled, len(before))
	}
	if _, _, r := srv.InstanceGroup("gosling-prod-uglyfox-worker"); r != 0 {
		t.Errorf("the UglyFox group was rolled %d times: its image did not change", r)
	}
	if p, _, _ := e.Plan(ctx, desired); !p.Empty() {
		t.Fatalf("plan after the roll: %+v", p.Changes)
	}

	// More instances: the scale policy alone changes, nothing is rolled.
	n.MotherGoose.Containers.Worker.MaxInstances = 8
	e, desired = yandexEngine(t, srv, n)
	p, actual, _ = e.Plan(ctx, desired)
	if len(p.Changes) != 1 || len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != "scale.max" {
		t.Fatalf("max_instances change plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, r := srv.InstanceGroup(name); r != rolled {
		t.Errorf("a new size rolled the group")
	}
	checkWorkerGroup(t, srv, name, "cr.yandex/crpexample/gosling:1.1.0", "mothergoose", 1, 8)

	// Back two deploys: the old image and size, rolled again.
	entries, _ := e.Journal.Entries(ctx)
	rp, actual, err := e.RollbackPlan(ctx, entries[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Rollback(ctx, rp, actual, entries[0].ID, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	checkWorkerGroup(t, srv, name, "cr.yandex/crpexample/gosling:1.0.0", "mothergoose", 1, 5)
	if _, _, r := srv.InstanceGroup(name); r != 2*rolled {
		t.Errorf("the rollback replaced %d instances, want %d", r-rolled, rolled)
	}
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
	// Temporal Schedules run UglyFox and the jobs; the store's outbox keeps
	// accepted webhooks: no trigger, no queue.
	if ts := srv.Triggers(); len(ts) != 0 {
		t.Errorf("triggers: %v", ts)
	}
	if calls := srv.ymq.Calls(); len(calls) != 0 {
		t.Errorf("Message Queue calls: %v", calls)
	}
	// The API is the one Serverless Container; each worker is an instance
	// group on the Container-Optimized Image, always on.
	if _, cts, _ := srv.Counts(); cts != 1 {
		t.Errorf("%d serverless containers, want the API's alone", cts)
	}
	if rev := apiRevision(t, srv, e); !slices.Equal(strList(rev, "args"), []string{"server"}) {
		t.Errorf("the API's args %v pin an address: it must listen on $PORT", rev["args"])
	}
	checkWorkerGroup(t, srv, "gosling-prod-mothergoose-worker", "cr.yandex/crpexample/gosling:1.0.0", "mothergoose", 1, 5)
	checkWorkerGroup(t, srv, "gosling-prod-uglyfox-worker", "cr.yandex/crpexample/gosling:1.0.0", "uglyfox", 1, 1)
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
	v := mapOf(Comparable(fn.Props), "version")
	if str(v, "runtime") != "golang123" || str(v, "entrypoint") != "index.Handler" || num(v, "memory") != 128<<20 || num(v, "timeout_seconds") != 5 ||
		str(v, "code_sha256") != AuthCodeSHA256 || len(v["secrets"].([]any)) != 2 {
		t.Errorf("auth function version: %v", v)
	}
	if sec := v["secrets"].([]any)[1].(map[string]any); str(sec, "environment_variable") != "GOSLING_AUTH_TOKEN_2" || str(sec, "key") != "api_token_ci" || str(sec, "version") != "current" {
		t.Errorf("second token: %v", sec)
	}
	spec := mapOf(Comparable(gw.Props), "openapi_spec")
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
			r.Type == YCSecretBinding && str(Comparable(r.Props), "service_account_id") == Ref(YCServiceAccount+".auth", "id"):
			t.Errorf("%s without auth tokens", r.Address())
		case r.Type == YCGateway:
			if spec := mapOf(Comparable(r.Props), "openapi_spec"); spec["components"] != nil || len(mapOf(spec, "paths")) != 1 {
				t.Errorf("gateway spec without auth tokens: %v", spec)
			}
			if !strings.Contains(str(Comparable(r.Props), "description"), "no auth function") {
				t.Errorf("gateway description: %q", str(Comparable(r.Props), "description"))
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
		{"quota exceeded", func(s *ycStack) { s.SetQuota(yctest.QuotaContainers, 0) }, codes.ResourceExhausted},
		{"boot image lookup fails", func(s *ycStack) { s.Fail("GetLatestByFamily", 1) }, codes.Internal},
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
			if srv.InstanceGroupCount() != 0 {
				t.Error("an instance group was left behind")
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
	v := mapOf(Comparable(fn.Props), "version")
	if _, err := prov.wait(ctx)(functions.NewFunctionServiceClient(c).CreateVersion(ctx, &functions.CreateFunctionVersionRequest{
		FunctionId: fn.ID, Runtime: "golang123", Entrypoint: "index.Handler", Description: "gosling deploy: code sha256 0ld",
		Resources: &functions.Resources{Memory: 128 << 20}, ExecutionTimeout: durationpb.New(5 * time.Second), ServiceAccountId: str(v, "service_account_id"),
		PackageSource: &functions.CreateFunctionVersionRequest_Content{Content: buf.Bytes()},
	})); err != nil {
		t.Fatal(err)
	}
	before := fn.clone()
	before.Props = withCode(before, "0ld")
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
	after.Props = withCode(after, "n0where")
	if _, err := prov.Update(ctx, before, after); err == nil || !strings.Contains(err.Error(), "n0where") {
		t.Errorf("update to unknown code: %v", err)
	}
}

// withCode is the auth function fn with its version's code sha256 set.
func withCode(fn Resource, sha string) CloudFunctionProps {
	p := as[CloudFunctionProps](fn)
	v := *p.Version
	v.CodeSHA256 = sha
	p.Version = &v
	return p
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
	secrets := mapOf(Comparable(p.Changes[0].Before.Props), "version")["secrets"].([]any)
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

// oldYandexLayout is what deploy made before the workers became instance
// groups: a Serverless Container per worker, timer triggers posting to
// /triggers on them, and a Message Queue queue with its dead-letter queue.
func oldYandexLayout(t *testing.T, n *fly.Nest, desired []Resource) []Resource {
	t.Helper()
	dep, folder := DeploymentName(n), YandexFolder(n)
	labels := map[string]string{TagDeployment: dep}
	var out []Resource
	for _, r := range desired {
		if r.Type != YCInstanceGroup {
			out = append(out, r)
		}
	}
	for _, key := range []string{"mothergoose-worker", "uglyfox-worker"} {
		out = append(out, Resource{Type: YCContainer, Name: key, Props: ContainerProps{
			Name: dep + "-" + key, FolderID: folder, Labels: labels,
			Revision: &ContainerRevision{
				Image: "cr.yandex/crpexample/gosling:1.0.0", Args: []string{"worker", "--queue", strings.TrimSuffix(key, "-worker")}, Memory: int64(fly.GiB),
				Cores: 1, CoreFraction: 100, Concurrency: 1, TimeoutSeconds: 600, MinInstances: 1,
				ServiceAccountID: Ref(YCServiceAccount+"."+key, "id"), Environment: map[string]string{"GOSLING_NEST": "/nest"},
			},
		}, DependsOn: []string{YCFolderBinding + "." + key}})
	}
	seconds := func(n int) *int { return &n }
	out = append(out,
		Resource{Type: YCQueue, Name: "dead-letter", Props: QueueProps{Name: dep + "-events-dlq", MessageRetentionSeconds: seconds(1209600), Tags: labels}},
		Resource{Type: YCQueue, Name: "events", Props: QueueProps{
			Name: dep + "-events", VisibilityTimeoutSeconds: seconds(300), MessageRetentionSeconds: seconds(345600),
			RedrivePolicy: mustJSON(map[string]any{"deadLetterTargetArn": Ref(YCQueue+".dead-letter", "arn"), "maxReceiveCount": 5}), Tags: labels,
		}},
		Resource{Type: YCTrigger, Name: "uglyfox", Props: TriggerProps{
			Name: dep + "-uglyfox", FolderID: folder, Labels: labels, Cron: "*/5 * * * ? *", Payload: `{"trigger":"uglyfox","name":"uglyfox"}`,
			ContainerID: Ref(YCContainer+".uglyfox-worker", "id"), Path: "/triggers", ServiceAccountID: Ref(YCServiceAccount+".invoker", "id"),
		}, DependsOn: []string{YCFolderBinding + ".invoker"}},
	)
	return out
}

// A deployment made by the old layout loses its worker containers, its
// triggers and its queues at the next deploy, which makes the instance
// groups; rolling that deploy back brings the old layout back.
func TestYandexUpgradeFromServerlessWorkers(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	n := loadNest(t, "../examples/nest")
	e, desired := yandexEngine(t, srv, n)
	deployAll(t, e, oldYandexLayout(t, n, desired))
	if _, cts, _ := srv.Counts(); cts != 3 || len(srv.Triggers()) != 1 || srv.ymq.Calls()["sqs:CreateQueue"] != 2 {
		t.Fatalf("the old layout was not made: %d containers, triggers %v, queue calls %v", cts, srv.Triggers(), srv.ymq.Calls())
	}

	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range p.Changes {
		got = append(got, string(c.Action)+" "+c.Address)
	}
	want := []string{
		"create " + YCInstanceGroup + ".mothergoose-worker", "create " + YCInstanceGroup + ".uglyfox-worker",
		"delete " + YCTrigger + ".uglyfox", "delete " + YCContainer + ".uglyfox-worker", "delete " + YCContainer + ".mothergoose-worker",
		"delete " + YCQueue + ".events", "delete " + YCQueue + ".dead-letter",
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("the upgrade plan lacks %q: %v", w, got)
		}
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, cts, _ := srv.Counts(); cts != 1 || len(srv.Triggers()) != 0 || srv.ymq.Calls()["sqs:DeleteQueue"] != 2 || srv.InstanceGroupCount() != 2 {
		t.Fatalf("after the upgrade: %d containers, triggers %v, queue calls %v, %d instance groups", cts, srv.Triggers(), srv.ymq.Calls(), srv.InstanceGroupCount())
	}
	if p, _, _ := e.Plan(ctx, desired); !p.Empty() {
		t.Fatalf("plan after the upgrade: %+v", p.Changes)
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
	if _, cts, _ := srv.Counts(); cts != 3 || len(srv.Triggers()) != 1 || srv.InstanceGroupCount() != 0 {
		t.Fatalf("after the rollback: %d containers, triggers %v, %d instance groups", cts, srv.Triggers(), srv.InstanceGroupCount())
	}
}

// The instance groups act as their own service account, which must hold
// the folder roles that make VMs: without them Yandex refuses the group.
func TestYandexInstanceGroupNeedsItsRoles(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	n := loadNest(t, "../examples/nest")
	e, desired := yandexEngine(t, srv, n)
	for i, r := range desired {
		if r.Address() == YCFolderBinding+".instance-groups" {
			b := as[FolderBindingProps](r)
			b.Roles = []string{"compute.editor", "vpc.user"}
			desired[i].Props = b
		}
	}
	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Apply(ctx, p, actual, ApplyOptions{})
	if status.Code(errorsUnwrapAll(err)) != codes.PermissionDenied || !strings.Contains(err.Error(), "iam.serviceAccounts.user") {
		t.Fatalf("apply without iam.serviceAccounts.user: %v", err)
	}
}
