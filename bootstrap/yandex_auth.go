package bootstrap

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/yandex-cloud/go-genproto/yandex/cloud/access"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/lockbox/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	rm "github.com/yandex-cloud/go-genproto/yandex/cloud/resourcemanager/v1"
	functions "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/functions/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/gosling-ci/gosling/fly"
)

// The auth function's code: package bootstrap/authfunc, uploaded as the
// function version's content.
//
//go:embed authfunc/index.go
var authFuncSource []byte

// authGoMod is the go.mod uploaded with the auth function: a module name
// that is not main and no go line, as the Cloud Functions builder wants
// (https://yandex.cloud/en/docs/functions/lang/golang/dependencies).
const authGoMod = "module gosling-auth\n"

// The auth function version's settings.
const (
	authRuntime    = "golang123"
	authEntrypoint = "index.Handler"
	authMemory     = 128 << 20 // bytes
	authTimeout    = 5         // seconds
	// authTokenEnv numbers the tokens' environment variables from 1, as
	// authfunc.TokenEnvPrefix reads them.
	authTokenEnv = "GOSLING_AUTH_TOKEN_"
	// authCodeNote starts the description of every version deploy makes;
	// the sha256 of the uploaded sources follows, so a plan compares code
	// without the zip.
	authCodeNote = "gosling deploy: code sha256 "
	// secretCurrent stands for a Lockbox secret's current version, where a
	// token's URI pins none.
	secretCurrent = "current"
)

// authCode is the uploaded sources, name and text, in zip order.
var authCode = [][2]string{{"index.go", string(authFuncSource)}, {"go.mod", authGoMod}}

// AuthCodeSHA256 is the hex sha256 of the auth function's sources as
// uploaded (each file's name, a NUL, its bytes, a NUL, in zip order).
var AuthCodeSHA256 = func() string {
	h := sha256.New()
	for _, f := range authCode {
		h.Write([]byte(f[0] + "\x00" + f[1] + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))
}()

// authZip is the version's content: the sources as a zip archive.
func authZip() ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range authCode {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f[0], Method: zip.Deflate, Modified: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write([]byte(f[1])); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// yandexAuth builds the auth function of mothergoose.api_gateway.auth: its
// service account, which may read the token secrets and nothing else (the
// role lockbox.payloadViewer bound on each secret the tokens name, not on
// the folder), the function and its version (Go runtime, 128 MB, 5 s, the
// tokens as the environment variables GOSLING_AUTH_TOKEN_1..N from
// Lockbox), and functions.functionInvoker for the invoker service account
// on that one function. It returns nil when auth.tokens is empty.
// Errors: a token that is not a yc-lockbox:// URI.
func yandexAuth(n *fly.Nest, folder string, labels map[string]any) ([]Resource, error) {
	auth := n.MotherGoose.APIGateway.Auth
	if len(auth.Tokens) == 0 {
		return nil, nil
	}
	dep := DeploymentName(n)
	sa := YCServiceAccount + ".auth"
	out := []Resource{{Type: YCServiceAccount, Name: "auth", Props: untyped{
		"name": dep + "-auth", "folder_id": folder, "description": "gosling " + dep + ": auth (the API gateway's authorizer function)",
	}}}
	var secrets []any
	var deps []string
	for i, ref := range auth.Tokens {
		u, err := ref.Parse()
		if err != nil || u.Scheme != fly.SchemeLockbox {
			return nil, fmt.Errorf("mothergoose.api_gateway.auth.tokens[%d]: the auth function reads its tokens from Lockbox: write yc-lockbox://<secret-id>/<key>", i)
		}
		version := u.Version
		if version == "" {
			version = secretCurrent
		}
		secrets = append(secrets, map[string]any{
			"secret_id": u.Path, "version": version, "key": u.Key, "environment_variable": fmt.Sprintf("%s%d", authTokenEnv, i+1),
		})
		addr := YCSecretBinding + "." + u.Path
		if slices.Contains(deps, addr) {
			continue
		}
		deps = append(deps, addr)
		out = append(out, Resource{Type: YCSecretBinding, Name: u.Path, Props: untyped{
			"resource_id": u.Path, "service_account_id": Ref(sa, "id"), "roles": []string{"lockbox.payloadViewer"},
		}})
	}
	out = append(out,
		Resource{Type: YCFunction, Name: "auth", Props: untyped{
			"name": auth.Name, "folder_id": folder, "labels": labels,
			"description": "gosling " + dep + ": the API gateway's authorizer of /api/",
			"version": map[string]any{
				"runtime": authRuntime, "entrypoint": authEntrypoint, "memory": authMemory, "timeout_seconds": authTimeout,
				"service_account_id": Ref(sa, "id"), "code_sha256": AuthCodeSHA256, "secrets": secrets,
			},
		}, DependsOn: deps},
		Resource{Type: YCFunctionBinding, Name: "auth", Props: untyped{
			"resource_id": Ref(YCFunction+".auth", "id"), "service_account_id": Ref(YCServiceAccount+".invoker", "id"), "roles": []string{"functions.functionInvoker"},
		}},
	)
	return out, nil
}

// gatewaySpec is the API gateway's OpenAPI spec: /api/{proxy+} (the REST
// API) behind the auth function when auth.tokens is set, every other path
// (GitLab's webhooks, the runners' agent, health) straight to the API
// container, which checks X-Gitlab-Token and runner tokens itself. Of two
// greedy routes the gateway picks the longer, so /api/... takes the first
// (https://yandex.cloud/en/docs/api-gateway/concepts, "Algorithm for a
// handler search"). The authorizer's answer is cached for auth.cache_ttl
// (https://yandex.cloud/en/docs/api-gateway/concepts/extensions/function-authorizer).
func gatewaySpec(n *fly.Nest, dep string) (spec map[string]any, description string) {
	invoker := Ref(YCServiceAccount+".invoker", "id")
	route := func(param string) map[string]any {
		return map[string]any{
			"parameters": []any{map[string]any{"name": param, "in": "path", "required": true, "schema": map[string]any{"type": "string"}}},
			"x-yc-apigateway-integration": map[string]any{
				"type": "serverless_containers", "container_id": Ref(YCContainer+".api", "id"), "service_account_id": invoker,
			},
		}
	}
	spec = map[string]any{
		"openapi": "3.0.0", "info": map[string]any{"title": dep, "version": "1.0.0"},
		"paths": map[string]any{"/{proxy+}": map[string]any{"x-yc-apigateway-any-method": route("proxy")}},
	}
	auth := n.MotherGoose.APIGateway.Auth
	if len(auth.Tokens) == 0 {
		return spec, "gosling " + dep + ": no auth function (mothergoose.api_gateway.auth.tokens is empty): the API alone checks tokens on /api/"
	}
	api := route("proxy")
	api["security"] = []any{map[string]any{"gosling-auth": []any{}}}
	spec["paths"].(map[string]any)["/api/{proxy+}"] = map[string]any{"x-yc-apigateway-any-method": api}
	authorizer := map[string]any{
		"type": "function", "function_id": Ref(YCFunction+".auth", "id"), "tag": "$latest", "service_account_id": invoker,
	}
	if ttl := int(auth.CacheTTL.D().Seconds()); ttl > 0 {
		authorizer["authorizer_result_ttl_in_seconds"] = ttl
	}
	spec["components"] = map[string]any{"securitySchemes": map[string]any{"gosling-auth": map[string]any{
		"type": "http", "scheme": "bearer", "x-yc-apigateway-authorizer": authorizer,
	}}}
	return spec, "gosling " + dep + ": /api/ takes a bearer token, checked by function " + auth.Name
}

const ycFunctionService = protoreflect.FullName("yandex.cloud.serverless.functions.v1.FunctionService")

// accessBindings is the access-binding half of a Yandex service that has
// one (Resource Manager folders, Lockbox secrets, functions).
type accessBindings interface {
	ListAccessBindings(ctx context.Context, in *access.ListAccessBindingsRequest, opts ...grpc.CallOption) (*access.ListAccessBindingsResponse, error)
	UpdateAccessBindings(ctx context.Context, in *access.UpdateAccessBindingsRequest, opts ...grpc.CallOption) (*operation.Operation, error)
}

// bindingClient reaches the access bindings of the resources a binding
// type binds roles on.
func (p *YandexProvider) bindingClient(ctx context.Context, typ string) (accessBindings, error) {
	switch typ {
	case YCFolderBinding:
		c, err := p.conn(ctx, ycFolderService)
		if err != nil {
			return nil, err
		}
		return rm.NewFolderServiceClient(c), nil
	case YCSecretBinding:
		c, err := p.conn(ctx, ycSecretService)
		if err != nil {
			return nil, err
		}
		return lockbox.NewSecretServiceClient(c), nil
	case YCFunctionBinding:
		c, err := p.conn(ctx, ycFunctionService)
		if err != nil {
			return nil, err
		}
		return functions.NewFunctionServiceClient(c), nil
	}
	return nil, fmt.Errorf("%s binds no roles", typ)
}

// bindingTarget is the ID of the folder, secret or function a binding is
// on.
func bindingTarget(r Resource) string {
	if r.Type == YCFolderBinding {
		return str(raw(r.Props), "folder_id")
	}
	return str(raw(r.Props), "resource_id")
}

// readResourceBindings reads the roles the service account saID holds on
// each resource of targets (ID to logical name), as bindings of type typ.
// A resource that does not exist (NOT_FOUND) has none.
func (p *YandexProvider) readResourceBindings(ctx context.Context, typ, saID string, targets map[string]string) ([]Resource, error) {
	if saID == "" || len(targets) == 0 {
		return nil, nil
	}
	cl, err := p.bindingClient(ctx, typ)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(targets))
	for id := range targets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []Resource
	for _, id := range ids {
		var roles []any
		for b, err := range pages(ctx, func(ctx context.Context, token string) ([]*access.AccessBinding, string, error) {
			resp, err := cl.ListAccessBindings(ctx, &access.ListAccessBindingsRequest{ResourceId: id, PageSize: 1000, PageToken: token})
			if status.Code(err) == codes.NotFound {
				return nil, "", nil // gone: it binds nothing
			}
			return resp.GetAccessBindings(), resp.GetNextPageToken(), err
		}) {
			if err != nil {
				return nil, fmt.Errorf("list the access bindings of %s: %w", id, err)
			}
			if s := b.GetSubject(); s.GetType() == "serviceAccount" && s.GetId() == saID {
				roles = append(roles, b.GetRoleId())
			}
		}
		if len(roles) == 0 {
			continue
		}
		slices.SortFunc(roles, func(a, b any) int { return strings.Compare(a.(string), b.(string)) })
		out = append(out, Resource{Type: typ, Name: targets[id], Props: untyped{
			"resource_id": id, "service_account_id": saID, "roles": roles,
		}, ID: id + "/" + saID, Outputs: map[string]string{}})
	}
	return out, nil
}

// readAuth reads the auth function, its invoker binding and the bindings
// on the token secrets (the secrets the hints name: the Nest's and those
// of earlier deploys in the journal).
func (p *YandexProvider) readAuth(ctx context.Context, sas []Resource, hints []Resource) ([]Resource, error) {
	saID := func(name string) string {
		for _, sa := range sas {
			if sa.Name == name {
				return sa.ID
			}
		}
		return ""
	}
	secrets := map[string]string{}
	for _, h := range hints {
		if h.Type == YCSecretBinding && bindingTarget(h) != "" && !strings.Contains(bindingTarget(h), "${") {
			secrets[bindingTarget(h)] = h.Name
		}
	}
	out, err := p.readResourceBindings(ctx, YCSecretBinding, saID("auth"), secrets)
	if err != nil {
		return nil, err
	}
	fns, err := p.readFunctions(ctx, pinnedVersions(hints))
	if err != nil {
		return nil, err
	}
	out = append(out, fns...)
	targets := map[string]string{}
	for _, f := range fns {
		targets[f.ID] = f.Name
	}
	bs, err := p.readResourceBindings(ctx, YCFunctionBinding, saID("invoker"), targets)
	if err != nil {
		return nil, err
	}
	return append(out, bs...), nil
}

// pinnedVersions maps each token's environment variable to the Lockbox
// version the first auth function of hints (the desired one, when planning
// a deploy) names by ID, for tokens whose URI pins a version.
func pinnedVersions(hints []Resource) map[string]string {
	out := map[string]string{}
	for _, h := range hints {
		if h.Address() != YCFunction+".auth" {
			continue
		}
		secrets, _ := mapOf(raw(h.Props), "version")["secrets"].([]any)
		for _, e := range secrets {
			if s, _ := e.(map[string]any); str(s, "version") != secretCurrent {
				out[str(s, "environment_variable")] = str(s, "version")
			}
		}
		break
	}
	return out
}

func (p *YandexProvider) readFunctions(ctx context.Context, pinned map[string]string) ([]Resource, error) {
	c, err := p.conn(ctx, ycFunctionService)
	if err != nil {
		return nil, err
	}
	cl := functions.NewFunctionServiceClient(c)
	var out []Resource
	for f, err := range pages(ctx, func(ctx context.Context, token string) ([]*functions.Function, string, error) {
		resp, err := cl.List(ctx, &functions.ListFunctionsRequest{FolderId: p.FolderID, PageSize: 1000, PageToken: token})
		return resp.GetFunctions(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the functions of folder %s: %w", p.FolderID, err)
		}
		if f.GetLabels()[TagDeployment] != p.Deployment {
			continue
		}
		props := map[string]any{"name": f.GetName(), "folder_id": f.GetFolderId(), "description": f.GetDescription(), "labels": anyMap(f.GetLabels()), "version": nil}
		v, err := cl.GetVersionByTag(ctx, &functions.GetFunctionVersionByTagRequest{FunctionId: f.GetId(), Tag: "$latest"})
		switch {
		case status.Code(err) == codes.NotFound:
		case err != nil:
			return nil, fmt.Errorf("read the latest version of function %s: %w", f.GetName(), err)
		default:
			if props["version"], err = p.versionProps(ctx, v, pinned); err != nil {
				return nil, fmt.Errorf("function %s: %w", f.GetName(), err)
			}
		}
		out = append(out, Resource{Type: YCFunction, Name: "auth", Props: normalize(props),
			ID: f.GetId(), Outputs: map[string]string{"id": f.GetId(), "http_invoke_url": f.GetHttpInvokeUrl()}})
	}
	return out, nil
}

// versionProps is a function version in the desired set's shape. A secret
// at its secret's current version reads as "current", unless pinned (by
// environment variable) names that version, so a token added to Lockbox
// since the last deploy shows as a change; the code is the sha256 that
// deploy wrote in the version's description.
func (p *YandexProvider) versionProps(ctx context.Context, v *functions.Version, pinned map[string]string) (map[string]any, error) {
	var secrets []any
	current := map[string]string{}
	for _, s := range v.GetSecrets() {
		version := s.GetVersionId()
		cur, seen := current[s.GetId()]
		if !seen {
			var err error
			if cur, err = p.currentSecretVersion(ctx, s.GetId()); err != nil && status.Code(err) != codes.NotFound {
				return nil, err
			}
			current[s.GetId()] = cur
		}
		if version == cur && pinned[s.GetEnvironmentVariable()] != version {
			version = secretCurrent
		}
		secrets = append(secrets, map[string]any{
			"secret_id": s.GetId(), "version": version, "key": s.GetKey(), "environment_variable": s.GetEnvironmentVariable(),
		})
	}
	code, _ := strings.CutPrefix(v.GetDescription(), authCodeNote)
	return map[string]any{
		"runtime": v.GetRuntime(), "entrypoint": v.GetEntrypoint(), "memory": v.GetResources().GetMemory(),
		"timeout_seconds": v.GetExecutionTimeout().GetSeconds(), "service_account_id": v.GetServiceAccountId(),
		"code_sha256": code, "secrets": secrets,
	}, nil
}

func errNoTokenVersion(s map[string]any) error {
	return fmt.Errorf("the Lockbox secret %s has no version yet, so the auth function cannot read its token %s: put it first (gosling secrets put yc-lockbox://%s/%s --nest DIR, the value on stdin), then deploy again", str(s, "secret_id"), str(s, "key"), str(s, "secret_id"), str(s, "key"))
}

// CheckAuthTokens reads the Lockbox secret of every API token the desired
// auth function takes at its current version, so a plan stops before
// anything is made when one cannot be given to the function: the secret
// does not exist (or the deployer may not read it), or it has no version
// yet. Errors name the secret and the command that gives it a value.
func (p *YandexProvider) CheckAuthTokens(ctx context.Context, desired []Resource) error {
	for _, r := range desired {
		if r.Type != YCFunction {
			continue
		}
		secrets, _ := mapOf(raw(r.Props), "version")["secrets"].([]any)
		for _, e := range secrets {
			s, _ := e.(map[string]any)
			if str(s, "version") != secretCurrent {
				continue
			}
			v, err := p.currentSecretVersion(ctx, str(s, "secret_id"))
			if err != nil {
				return fmt.Errorf("mothergoose.api_gateway.auth.tokens: %w", err)
			}
			if v == "" {
				return errNoTokenVersion(s)
			}
		}
	}
	return nil
}

// currentSecretVersion is the ID of a Lockbox secret's current version
// ("" when it has none).
func (p *YandexProvider) currentSecretVersion(ctx context.Context, secretID string) (string, error) {
	c, err := p.conn(ctx, ycSecretService)
	if err != nil {
		return "", err
	}
	sec, err := lockbox.NewSecretServiceClient(c).Get(ctx, &lockbox.GetSecretRequest{SecretId: secretID})
	if err != nil {
		return "", fmt.Errorf("read Lockbox secret %s: %w", secretID, err)
	}
	return sec.GetCurrentVersion().GetId(), nil
}

// putFunction makes or changes the function, and makes a new version when
// the version's settings, secrets or code differ: a version, like a
// container's revision, is never changed in place
// (https://yandex.cloud/en/docs/functions/concepts/function#version).
func (p *YandexProvider) putFunction(ctx context.Context, before, r *Resource) error {
	c, err := p.conn(ctx, ycFunctionService)
	if err != nil {
		return err
	}
	cl := functions.NewFunctionServiceClient(c)
	labels := strMap(mapOf(raw(r.Props), "labels"))
	if before == nil {
		op, err := p.wait(ctx)(cl.Create(ctx, &functions.CreateFunctionRequest{
			FolderId: str(raw(r.Props), "folder_id"), Name: str(raw(r.Props), "name"), Description: str(raw(r.Props), "description"), Labels: labels,
		}))
		if err != nil {
			return err
		}
		var f functions.Function
		if err := op.GetResponse().UnmarshalTo(&f); err != nil {
			return fmt.Errorf("read the operation's response: %w", err)
		}
		r.ID, r.Outputs = f.GetId(), map[string]string{"id": f.GetId(), "http_invoke_url": f.GetHttpInvokeUrl()}
	} else if str(raw(before.Props), "name") != str(raw(r.Props), "name") || str(raw(before.Props), "description") != str(raw(r.Props), "description") ||
		jsonString(raw(before.Props)["labels"]) != jsonString(raw(r.Props)["labels"]) {
		if _, err := p.wait(ctx)(cl.Update(ctx, &functions.UpdateFunctionRequest{
			FunctionId: r.ID, Name: str(raw(r.Props), "name"), Description: str(raw(r.Props), "description"), Labels: labels,
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "description", "labels"}},
		})); err != nil {
			return err
		}
	}
	if before != nil && jsonString(raw(before.Props)["version"]) == jsonString(raw(r.Props)["version"]) {
		return nil
	}
	v := mapOf(raw(r.Props), "version")
	req := &functions.CreateFunctionVersionRequest{
		FunctionId: r.ID, Runtime: str(v, "runtime"), Entrypoint: str(v, "entrypoint"), Description: authCodeNote + str(v, "code_sha256"),
		Resources:        &functions.Resources{Memory: int64(num(v, "memory"))},
		ExecutionTimeout: durationpb.New(time.Duration(num(v, "timeout_seconds")) * time.Second), ServiceAccountId: str(v, "service_account_id"),
	}
	secrets, _ := v["secrets"].([]any)
	for _, e := range secrets {
		s, _ := e.(map[string]any)
		version := str(s, "version")
		if version == secretCurrent {
			if version, err = p.currentSecretVersion(ctx, str(s, "secret_id")); err != nil {
				return err
			}
			if version == "" {
				return errNoTokenVersion(s)
			}
		}
		req.Secrets = append(req.Secrets, &functions.Secret{Id: str(s, "secret_id"), VersionId: version, Key: str(s, "key"),
			Reference: &functions.Secret_EnvironmentVariable{EnvironmentVariable: str(s, "environment_variable")}})
	}
	if err := p.versionSource(ctx, cl, r.ID, str(v, "code_sha256"), req); err != nil {
		return err
	}
	_, err = p.wait(ctx)(cl.CreateVersion(ctx, req))
	return err
}

// versionSource sets the code of a new version: this build's sources when
// the wanted sha256 is theirs, else (a rollback to older code) a copy of
// the function's earlier version that has it.
func (p *YandexProvider) versionSource(ctx context.Context, cl functions.FunctionServiceClient, fnID, sha string, req *functions.CreateFunctionVersionRequest) error {
	if sha == AuthCodeSHA256 {
		content, err := authZip()
		if err != nil {
			return fmt.Errorf("pack the auth function: %w", err)
		}
		req.PackageSource = &functions.CreateFunctionVersionRequest_Content{Content: content}
		return nil
	}
	for old, err := range pages(ctx, func(ctx context.Context, token string) ([]*functions.Version, string, error) {
		resp, err := cl.ListVersions(ctx, &functions.ListFunctionsVersionsRequest{Id: &functions.ListFunctionsVersionsRequest_FunctionId{FunctionId: fnID}, PageSize: 1000, PageToken: token})
		return resp.GetVersions(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return fmt.Errorf("list the versions of function %s: %w", fnID, err)
		}
		if old.GetDescription() == authCodeNote+sha {
			req.PackageSource = &functions.CreateFunctionVersionRequest_VersionId{VersionId: old.GetId()}
			return nil
		}
	}
	return fmt.Errorf("code sha256 %s is neither this gosling's auth function (%s) nor in an earlier version of function %s", sha, AuthCodeSHA256, fnID)
}
