package yctest

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/yandex-cloud/go-genproto/yandex/cloud/access"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/lockbox/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	functions "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/functions/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ---- Cloud Functions ----

// Runtimes are the runtime IDs the stand-in accepts: the Go runtimes
// Cloud Functions still supports
// (https://yandex.cloud/en/docs/functions/lang/golang).
var Runtimes = []string{"golang123"}

// latestTag is the tag every new version gets, moved from the one before.
const latestTag = "$latest"

type functionService struct {
	functions.UnimplementedFunctionServiceServer
	s *Server
}

func (x functionService) Create(_ context.Context, r *functions.CreateFunctionRequest) (*operation.Operation, error) {
	s := x.s
	n := 0
	for _, f := range s.fns {
		if f.FolderId == r.GetFolderId() {
			n++
			if f.Name == r.GetName() {
				return nil, status.Errorf(codes.AlreadyExists, "Function with name %s already exists", r.GetName())
			}
		}
	}
	if err := s.quota(QuotaFunctions, n); err != nil {
		return nil, err
	}
	id := s.id("d4e")
	f := &functions.Function{Id: id, FolderId: r.GetFolderId(), CreatedAt: timestamppb.Now(), Name: r.GetName(), Description: r.GetDescription(),
		Labels: r.GetLabels(), HttpInvokeUrl: "https://functions.yandexcloud.net/" + id, Status: functions.Function_ACTIVE}
	s.fns[id] = f
	return s.op("Create function", &functions.CreateFunctionMetadata{FunctionId: id}, f), nil
}

func (x functionService) Get(_ context.Context, r *functions.GetFunctionRequest) (*functions.Function, error) {
	f := x.s.fns[r.GetFunctionId()]
	if f == nil {
		return nil, status.Errorf(codes.NotFound, "Function %s not found", r.GetFunctionId())
	}
	return proto.Clone(f).(*functions.Function), nil
}

func (x functionService) List(_ context.Context, r *functions.ListFunctionsRequest) (*functions.ListFunctionsResponse, error) {
	out := &functions.ListFunctionsResponse{}
	for _, f := range x.s.fns {
		if f.FolderId == r.GetFolderId() {
			out.Functions = append(out.Functions, proto.Clone(f).(*functions.Function))
		}
	}
	sort.Slice(out.Functions, func(i, j int) bool { return out.Functions[i].Id < out.Functions[j].Id })
	return out, nil
}

func (x functionService) Update(_ context.Context, r *functions.UpdateFunctionRequest) (*operation.Operation, error) {
	f := x.s.fns[r.GetFunctionId()]
	if f == nil {
		return nil, status.Errorf(codes.NotFound, "Function %s not found", r.GetFunctionId())
	}
	for _, path := range r.GetUpdateMask().GetPaths() {
		switch path {
		case "name":
			f.Name = r.GetName()
		case "description":
			f.Description = r.GetDescription()
		case "labels":
			f.Labels = r.GetLabels()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "update_mask: unknown field %s", path)
		}
	}
	return x.s.op("Update function", &functions.UpdateFunctionMetadata{FunctionId: f.Id}, f), nil
}

func (x functionService) Delete(_ context.Context, r *functions.DeleteFunctionRequest) (*operation.Operation, error) {
	s := x.s
	id := r.GetFunctionId()
	if s.fns[id] == nil {
		return nil, status.Errorf(codes.NotFound, "Function %s not found", id)
	}
	for _, v := range s.fnVers[id] {
		delete(s.fnCode, v.Id)
	}
	delete(s.fns, id)
	delete(s.fnVers, id)
	// Its access bindings go with it, as in Yandex Cloud.
	delete(s.bindings, id)
	return s.op("Delete function", &functions.DeleteFunctionMetadata{FunctionId: id}, &functions.Function{}), nil
}

// checkContent checks that the zip holds the file and the exported
// handler the entrypoint ("index.Handler": index.go, func Handler) names.
func checkContent(content []byte, entrypoint string) error {
	file, handler, ok := strings.Cut(entrypoint, ".")
	if !ok || file == "" || handler == "" {
		return status.Errorf(codes.InvalidArgument, "entrypoint %q: want <file>.<handler>", entrypoint)
	}
	zr, err := zip.NewReader(bytes.NewReader(content), int64(len(content)))
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "content is not a zip archive: %v", err)
	}
	for _, f := range zr.File {
		if f.Name != file+".go" {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "content: %s: %v", f.Name, err)
		}
		src, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "content: %s: %v", f.Name, err)
		}
		if !bytes.Contains(src, []byte("package main")) || !bytes.Contains(src, []byte("func "+handler+"(")) {
			return status.Errorf(codes.FailedPrecondition, "Build failed: %s: no func %s in package main", f.Name, handler)
		}
		return nil
	}
	return status.Errorf(codes.FailedPrecondition, "Build failed: entrypoint file %s.go not found in the archive", file)
}

func (x functionService) CreateVersion(_ context.Context, r *functions.CreateFunctionVersionRequest) (*operation.Operation, error) {
	s := x.s
	f := s.fns[r.GetFunctionId()]
	if f == nil {
		return nil, status.Errorf(codes.NotFound, "Function %s not found", r.GetFunctionId())
	}
	if !slices.Contains(Runtimes, r.GetRuntime()) {
		return nil, status.Errorf(codes.InvalidArgument, "runtime %q is not supported", r.GetRuntime())
	}
	if m := r.GetResources().GetMemory(); m < 128<<20 || m > 4<<30 || m%(128<<20) != 0 {
		return nil, status.Error(codes.InvalidArgument, "resources.memory must be a multiple of 134217728 bytes between 134217728 and 4294967296")
	}
	if r.GetExecutionTimeout().AsDuration() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "execution_timeout is required")
	}
	sa := r.GetServiceAccountId()
	if sa != "" && s.sas[sa] == nil {
		return nil, status.Errorf(codes.InvalidArgument, "Service account %s not found", sa)
	}
	content := r.GetContent()
	if from := r.GetVersionId(); from != "" {
		// A copy of an earlier version's code.
		code, ok := s.fnCode[from]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "Function version %s not found", from)
		}
		content = code
	}
	if content == nil {
		return nil, status.Error(codes.InvalidArgument, "content or version_id is required (package is not served by this stand-in)")
	}
	if err := checkContent(content, r.GetEntrypoint()); err != nil {
		return nil, err
	}
	for _, sec := range r.GetSecrets() {
		ls := s.lb.Secret(sec.GetId())
		if ls == nil {
			return nil, status.Errorf(codes.NotFound, "Secret %s not found", sec.GetId())
		}
		entries, err := s.lb.Payload(sec.GetId(), sec.GetVersionId())
		if err != nil || sec.GetVersionId() == "" {
			return nil, status.Errorf(codes.NotFound, "Version %s of secret %s not found", sec.GetVersionId(), sec.GetId())
		}
		if !slices.ContainsFunc(entries, func(e *lockbox.Payload_Entry) bool { return e.GetKey() == sec.GetKey() }) {
			return nil, status.Errorf(codes.InvalidArgument, "Secret %s version %s has no key %s", sec.GetId(), sec.GetVersionId(), sec.GetKey())
		}
		// The version's service account reads the secrets when an
		// instance starts; Cloud Functions checks it may.
		if sa == "" || !(s.hasRole(ls.Id, sa, "lockbox.payloadViewer") || s.hasRole(ls.FolderId, sa, "lockbox.payloadViewer")) {
			return nil, status.Errorf(codes.PermissionDenied, "Service account %q has no lockbox.payloadViewer on secret %s", sa, ls.Id)
		}
	}
	for _, old := range s.fnVers[f.Id] {
		old.Tags = slices.DeleteFunc(old.Tags, func(t string) bool { return t == latestTag || slices.Contains(r.GetTag(), t) })
	}
	v := &functions.Version{
		Id: s.id("d4ev"), FunctionId: f.Id, Description: r.GetDescription(), CreatedAt: timestamppb.Now(), Runtime: r.GetRuntime(),
		Entrypoint: r.GetEntrypoint(), Resources: r.GetResources(), ExecutionTimeout: r.GetExecutionTimeout(), ServiceAccountId: sa,
		ImageSize: int64(len(content)), Status: functions.Version_ACTIVE, Tags: append([]string{latestTag}, r.GetTag()...),
		Environment: r.GetEnvironment(), Concurrency: r.GetConcurrency(), Secrets: r.GetSecrets(),
	}
	s.fnVers[f.Id] = append([]*functions.Version{v}, s.fnVers[f.Id]...)
	s.fnCode[v.Id] = slices.Clone(content)
	return s.op("Create function version", &functions.CreateFunctionVersionMetadata{FunctionVersionId: v.Id}, v), nil
}

func (x functionService) GetVersionByTag(_ context.Context, r *functions.GetFunctionVersionByTagRequest) (*functions.Version, error) {
	if x.s.fns[r.GetFunctionId()] == nil {
		return nil, status.Errorf(codes.NotFound, "Function %s not found", r.GetFunctionId())
	}
	tag := r.GetTag()
	if tag == "" {
		tag = latestTag
	}
	for _, v := range x.s.fnVers[r.GetFunctionId()] {
		if slices.Contains(v.Tags, tag) {
			return proto.Clone(v).(*functions.Version), nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "Version with tag %s of function %s not found", tag, r.GetFunctionId())
}

func (x functionService) ListVersions(_ context.Context, r *functions.ListFunctionsVersionsRequest) (*functions.ListFunctionsVersionsResponse, error) {
	out := &functions.ListFunctionsVersionsResponse{}
	for id, vs := range x.s.fnVers {
		if id == r.GetFunctionId() || x.s.fns[id].GetFolderId() == r.GetFolderId() {
			for _, v := range vs {
				out.Versions = append(out.Versions, proto.Clone(v).(*functions.Version))
			}
		}
	}
	return out, nil
}

func (x functionService) ListAccessBindings(_ context.Context, r *access.ListAccessBindingsRequest) (*access.ListAccessBindingsResponse, error) {
	if x.s.fns[r.GetResourceId()] == nil {
		return nil, status.Errorf(codes.NotFound, "Function %s not found", r.GetResourceId())
	}
	return x.s.listAccessBindings(r.GetResourceId()), nil
}

func (x functionService) UpdateAccessBindings(_ context.Context, r *access.UpdateAccessBindingsRequest) (*operation.Operation, error) {
	if x.s.fns[r.GetResourceId()] == nil {
		return nil, status.Errorf(codes.NotFound, "Function %s not found", r.GetResourceId())
	}
	return x.s.updateAccessBindings(r)
}

// FunctionVersions returns the versions of the function of that name,
// newest first, and the content of the newest.
func (s *Server) FunctionVersions(name string) ([]*functions.Version, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, f := range s.fns {
		if f.Name == name {
			var out []*functions.Version
			for _, v := range s.fnVers[id] {
				out = append(out, proto.Clone(v).(*functions.Version))
			}
			if len(out) == 0 {
				return nil, nil
			}
			return out, slices.Clone(s.fnCode[out[0].Id])
		}
	}
	return nil, nil
}

// FunctionCount returns how many functions exist.
func (s *Server) FunctionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.fns)
}
