package yctest

import (
	"context"
	"regexp"
	"sort"
	"strconv"

	compute "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ---- Compute Cloud instances ----
//
// What the runners' machines need of Compute's InstanceService: Get, List
// (a folder's instances, paged, filtered by name only, as Yandex filters
// instances), Start, Stop and Delete. Their operations run as Yandex's do:
// the instance is STARTING, STOPPING or DELETING until the operation is
// polled and found done, and Start, Stop and Delete refuse an instance in
// a state they do not take (FAILED_PRECONDITION). Instances are made with
// AddInstance: a runner's instance is made by OpenTofu, not through this.

type computeService struct {
	compute.UnimplementedInstanceServiceServer
	s *Server
}

// AddInstance makes an instance as in describes it (FolderId, Name,
// Labels, Status: RUNNING or STOPPED; an ID when it has none) and returns
// its ID.
func (s *Server) AddInstance(in *compute.Instance) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	in = proto.Clone(in).(*compute.Instance)
	if in.Id == "" {
		in.Id = s.id("fhm")
	}
	in.ZoneId, in.PlatformId, in.CreatedAt = "ru-central1-a", "standard-v3", timestamppb.Now()
	s.instances[in.Id] = in
	return in.Id
}

// Instance returns an instance, or nil when there is none.
func (s *Server) Instance(id string) *compute.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[id]; in != nil {
		return proto.Clone(in).(*compute.Instance)
	}
	return nil
}

// pending records an operation that is not done until first polled; then
// finish runs (under s.mu) and the operation is done with the instance.
func (s *Server) pending(desc string, md proto.Message, finish func() proto.Message) *operation.Operation {
	m, _ := anypb.New(md)
	o := &operation.Operation{Id: s.id("op"), Description: desc, CreatedAt: timestamppb.Now(), CreatedBy: "ajetestuser", Metadata: m}
	running := proto.Clone(o).(*operation.Operation)
	s.ops[o.Id] = running
	s.finish[o.Id] = func() {
		done := running
		done.Done = true
		if resp := finish(); resp != nil {
			r, _ := anypb.New(resp)
			done.Result = &operation.Operation_Response{Response: r}
		}
	}
	return o
}

func (x computeService) instance(id string) (*compute.Instance, error) {
	in := x.s.instances[id]
	if in == nil {
		return nil, status.Errorf(codes.NotFound, "Instance %s not found", id)
	}
	return in, nil
}

func (x computeService) Get(_ context.Context, r *compute.GetInstanceRequest) (*compute.Instance, error) {
	in, err := x.instance(r.GetInstanceId())
	if err != nil {
		return nil, err
	}
	return proto.Clone(in).(*compute.Instance), nil
}

// nameFilter is the one filter Compute takes on instances: name="...".
var nameFilter = regexp.MustCompile(`^\s*name\s*=\s*"([^"]*)"\s*$`)

func (x computeService) List(_ context.Context, r *compute.ListInstancesRequest) (*compute.ListInstancesResponse, error) {
	if r.GetFolderId() == "" {
		return nil, status.Error(codes.InvalidArgument, "folder_id is required")
	}
	name := ""
	if f := r.GetFilter(); f != "" {
		m := nameFilter.FindStringSubmatch(f)
		if m == nil {
			return nil, status.Errorf(codes.InvalidArgument, "Filtering is supported on the name field only: %q", f)
		}
		name = m[1]
	}
	var all []*compute.Instance
	for _, in := range x.s.instances {
		if in.FolderId == r.GetFolderId() && (name == "" || in.Name == name) {
			all = append(all, in)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Id < all[j].Id })
	from := 0
	if t := r.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > len(all) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid page token %q", t)
		}
		from = n
	}
	size := int(r.GetPageSize())
	if size <= 0 || size > 1000 {
		size = 1000
	}
	out := &compute.ListInstancesResponse{}
	for _, in := range all[from:min(len(all), from+size)] {
		out.Instances = append(out.Instances, proto.Clone(in).(*compute.Instance))
	}
	if from+size < len(all) {
		out.NextPageToken = strconv.Itoa(from + size)
	}
	return out, nil
}

// transition moves an instance from one of from to via, and to to when
// its operation is done.
func (x computeService) transition(id, desc string, md proto.Message, from []compute.Instance_Status, via, to compute.Instance_Status) (*operation.Operation, error) {
	in, err := x.instance(id)
	if err != nil {
		return nil, err
	}
	ok := false
	for _, st := range from {
		ok = ok || in.Status == st
	}
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "Instance %s is %s: cannot %s it", id, in.Status, desc)
	}
	in.Status = via
	return x.s.pending(desc+" instance", md, func() proto.Message {
		in.Status = to
		return proto.Clone(in).(*compute.Instance)
	}), nil
}

func (x computeService) Stop(_ context.Context, r *compute.StopInstanceRequest) (*operation.Operation, error) {
	return x.transition(r.GetInstanceId(), "stop", &compute.StopInstanceMetadata{InstanceId: r.GetInstanceId()},
		[]compute.Instance_Status{compute.Instance_RUNNING}, compute.Instance_STOPPING, compute.Instance_STOPPED)
}

func (x computeService) Start(_ context.Context, r *compute.StartInstanceRequest) (*operation.Operation, error) {
	return x.transition(r.GetInstanceId(), "start", &compute.StartInstanceMetadata{InstanceId: r.GetInstanceId()},
		[]compute.Instance_Status{compute.Instance_STOPPED}, compute.Instance_STARTING, compute.Instance_RUNNING)
}

func (x computeService) Delete(_ context.Context, r *compute.DeleteInstanceRequest) (*operation.Operation, error) {
	id := r.GetInstanceId()
	in, err := x.instance(id)
	if err != nil {
		return nil, err
	}
	if in.Status == compute.Instance_DELETING {
		return nil, status.Errorf(codes.FailedPrecondition, "Instance %s is being deleted", id)
	}
	in.Status = compute.Instance_DELETING
	return x.s.pending("delete instance", &compute.DeleteInstanceMetadata{InstanceId: id}, func() proto.Message {
		delete(x.s.instances, id)
		return nil
	}), nil
}
