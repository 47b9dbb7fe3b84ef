package bootstrap

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
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
func yandexAuth(n *fly.Nest, folder string, labels map[string]string) ([]Resource, error) {
	auth := n.MotherGoose.APIGateway.Auth
	if len(auth.Tokens) == 0 {
		return nil, nil
	}
	dep := DeploymentName(n)
	sa := YCServiceAccount + ".auth"
	out := []Resource{{Type: YCServiceAccount, Name: "auth", Props: ServiceAccountProps{
		Name: dep + "-auth", FolderID: folder, Description: "gosling " + dep + ": auth (the API gateway's authorizer function)",
	}}}
	var secrets []VersionSecret
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
		secrets = append(secrets, VersionSecret{
			SecretID: u.Path, Version: version, Key: u.Key, EnvironmentVariable: fmt.Sprintf("%s%d", authTokenEnv, i+1),
		})
		addr := YCSecretBinding + "." + u.Path
		if slices.Contains(deps, addr) {
			continue
		}
		deps = append(deps, addr)
		out = append(out, Resource{Type: YCSecretBinding, Name: u.Path, Props: ResourceBindingProps{
			ResourceID: u.Path, ServiceAccountID: Ref(sa, "id"), Roles: []string{"lockbox.payloadViewer"},
		}})
	}
	out = append(out,
		Resource{Type: YCFunction, Name: "auth", Props: CloudFunctionProps{
			Name: auth.Name, FolderID: folder, Labels: labels,
			Description: "gosling " + dep + ": the API gateway's authorizer of /api/",
			Version: &FunctionVersion{
				Runtime: authRuntime, Entrypoint: authEntrypoint, Memory: authMemory, TimeoutSeconds: authTimeout,
				ServiceAccountID: Ref(sa, "id"), CodeSHA256: AuthCodeSHA256, Secrets: secrets,
			},
		}, DependsOn: deps},
		Resource{Type: YCFunctionBinding, Name: "auth", Props: ResourceBindingProps{
			ResourceID: Ref(YCFunction+".auth", "id"), ServiceAccountID: Ref(YCServiceAccount+".invoker", "id"), Roles: []string{"functions.functionInvoker"},
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
func gatewaySpec(n *fly.Nest, dep string) (spec json.RawMessage, description string) {
	invoker := Ref(YCServiceAccount+".invoker", "id")
	route := func(param string) openAPIOperation {
		return openAPIOperation{
			Parameters:  []openAPIParameter{{Name: param, In: "path", Required: true, Schema: openAPISchema{Type: "string"}}},
			Integration: ycIntegration{Type: "serverless_containers", ContainerID: Ref(YCContainer+".api", "id"), ServiceAccountID: invoker},
		}
	}
	doc := openAPISpec{
		OpenAPI: "3.0.0", Info: openAPIInfo{Title: dep, Version: "1.0.0"},
		Paths: map[string]map[string]openAPIOperation{"/{proxy+}": {anyMethod: route("proxy")}},
	}
	auth := n.MotherGoose.APIGateway.Auth
	if len(auth.Tokens) == 0 {
		return mustJSON(doc), "gosling " + dep + ": no auth function (mothergoose.api_gateway.auth.tokens is empty): the API alone checks tokens on /api/"
	}
	api := route("proxy")
	api.Security = []map[string][]string{{"gosling-auth": {}}}
	doc.Paths["/api/{proxy+}"] = map[string]openAPIOperation{anyMethod: api}
	authorizer := ycAuthorizer{Type: "function", FunctionID: Ref(YCFunction+".auth", "id"), Tag: "$latest", ServiceAccountID: invoker}
	if ttl := int(auth.CacheTTL.D().Seconds()); ttl > 0 {
		authorizer.TTLSeconds = ttl
	}
	doc.Components = &openAPIComponents{SecuritySchemes: map[string]securityScheme{
		"gosling-auth": {Type: "http", Scheme: "bearer", Authorizer: authorizer},
	}}
	return mustJSON(doc), "gosling " + dep + ": /api/ takes a bearer token, checked by function " + auth.Name
}

// anyMethod is the OpenAPI extension of a Yandex API gateway for an
// operation of every HTTP method.
const anyMethod = "x-yc-apigateway-any-method"

// mustJSON is v, a value of gosling's own types, as JSON.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("bootstrap: %T is not JSON: %v", v, err))
	}
	return b
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
func bindingTarget(r Resource) string { return r.Props.(binding).target() }

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
		var roles []string
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
		slices.Sort(roles)
		out = append(out, Resource{Type: typ, Name: targets[id], Props: ResourceBindingProps{
			ResourceID: id, ServiceAccountID: saID, Roles: roles,
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
		if v := as[CloudFunctionProps](h).Version; v != nil {
			for _, s := range v.Secrets {
				if s.Version != secretCurrent {
					out[s.EnvironmentVariable] = s.Version
				}
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
		props := CloudFunctionProps{Name: f.GetName(), FolderID: f.GetFolderId(), Description: f.GetDescription(), Labels: nonNilMap(f.GetLabels())}
		v, err := cl.GetVersionByTag(ctx, &functions.GetFunctionVersionByTagRequest{FunctionId: f.GetId(), Tag: "$latest"})
		switch {
		case status.Code(err) == codes.NotFound:
		case err != nil:
			return nil, fmt.Errorf("read the latest version of function %s: %w", f.GetName(), err)
		default:
			if props.Version, err = p.versionProps(ctx, v, pinned); err != nil {
				return nil, fmt.Errorf("function %s: %w", f.GetName(), err)
			}
		}
		out = append(out, Resource{Type: YCFunction, Name: "auth", Props: props,
			ID: f.GetId(), Outputs: map[string]string{"id": f.GetId(), "http_invoke_url": f.GetHttpInvokeUrl()}})
	}
	return out, nil
}

// versionProps is a function version in the desired set's shape. A secret
// at its secret's current version reads as "current", unless pinned (by
// environment variable) names that version, so a token added to Lockbox
// since the last deploy shows as a change; the code is the sha256 that
// deploy wrote in the version's description.
func (p *YandexProvider) versionProps(ctx context.Context, v *functions.Version, pinned map[string]string) (*FunctionVersion, error) {
	var secrets []VersionSecret
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
		secrets = append(secrets, VersionSecret{
			SecretID: s.GetId(), Version: version, Key: s.GetKey(), EnvironmentVariable: s.GetEnvironmentVariable(),
		})
	}
	code, _ := strings.CutPrefix(v.GetDescription(), authCodeNote)
	return &FunctionVersion{
		Runtime: v.GetRuntime(), Entrypoint: v.GetEntrypoint(), Memory: v.GetResources().GetMemory(),
		TimeoutSeconds: v.GetExecutionTimeout().GetSeconds(), ServiceAccountID: v.GetServiceAccountId(),
		CodeSHA256: code, Secrets: secrets,
	}, nil
}

func errNoTokenVersion(s VersionSecret) error {
	return fmt.Errorf("the Lockbox secret %s has no version yet, so the auth function cannot read its token %s: put it first (gosling secrets put yc-lockbox://%s/%s --nest DIR, the value on stdin), then deploy again", s.SecretID, s.Key, s.SecretID, s.Key)
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
		version := as[CloudFunctionProps](r).Version
		if version == nil {
			continue
		}
		for _, s := range version.Secrets {
			if s.Version != secretCurrent {
				continue
			}
			v, err := p.currentSecretVersion(ctx, s.SecretID)
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
	want := as[CloudFunctionProps](*r)
	labels := nonNilMap(want.Labels)
	var had CloudFunctionProps
	if before == nil {
		op, err := p.wait(ctx)(cl.Create(ctx, &functions.CreateFunctionRequest{
			FolderId: want.FolderID, Name: want.Name, Description: want.Description, Labels: labels,
		}))
		if err != nil {
			return err
		}
		var f functions.Function
		if err := op.GetResponse().UnmarshalTo(&f); err != nil {
			return fmt.Errorf("read the operation's response: %w", err)
		}
		r.ID, r.Outputs = f.GetId(), map[string]string{"id": f.GetId(), "http_invoke_url": f.GetHttpInvokeUrl()}
	} else if had = as[CloudFunctionProps](*before); had.Name != want.Name || had.Description != want.Description || !maps.Equal(had.Labels, want.Labels) {
		if _, err := p.wait(ctx)(cl.Update(ctx, &functions.UpdateFunctionRequest{
			FunctionId: r.ID, Name: want.Name, Description: want.Description, Labels: labels,
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "description", "labels"}},
		})); err != nil {
			return err
		}
	}
	if before != nil && jsonString(had.Version) == jsonString(want.Version) {
		return nil
	}
	var v FunctionVersion
	if want.Version != nil {
		v = *want.Version
	}
	req := &functions.CreateFunctionVersionRequest{
		FunctionId: r.ID, Runtime: v.Runtime, Entrypoint: v.Entrypoint, Description: authCodeNote + v.CodeSHA256,
		Resources:        &functions.Resources{Memory: v.Memory},
		ExecutionTimeout: durationpb.New(time.Duration(v.TimeoutSeconds) * time.Second), ServiceAccountId: v.ServiceAccountID,
	}
	for _, s := range v.Secrets {
		version := s.Version
		if version == secretCurrent {
			if version, err = p.currentSecretVersion(ctx, s.SecretID); err != nil {
				return err
			}
			if version == "" {
				return errNoTokenVersion(s)
			}
		}
		req.Secrets = append(req.Secrets, &functions.Secret{Id: s.SecretID, VersionId: version, Key: s.Key,
			Reference: &functions.Secret_EnvironmentVariable{EnvironmentVariable: s.EnvironmentVariable}})
	}
	if err := p.versionSource(ctx, cl, r.ID, v.CodeSHA256, req); err != nil {
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
