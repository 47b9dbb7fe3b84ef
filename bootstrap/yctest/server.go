// Package yctest is a stand-in for the Yandex Cloud services `gosling
// deploy` calls, for tests: real gRPC on a local listener with
// go-genproto's service definitions (IAM service accounts, Resource
// Manager folder access bindings, Compute Cloud instances (compute.go),
// Serverless Containers, Cloud Functions
// and their versions, timer triggers, API Gateway, YDB databases, Lockbox
// secrets, their access bindings and payloads (the one Lockbox stand-in,
// internal/secrets/lockboxtest's, served here), Compute's instance groups
// and images (the Container-Optimized Image family), VPC subnets,
// operations), answering with the real
// messages, long-running operations that finish when first polled, and
// Yandex's errors: ALREADY_EXISTS for a taken name, PERMISSION_DENIED for
// what Deny names, RESOURCE_EXHAUSTED past a quota, NOT_FOUND. No Yandex
// Cloud emulator exists; point the Yandex Cloud SDK at Addr with
// plaintext and the IAM token given to New, or a service account key,
// which its IAM token service exchanges for a token.
package yctest

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/internal/secrets/lockboxtest"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/access"
	compute "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1"
	ig "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1/instancegroup"
	iam "github.com/yandex-cloud/go-genproto/yandex/cloud/iam/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/lockbox/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	rm "github.com/yandex-cloud/go-genproto/yandex/cloud/resourcemanager/v1"
	apigw "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/apigateway/v1"
	containers "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/containers/v1"
	functions "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/functions/v1"
	triggers "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/triggers/v1"
	vpc "github.com/yandex-cloud/go-genproto/yandex/cloud/vpc/v1"
	ydb "github.com/yandex-cloud/go-genproto/yandex/cloud/ydb/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Server is the stand-in.
type Server struct {
	// Addr is the gRPC address (host:port).
	Addr string

	grpc  *grpc.Server
	token string

	mu         sync.Mutex
	seq        int
	calls      map[string]int
	fail       map[string]int
	denied     map[string]bool
	quotas     map[string]int
	ops        map[string]*operation.Operation
	sas        map[string]*iam.ServiceAccount
	bindings   map[string][]*access.AccessBinding // by folder, secret or function
	cts        map[string]*containers.Container
	revs       map[string][]*containers.Revision // by container, newest first
	dbs        map[string]*ydb.Database
	lb         *lockboxtest.Lockbox
	triggers   map[string]*triggers.Trigger
	gateways   map[string]*apigw.ApiGateway
	specs      map[string]string // OpenAPI specs by gateway
	fns        map[string]*functions.Function
	fnVers     map[string][]*functions.Version // by function, newest first
	fnCode     map[string][]byte               // version content by version
	issued     map[string]bool                 // IAM tokens handed out for keys
	images     map[string]*compute.Image
	imageOrder []string // image IDs, oldest first
	subnets    map[string]*vpc.Subnet
	igs        map[string]*igState
	// instances are Compute's (compute_instances.go); finish completes an
	// operation when it is first polled.
	instances map[string]*compute.Instance
	finish    map[string]func()
}

// Quota names, as Yandex's quota errors name them.
const (
	QuotaServiceAccounts = "iam.serviceAccounts.count"
	QuotaContainers      = "serverless.containers.count"
	QuotaFunctions       = "serverless.functions.count"
)

// New starts a server that accepts the IAM token iamToken.
func New(iamToken string) (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr: lis.Addr().String(), token: iamToken, calls: map[string]int{}, fail: map[string]int{}, denied: map[string]bool{},
		quotas: map[string]int{}, ops: map[string]*operation.Operation{}, sas: map[string]*iam.ServiceAccount{},
		bindings: map[string][]*access.AccessBinding{}, cts: map[string]*containers.Container{}, revs: map[string][]*containers.Revision{},
		dbs:      map[string]*ydb.Database{},
		triggers: map[string]*triggers.Trigger{}, gateways: map[string]*apigw.ApiGateway{}, specs: map[string]string{}, issued: map[string]bool{},
		fns: map[string]*functions.Function{}, fnVers: map[string][]*functions.Version{}, fnCode: map[string][]byte{},
		images: map[string]*compute.Image{}, subnets: map[string]*vpc.Subnet{}, igs: map[string]*igState{},
		instances: map[string]*compute.Instance{}, finish: map[string]func(){},
	}
	s.addImage(StandardImagesFolder, COIFamily)
	s.grpc = grpc.NewServer(grpc.UnaryInterceptor(s.intercept))
	iam.RegisterServiceAccountServiceServer(s.grpc, saService{s: s})
	iam.RegisterIamTokenServiceServer(s.grpc, tokenService{s: s})
	rm.RegisterFolderServiceServer(s.grpc, folderService{s: s})
	containers.RegisterContainerServiceServer(s.grpc, containerService{s: s})
	ydb.RegisterDatabaseServiceServer(s.grpc, dbService{s: s})
	s.lb = lockboxtest.NewLockbox(lockboxHost{s})
	s.lb.RegisterServices(s.grpc)
	operation.RegisterOperationServiceServer(s.grpc, opService{s: s})
	triggers.RegisterTriggerServiceServer(s.grpc, triggerService{s: s})
	apigw.RegisterApiGatewayServiceServer(s.grpc, gatewayService{s: s})
	functions.RegisterFunctionServiceServer(s.grpc, functionService{s: s})
	compute.RegisterImageServiceServer(s.grpc, imageService{s: s})
	vpc.RegisterSubnetServiceServer(s.grpc, subnetService{s: s})
	ig.RegisterInstanceGroupServiceServer(s.grpc, instanceGroupService{s: s})
	compute.RegisterInstanceServiceServer(s.grpc, computeService{s: s})
	go func() { _ = s.grpc.Serve(lis) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.grpc.Stop() }

// Fail makes the next n calls of method (its short name, such as
// "DeployRevision") fail with INTERNAL.
func (s *Server) Fail(method string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[method] = n
}

// Deny answers PERMISSION_DENIED to every call of method.
func (s *Server) Deny(method string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[method] = true
}

// SetQuota limits how many of a kind (QuotaServiceAccounts,
// QuotaContainers) a folder may hold.
func (s *Server) SetQuota(name string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quotas[name] = n
}

// Calls counts calls by short method name.
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// Revisions returns a container's revisions, newest first.
func (s *Server) Revisions(containerID string) []*containers.Revision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revs[containerID]
}

// Bindings returns a folder's access bindings.
func (s *Server) Bindings(folder string) []*access.AccessBinding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*access.AccessBinding(nil), s.bindings[folder]...)
}

// Counts returns how many service accounts, containers and databases exist.
func (s *Server) Counts() (sas, cts, dbs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sas), len(s.cts), len(s.dbs)
}

// Secret returns the Lockbox secret of that name, or nil.
func (s *Server) Secret(name string) *lockbox.Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lb.Named(name)
}

// Triggers returns the folder's triggers.
func (s *Server) Triggers() []*triggers.Trigger {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*triggers.Trigger
	for _, t := range s.triggers {
		out = append(out, proto.Clone(t).(*triggers.Trigger))
	}
	return out
}

// Gateways returns every API gateway and its OpenAPI spec.
func (s *Server) Gateways() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for id, g := range s.gateways {
		out[g.Name] = s.specs[id]
	}
	return out
}

// intercept authenticates, counts and applies Fail and Deny; the handlers
// then run under s.mu.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	md, _ := metadata.FromIncomingContext(ctx)
	auth := ""
	if v := md.Get("authorization"); len(v) > 0 {
		auth = v[0]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method]++
	if method == "Create" && strings.HasSuffix(info.FullMethod, "IamTokenService/Create") {
		return h(ctx, req) // exchanges a key's JWT: no token yet
	}
	if auth != "Bearer "+s.token && !s.issued[strings.TrimPrefix(auth, "Bearer ")] {
		return nil, status.Error(codes.Unauthenticated, "The token is invalid")
	}
	if s.denied[method] {
		return nil, status.Errorf(codes.PermissionDenied, "Permission denied")
	}
	if s.fail[method] > 0 {
		s.fail[method]--
		return nil, status.Errorf(codes.Internal, "Internal error (injected failure of %s)", method)
	}
	return h(ctx, req)
}

func (s *Server) id(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%017d", prefix, s.seq)
}

// op records a long-running operation that is done when first polled,
// as a quick real one is; the change itself is already made.
func (s *Server) op(desc string, md, resp proto.Message) *operation.Operation {
	m, _ := anypb.New(md)
	r, _ := anypb.New(resp)
	o := &operation.Operation{Id: s.id("op"), Description: desc, CreatedAt: timestamppb.Now(), CreatedBy: "ajetestuser", Metadata: m}
	done := proto.Clone(o).(*operation.Operation)
	done.Done, done.Result = true, &operation.Operation_Response{Response: r}
	s.ops[o.Id] = done
	return o
}

func (s *Server) quota(name string, have int) error {
	if q, ok := s.quotas[name]; ok && have >= q {
		return status.Errorf(codes.ResourceExhausted, "Quota limit %s exceeded", name)
	}
	return nil
}

type opService struct {
	operation.UnimplementedOperationServiceServer
	s *Server
}

func (o opService) Get(_ context.Context, r *operation.GetOperationRequest) (*operation.Operation, error) {
	op := o.s.ops[r.GetOperationId()]
	if op == nil {
		return nil, status.Errorf(codes.NotFound, "Operation %s not found", r.GetOperationId())
	}
	if finish := o.s.finish[op.Id]; finish != nil {
		delete(o.s.finish, op.Id)
		finish()
	}
	return proto.Clone(op).(*operation.Operation), nil
}

// ---- IAM tokens ----

type tokenService struct {
	iam.UnimplementedIamTokenServiceServer
	s *Server
}

// Create exchanges a service account key's JWT for an IAM token. The
// JWT's PS256 signature is not checked: the key is the test's own.
func (x tokenService) Create(_ context.Context, r *iam.CreateIamTokenRequest) (*iam.CreateIamTokenResponse, error) {
	if strings.Count(r.GetJwt(), ".") != 2 {
		return nil, status.Error(codes.InvalidArgument, "a service account key's JWT is required")
	}
	tok := x.s.id("t1.issued-")
	x.s.issued[tok] = true
	return &iam.CreateIamTokenResponse{IamToken: tok, ExpiresAt: timestamppb.New(time.Now().Add(12 * time.Hour))}, nil
}

// ---- IAM service accounts ----

type saService struct {
	iam.UnimplementedServiceAccountServiceServer
	s *Server
}

func (x saService) Create(_ context.Context, r *iam.CreateServiceAccountRequest) (*operation.Operation, error) {
	s := x.s
	n := 0
	for _, sa := range s.sas {
		if sa.FolderId == r.GetFolderId() {
			n++
			if sa.Name == r.GetName() {
				return nil, status.Errorf(codes.AlreadyExists, "Service account with name %s already exists", r.GetName())
			}
		}
	}
	if err := s.quota(QuotaServiceAccounts, n); err != nil {
		return nil, err
	}
	sa := &iam.ServiceAccount{Id: s.id("aje"), FolderId: r.GetFolderId(), CreatedAt: timestamppb.Now(), Name: r.GetName(), Description: r.GetDescription()}
	s.sas[sa.Id] = sa
	return s.op("Create service account", &iam.CreateServiceAccountMetadata{ServiceAccountId: sa.Id}, sa), nil
}

func (x saService) Get(_ context.Context, r *iam.GetServiceAccountRequest) (*iam.ServiceAccount, error) {
	sa := x.s.sas[r.GetServiceAccountId()]
	if sa == nil {
		return nil, status.Errorf(codes.NotFound, "Service account %s not found", r.GetServiceAccountId())
	}
	return proto.Clone(sa).(*iam.ServiceAccount), nil
}

func (x saService) List(_ context.Context, r *iam.ListServiceAccountsRequest) (*iam.ListServiceAccountsResponse, error) {
	out := &iam.ListServiceAccountsResponse{}
	for _, sa := range x.s.sas {
		if sa.FolderId == r.GetFolderId() {
			out.ServiceAccounts = append(out.ServiceAccounts, proto.Clone(sa).(*iam.ServiceAccount))
		}
	}
	sort.Slice(out.ServiceAccounts, func(i, j int) bool { return out.ServiceAccounts[i].Id < out.ServiceAccounts[j].Id })
	return out, nil
}

func (x saService) Update(_ context.Context, r *iam.UpdateServiceAccountRequest) (*operation.Operation, error) {
	sa := x.s.sas[r.GetServiceAccountId()]
	if sa == nil {
		return nil, status.Errorf(codes.NotFound, "Service account %s not found", r.GetServiceAccountId())
	}
	sa.Name, sa.Description = r.GetName(), r.GetDescription()
	return x.s.op("Update service account", &iam.UpdateServiceAccountMetadata{ServiceAccountId: sa.Id}, sa), nil
}

func (x saService) Delete(_ context.Context, r *iam.DeleteServiceAccountRequest) (*operation.Operation, error) {
	s := x.s
	sa := s.sas[r.GetServiceAccountId()]
	if sa == nil {
		return nil, status.Errorf(codes.NotFound, "Service account %s not found", r.GetServiceAccountId())
	}
	delete(s.sas, sa.Id)
	// Its bindings go with it, as in Yandex Cloud.
	for f, bs := range s.bindings {
		var keep []*access.AccessBinding
		for _, b := range bs {
			if b.GetSubject().GetId() != sa.Id {
				keep = append(keep, b)
			}
		}
		s.bindings[f] = keep
	}
	return s.op("Delete service account", &iam.DeleteServiceAccountMetadata{ServiceAccountId: sa.Id}, &iam.ServiceAccount{}), nil
}

// ---- Resource Manager folders ----

type folderService struct {
	rm.UnimplementedFolderServiceServer
	s *Server
}

func (x folderService) ListAccessBindings(_ context.Context, r *access.ListAccessBindingsRequest) (*access.ListAccessBindingsResponse, error) {
	return x.s.listAccessBindings(r.GetResourceId()), nil
}

func (x folderService) UpdateAccessBindings(_ context.Context, r *access.UpdateAccessBindingsRequest) (*operation.Operation, error) {
	return x.s.updateAccessBindings(r)
}

// listAccessBindings answers ListAccessBindings of any resource (a folder,
// a Lockbox secret, a function) from its bindings.
func (s *Server) listAccessBindings(resource string) *access.ListAccessBindingsResponse {
	out := &access.ListAccessBindingsResponse{}
	for _, b := range s.bindings[resource] {
		out.AccessBindings = append(out.AccessBindings, proto.Clone(b).(*access.AccessBinding))
	}
	return out
}

// updateAccessBindings applies UpdateAccessBindings to any resource, as
// one atomic change.
func (s *Server) updateAccessBindings(r *access.UpdateAccessBindingsRequest) (*operation.Operation, error) {
	resource := r.GetResourceId()
	bs := s.bindings[resource]
	find := func(b *access.AccessBinding) int {
		for i, have := range bs {
			if have.GetRoleId() == b.GetRoleId() && have.GetSubject().GetId() == b.GetSubject().GetId() {
				return i
			}
		}
		return -1
	}
	// Validate every delta before changing anything: the call is atomic.
	for _, d := range r.GetAccessBindingDeltas() {
		b := d.GetAccessBinding()
		if b.GetSubject().GetType() == "serviceAccount" && s.sas[b.GetSubject().GetId()] == nil {
			return nil, status.Errorf(codes.InvalidArgument, "Service account %s not found", b.GetSubject().GetId())
		}
		if d.GetAction() == access.AccessBindingAction_REMOVE && find(b) < 0 {
			return nil, status.Errorf(codes.NotFound, "Access binding %s for %s not found", b.GetRoleId(), b.GetSubject().GetId())
		}
	}
	for _, d := range r.GetAccessBindingDeltas() {
		b := d.GetAccessBinding()
		i := find(b)
		switch {
		case d.GetAction() == access.AccessBindingAction_ADD && i < 0:
			bs = append(bs, proto.Clone(b).(*access.AccessBinding))
		case d.GetAction() == access.AccessBindingAction_REMOVE && i >= 0:
			bs = append(bs[:i], bs[i+1:]...)
		}
	}
	s.bindings[resource] = bs
	return s.op("Update access bindings", &access.UpdateAccessBindingsMetadata{ResourceId: resource}, &access.AccessBindingsOperationResult{}), nil
}

// hasRole tells whether the service account holds role on resource.
func (s *Server) hasRole(resource, saID, role string) bool {
	for _, b := range s.bindings[resource] {
		if b.GetRoleId() == role && b.GetSubject().GetId() == saID {
			return true
		}
	}
	return false
}

// ---- Serverless Containers ----

type containerService struct {
	containers.UnimplementedContainerServiceServer
	s *Server
}

func (x containerService) Create(_ context.Context, r *containers.CreateContainerRequest) (*operation.Operation, error) {
	s := x.s
	n := 0
	for _, c := range s.cts {
		if c.FolderId == r.GetFolderId() {
			n++
			if c.Name == r.GetName() {
				return nil, status.Errorf(codes.AlreadyExists, "Container with name %s already exists", r.GetName())
			}
		}
	}
	if err := s.quota(QuotaContainers, n); err != nil {
		return nil, err
	}
	id := s.id("bba")
	c := &containers.Container{Id: id, FolderId: r.GetFolderId(), CreatedAt: timestamppb.Now(), Name: r.GetName(), Description: r.GetDescription(),
		Labels: r.GetLabels(), Url: "https://" + id + ".containers.yandexcloud.net/", Status: containers.Container_ACTIVE}
	s.cts[id] = c
	return s.op("Create container", &containers.CreateContainerMetadata{ContainerId: id}, c), nil
}

func (x containerService) Get(_ context.Context, r *containers.GetContainerRequest) (*containers.Container, error) {
	c := x.s.cts[r.GetContainerId()]
	if c == nil {
		return nil, status.Errorf(codes.NotFound, "Container %s not found", r.GetContainerId())
	}
	return proto.Clone(c).(*containers.Container), nil
}

func (x containerService) List(_ context.Context, r *containers.ListContainersRequest) (*containers.ListContainersResponse, error) {
	out := &containers.ListContainersResponse{}
	for _, c := range x.s.cts {
		if c.FolderId == r.GetFolderId() {
			out.Containers = append(out.Containers, proto.Clone(c).(*containers.Container))
		}
	}
	sort.Slice(out.Containers, func(i, j int) bool { return out.Containers[i].Id < out.Containers[j].Id })
	return out, nil
}

func (x containerService) Update(_ context.Context, r *containers.UpdateContainerRequest) (*operation.Operation, error) {
	c := x.s.cts[r.GetContainerId()]
	if c == nil {
		return nil, status.Errorf(codes.NotFound, "Container %s not found", r.GetContainerId())
	}
	c.Labels = r.GetLabels()
	return x.s.op("Update container", &containers.UpdateContainerMetadata{ContainerId: c.Id}, c), nil
}

func (x containerService) Delete(_ context.Context, r *containers.DeleteContainerRequest) (*operation.Operation, error) {
	s := x.s
	if s.cts[r.GetContainerId()] == nil {
		return nil, status.Errorf(codes.NotFound, "Container %s not found", r.GetContainerId())
	}
	delete(s.cts, r.GetContainerId())
	delete(s.revs, r.GetContainerId())
	return s.op("Delete container", &containers.DeleteContainerMetadata{ContainerId: r.GetContainerId()}, &containers.Container{}), nil
}

func (x containerService) DeployRevision(_ context.Context, r *containers.DeployContainerRevisionRequest) (*operation.Operation, error) {
	s := x.s
	c := s.cts[r.GetContainerId()]
	if c == nil {
		return nil, status.Errorf(codes.NotFound, "Container %s not found", r.GetContainerId())
	}
	if r.GetImageSpec().GetImageUrl() == "" {
		return nil, status.Error(codes.InvalidArgument, "image_spec.image_url is required")
	}
	if sa := r.GetServiceAccountId(); sa != "" && s.sas[sa] == nil {
		return nil, status.Errorf(codes.InvalidArgument, "Service account %s not found", sa)
	}
	res := r.GetResources()
	if res.GetMemory() < 128<<20 || res.GetMemory() > 8<<30 {
		return nil, status.Errorf(codes.InvalidArgument, "resources.memory must be between 134217728 and 8589934592 bytes")
	}
	rev := &containers.Revision{
		Id: s.id("bbr"), ContainerId: c.Id, Description: r.GetDescription(), CreatedAt: timestamppb.Now(),
		Image: &containers.Image{ImageUrl: r.GetImageSpec().GetImageUrl(), ImageDigest: "sha256:" + strings.Repeat("ab", 32),
			Command: r.GetImageSpec().GetCommand(), Args: r.GetImageSpec().GetArgs(), Environment: r.GetImageSpec().GetEnvironment()},
		Resources: res, ExecutionTimeout: r.GetExecutionTimeout(), Concurrency: r.GetConcurrency(), ServiceAccountId: r.GetServiceAccountId(),
		Status: containers.Revision_ACTIVE, ProvisionPolicy: r.GetProvisionPolicy(),
	}
	s.revs[c.Id] = append([]*containers.Revision{rev}, s.revs[c.Id]...)
	return s.op("Deploy revision", &containers.DeployContainerRevisionMetadata{ContainerRevisionId: rev.Id}, rev), nil
}

func (x containerService) ListRevisions(_ context.Context, r *containers.ListContainersRevisionsRequest) (*containers.ListContainersRevisionsResponse, error) {
	id := r.GetContainerId()
	if x.s.cts[id] == nil {
		return nil, status.Errorf(codes.NotFound, "Container %s not found", id)
	}
	revs := x.s.revs[id]
	if n := int(r.GetPageSize()); n > 0 && n < len(revs) {
		revs = revs[:n]
	}
	out := &containers.ListContainersRevisionsResponse{}
	for _, rev := range revs {
		out.Revisions = append(out.Revisions, proto.Clone(rev).(*containers.Revision))
	}
	return out, nil
}

// ---- YDB ----

type dbService struct {
	ydb.UnimplementedDatabaseServiceServer
	s *Server
}

func (x dbService) Create(_ context.Context, r *ydb.CreateDatabaseRequest) (*operation.Operation, error) {
	s := x.s
	for _, d := range s.dbs {
		if d.FolderId == r.GetFolderId() && d.Name == r.GetName() {
			return nil, status.Errorf(codes.AlreadyExists, "Database with name %s already exists", r.GetName())
		}
	}
	id := s.id("etn")
	path := "/ru-central1/b1gtestcloud/" + id
	d := &ydb.Database{Id: id, FolderId: r.GetFolderId(), CreatedAt: timestamppb.Now(), Name: r.GetName(), Status: ydb.Database_RUNNING,
		Endpoint: "grpcs://ydb.serverless.yandexcloud.net:2135/?database=" + path, Labels: r.GetLabels(), LocationId: "ru-central1",
		DocumentApiEndpoint: "https://docapi.serverless.yandexcloud.net" + path}
	if r.GetServerlessDatabase() != nil {
		d.DatabaseType = &ydb.Database_ServerlessDatabase{ServerlessDatabase: r.GetServerlessDatabase()}
	}
	s.dbs[id] = d
	return s.op("Create database", &ydb.CreateDatabaseMetadata{DatabaseId: id, DatabaseName: d.Name}, d), nil
}

func (x dbService) List(_ context.Context, r *ydb.ListDatabasesRequest) (*ydb.ListDatabasesResponse, error) {
	out := &ydb.ListDatabasesResponse{}
	for _, d := range x.s.dbs {
		if d.FolderId == r.GetFolderId() {
			out.Databases = append(out.Databases, proto.Clone(d).(*ydb.Database))
		}
	}
	sort.Slice(out.Databases, func(i, j int) bool { return out.Databases[i].Id < out.Databases[j].Id })
	return out, nil
}

func (x dbService) Update(_ context.Context, r *ydb.UpdateDatabaseRequest) (*operation.Operation, error) {
	d := x.s.dbs[r.GetDatabaseId()]
	if d == nil {
		return nil, status.Errorf(codes.NotFound, "Database %s not found", r.GetDatabaseId())
	}
	d.Name, d.Labels = r.GetName(), r.GetLabels()
	return x.s.op("Update database", &ydb.UpdateDatabaseMetadata{DatabaseId: d.Id, DatabaseName: d.Name}, d), nil
}

// ---- Lockbox ----

// lockboxHost serves Lockbox (lockboxtest.Lockbox) from this server: the
// interceptor has authenticated the call and holds s.mu; IDs, operations
// and access bindings are the server's own.
type lockboxHost struct{ s *Server }

func (h lockboxHost) Enter(context.Context, string, string) (func(), error) { return func() {}, nil }
func (h lockboxHost) NewID(prefix string) string                            { return h.s.id(prefix) }
func (h lockboxHost) Operation(desc string, md, resp proto.Message) *operation.Operation {
	return h.s.op(desc, md, resp)
}
func (h lockboxHost) ListAccessBindings(resource string) *access.ListAccessBindingsResponse {
	return h.s.listAccessBindings(resource)
}
func (h lockboxHost) UpdateAccessBindings(r *access.UpdateAccessBindingsRequest) (*operation.Operation, error) {
	return h.s.updateAccessBindings(r)
}

// PutSecret makes a Lockbox secret with a given ID, as one made by hand
// before a deploy (the secrets a Nest's URIs name), whose current version
// holds entries, or adds entries as a new current version when the secret
// exists. It returns the new version's ID; nil entries make the secret
// with no version and return "".
func (s *Server) PutSecret(folder, id, name string, entries map[string]string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lb.Put(folder, id, name, entries)
}

// SecretBindings returns a Lockbox secret's access bindings.
func (s *Server) SecretBindings(id string) []*access.AccessBinding {
	return s.Bindings(id)
}
