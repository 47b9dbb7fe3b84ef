package yctest

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	compute "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1"
	ig "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1/instancegroup"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	vpc "github.com/yandex-cloud/go-genproto/yandex/cloud/vpc/v1"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Compute Cloud's public images: the Container-Optimized Image family in
// the standard-images folder, as Yandex publishes it.
const (
	StandardImagesFolder = "standard-images"
	COIFamily            = "container-optimized-image"
	// COIMetadataKey is the instance metadata key whose value, a COI
	// specification (YAML), says which container the image runs.
	COIMetadataKey = "docker-container-declaration"
)

// GroupInstance is one instance a group runs: its ID and what it was
// made from (the group's template when it was made).
type GroupInstance struct {
	ID       string
	Template *ig.InstanceTemplate
}

// igState is an instance group with the instances it runs.
type igState struct {
	group     *ig.InstanceGroup
	instances []GroupInstance
	// rolled counts instances replaced by template changes.
	rolled int
}

// AddImage publishes a new image of family in folder (a new release of
// the Container-Optimized Image, say) and returns its ID; the newest image
// of a family is what GetLatestByFamily answers.
func (s *Server) AddImage(folder, family string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addImage(folder, family)
}

func (s *Server) addImage(folder, family string) string {
	id := s.id("fd8")
	s.images[id] = &compute.Image{Id: id, FolderId: folder, CreatedAt: timestamppb.Now(), Name: family + "-" + id, Family: family,
		MinDiskSize: 30 << 30, StorageSize: 2 << 30, Status: compute.Image_READY}
	s.imageOrder = append(s.imageOrder, id)
	return id
}

// PutSubnet makes a VPC subnet of network in zone, in folder.
func (s *Server) PutSubnet(folder, id, network, zone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subnets[id] = &vpc.Subnet{Id: id, FolderId: folder, CreatedAt: timestamppb.Now(), Name: id, NetworkId: network, ZoneId: zone, V4CidrBlocks: []string{"10.128.0.0/24"}}
}

// InstanceGroup returns the instance group of that name, the instances
// it runs and how many instances template changes have replaced so far.
func (s *Server) InstanceGroup(name string) (*ig.InstanceGroup, []GroupInstance, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.igs {
		if st.group.GetName() == name {
			return proto.Clone(st.group).(*ig.InstanceGroup), slices.Clone(st.instances), st.rolled
		}
	}
	return nil, nil, 0
}

// InstanceGroupCount is how many instance groups exist.
func (s *Server) InstanceGroupCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.igs)
}

// ---- Compute images ----

type imageService struct {
	compute.UnimplementedImageServiceServer
	s *Server
}

func (x imageService) Get(_ context.Context, r *compute.GetImageRequest) (*compute.Image, error) {
	im := x.s.images[r.GetImageId()]
	if im == nil {
		return nil, status.Errorf(codes.NotFound, "Image %s not found", r.GetImageId())
	}
	return proto.Clone(im).(*compute.Image), nil
}

func (x imageService) GetLatestByFamily(_ context.Context, r *compute.GetImageLatestByFamilyRequest) (*compute.Image, error) {
	if r.GetFolderId() == "" || r.GetFamily() == "" {
		return nil, status.Error(codes.InvalidArgument, "Request validation error: folder_id and family are required")
	}
	for _, id := range slices.Backward(x.s.imageOrder) {
		if im := x.s.images[id]; im.GetFolderId() == r.GetFolderId() && im.GetFamily() == r.GetFamily() {
			return proto.Clone(im).(*compute.Image), nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "Image family %s not found in folder %s", r.GetFamily(), r.GetFolderId())
}

// ---- VPC subnets ----

type subnetService struct {
	vpc.UnimplementedSubnetServiceServer
	s *Server
}

func (x subnetService) Get(_ context.Context, r *vpc.GetSubnetRequest) (*vpc.Subnet, error) {
	sn := x.s.subnets[r.GetSubnetId()]
	if sn == nil {
		return nil, status.Errorf(codes.NotFound, "Subnet %s not found", r.GetSubnetId())
	}
	return proto.Clone(sn).(*vpc.Subnet), nil
}

// ---- Compute instance groups ----

type instanceGroupService struct {
	ig.UnimplementedInstanceGroupServiceServer
	s *Server
}

var (
	igNameRE        = regexp.MustCompile(`^(|[a-z]([-a-z0-9]{0,61}[a-z0-9])?)$`)
	labelKeyRE      = regexp.MustCompile(`^[a-z][-_./\\@0-9a-z]*$`)
	labelValueRE    = regexp.MustCompile(`^[-_./\\@0-9a-z]*$`)
	metadataKeyRE   = regexp.MustCompile(`^[a-z][-_0-9a-z]*$`)
	ycZones         = []string{"ru-central1-a", "ru-central1-b", "ru-central1-d"}
	ycDiskTypes     = []string{"network-hdd", "network-ssd", "network-ssd-nonreplicated", "network-ssd-io-m3"}
	invalidArgument = func(format string, args ...any) error {
		return status.Errorf(codes.InvalidArgument, "Request validation error: "+format, args...)
	}
)

func inRange(d *durationpb.Duration, lo, hi time.Duration) bool {
	if d == nil {
		return true
	}
	v := d.AsDuration()
	return v >= lo && v <= hi
}

// checkGroup checks a whole group as Create or an Update leaves it: the
// field rules of the API reference (instance_group.proto), the shapes the
// standard-v3 platform offers (2 to 96 cores in even numbers; 20, 50 or 100
// per cent guaranteed; whole GiB of memory, 1 to 16 per core), that the
// images, subnets and service accounts it names exist, and that the
// group's own service account holds the folder roles it acts with
// (compute.editor to make instances, iam.serviceAccounts.user to attach
// the template's service account to them, vpc.user for their subnet; or
// editor). A container declaration in the metadata must be a COI
// specification that names an image.
func (s *Server) checkGroup(g *ig.InstanceGroup) error {
	switch {
	case g.GetFolderId() == "":
		return invalidArgument("folder_id is required")
	case !igNameRE.MatchString(g.GetName()):
		return invalidArgument("name %q must match |[a-z]([-a-z0-9]{0,61}[a-z0-9])?", g.GetName())
	case len(g.GetDescription()) > 256:
		return invalidArgument("description is longer than 256")
	case g.GetInstanceTemplate() == nil:
		return invalidArgument("instance_template is required")
	case g.GetScalePolicy() == nil:
		return invalidArgument("scale_policy is required")
	case g.GetDeployPolicy() == nil:
		return invalidArgument("deploy_policy is required")
	case g.GetAllocationPolicy() == nil || len(g.GetAllocationPolicy().GetZones()) == 0:
		return invalidArgument("allocation_policy.zones is required")
	case g.GetServiceAccountId() == "":
		return invalidArgument("service_account_id is required")
	}
	for k, v := range g.GetLabels() {
		if len(k) > 63 || !labelKeyRE.MatchString(k) || len(v) > 63 || !labelValueRE.MatchString(v) {
			return invalidArgument("label %q=%q is not a valid label", k, v)
		}
	}
	var zones []string
	for _, z := range g.GetAllocationPolicy().GetZones() {
		if !slices.Contains(ycZones, z.GetZoneId()) {
			return invalidArgument("allocation_policy: unknown zone %q", z.GetZoneId())
		}
		zones = append(zones, z.GetZoneId())
	}
	if err := s.checkTemplate(g.GetInstanceTemplate(), zones); err != nil {
		return err
	}
	if err := checkScale(g.GetScalePolicy(), len(zones)); err != nil {
		return err
	}
	dp := g.GetDeployPolicy()
	for _, v := range []int64{dp.GetMaxUnavailable(), dp.GetMaxExpansion(), dp.GetMaxCreating(), dp.GetMaxDeleting()} {
		if v < 0 || v > 100 {
			return invalidArgument("deploy_policy: values must be between 0 and 100")
		}
	}
	if dp.GetMaxUnavailable() == 0 && dp.GetMaxExpansion() == 0 {
		return invalidArgument("deploy_policy: max_unavailable or max_expansion must be non-zero")
	}
	if !inRange(dp.GetStartupDuration(), 0, time.Hour) {
		return invalidArgument("deploy_policy.startup_duration must satisfy 0m-1h")
	}
	for _, hc := range g.GetHealthChecksSpec().GetHealthCheckSpecs() {
		if !inRange(hc.GetInterval(), time.Second, 300*time.Second) || !inRange(hc.GetTimeout(), time.Second, 60*time.Second) {
			return invalidArgument("health check: interval must satisfy 1s-300s and timeout 1s-60s")
		}
		for _, th := range []int64{hc.GetHealthyThreshold(), hc.GetUnhealthyThreshold()} {
			if th != 0 && (th < 2 || th > 10) {
				return invalidArgument("health check: thresholds must be 0 or 2 to 10")
			}
		}
		switch o := hc.GetHealthCheckOptions().(type) {
		case *ig.HealthCheckSpec_HttpOptions_:
			if p := o.HttpOptions.GetPort(); p < 1 || p > 65535 || !strings.HasPrefix(o.HttpOptions.GetPath(), "/") {
				return invalidArgument("health check: http_options needs a port and a path")
			}
		case *ig.HealthCheckSpec_TcpOptions_:
			if p := o.TcpOptions.GetPort(); p < 1 || p > 65535 {
				return invalidArgument("health check: tcp_options needs a port")
			}
		default:
			return invalidArgument("health check: tcp_options or http_options is required")
		}
	}
	sa := g.GetServiceAccountId()
	if s.sas[sa] == nil {
		return invalidArgument("service account %s not found", sa)
	}
	need := []string{"compute.editor", "vpc.user"}
	if g.GetInstanceTemplate().GetServiceAccountId() != "" {
		need = append(need, "iam.serviceAccounts.user")
	}
	for _, role := range need {
		if !s.hasRole(g.GetFolderId(), sa, role) && !s.hasRole(g.GetFolderId(), sa, "editor") {
			return status.Errorf(codes.PermissionDenied, "Permission denied: service account %s of the instance group has no role %s in folder %s", sa, role, g.GetFolderId())
		}
	}
	return nil
}

func (s *Server) checkTemplate(t *ig.InstanceTemplate, zones []string) error {
	if t.GetPlatformId() != "standard-v3" {
		return invalidArgument("instance_template.platform_id %q: this stand-in serves standard-v3 only", t.GetPlatformId())
	}
	res := t.GetResourcesSpec()
	cores, frac, mem := res.GetCores(), res.GetCoreFraction(), res.GetMemory()
	if cores < 2 || cores > 96 || cores%2 != 0 {
		return invalidArgument("platform standard-v3 has no configuration with %d cores", cores)
	}
	if !slices.Contains([]int64{20, 50, 100}, frac) {
		return invalidArgument("platform standard-v3 has no configuration with core fraction %d", frac)
	}
	if mem%(1<<30) != 0 || mem < cores<<30 || mem > 16*cores<<30 {
		return invalidArgument("platform standard-v3 has no configuration with %d cores and %d bytes of memory", cores, mem)
	}
	if len(t.GetMetadata()) > 128 {
		return invalidArgument("instance_template.metadata has more than 128 entries")
	}
	for k, v := range t.GetMetadata() {
		if len(k) > 63 || !metadataKeyRE.MatchString(k) || len(v) > 262144 {
			return invalidArgument("instance_template.metadata: key %q or its value is not valid", k)
		}
	}
	if decl, ok := t.GetMetadata()[COIMetadataKey]; ok {
		if err := checkCOISpec(decl); err != nil {
			return err
		}
	}
	for k, v := range t.GetLabels() {
		if len(k) > 63 || !labelKeyRE.MatchString(k) || len(v) > 128 {
			return invalidArgument("instance_template label %q is not valid", k)
		}
	}
	boot := t.GetBootDiskSpec()
	if boot == nil || boot.GetDiskSpec() == nil {
		return invalidArgument("instance_template.boot_disk_spec.disk_spec is required")
	}
	if boot.GetMode() != ig.AttachedDiskSpec_READ_WRITE {
		return invalidArgument("instance_template.boot_disk_spec.mode must be READ_WRITE")
	}
	ds := boot.GetDiskSpec()
	if !slices.Contains(ycDiskTypes, ds.GetTypeId()) {
		return invalidArgument("boot disk type %q not found", ds.GetTypeId())
	}
	im := s.images[ds.GetImageId()]
	if im == nil {
		return status.Errorf(codes.NotFound, "Image %s not found", ds.GetImageId())
	}
	if ds.GetSize() < im.GetMinDiskSize() {
		return invalidArgument("boot disk of %d bytes is smaller than image %s needs (%d)", ds.GetSize(), im.GetId(), im.GetMinDiskSize())
	}
	nics := t.GetNetworkInterfaceSpecs()
	if len(nics) == 0 {
		return invalidArgument("instance_template.network_interface_specs is required")
	}
	for _, nic := range nics {
		if nic.GetNetworkId() == "" {
			return invalidArgument("network_interface_specs.network_id is required")
		}
		for _, id := range nic.GetSubnetIds() {
			sn := s.subnets[id]
			if sn == nil {
				return status.Errorf(codes.NotFound, "Subnet %s not found", id)
			}
			if sn.GetNetworkId() != nic.GetNetworkId() {
				return invalidArgument("subnet %s is not in network %s", id, nic.GetNetworkId())
			}
		}
		for _, z := range zones {
			if !slices.ContainsFunc(nic.GetSubnetIds(), func(id string) bool { return s.subnets[id].GetZoneId() == z }) {
				return invalidArgument("no subnet of network %s in zone %s", nic.GetNetworkId(), z)
			}
		}
	}
	if sa := t.GetServiceAccountId(); sa != "" && s.sas[sa] == nil {
		return invalidArgument("service account %s not found", sa)
	}
	return nil
}

// checkCOISpec reads a COI specification as the image's daemon does: a
// spec with at least one container, each naming an image.
func checkCOISpec(decl string) error {
	var spec struct {
		Spec struct {
			Containers []struct {
				Name  string `yaml:"name"`
				Image string `yaml:"image"`
			} `yaml:"containers"`
			RestartPolicy string `yaml:"restartPolicy"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(decl), &spec); err != nil {
		return invalidArgument("metadata %s is not YAML: %v", COIMetadataKey, err)
	}
	if len(spec.Spec.Containers) == 0 {
		return invalidArgument("metadata %s declares no container", COIMetadataKey)
	}
	for _, c := range spec.Spec.Containers {
		if c.Image == "" {
			return invalidArgument("metadata %s: container %q has no image", COIMetadataKey, c.Name)
		}
	}
	if p := spec.Spec.RestartPolicy; p != "" && !slices.Contains([]string{"Always", "OnFailure", "Never"}, p) {
		return invalidArgument("metadata %s: restartPolicy %q", COIMetadataKey, p)
	}
	return nil
}

func checkScale(sp *ig.ScalePolicy, zones int) error {
	switch {
	case sp.GetFixedScale() != nil:
		if n := sp.GetFixedScale().GetSize(); n < 1 || n > 100 {
			return invalidArgument("scale_policy.fixed_scale.size must be between 1 and 100")
		}
	case sp.GetAutoScale() != nil:
		a := sp.GetAutoScale()
		switch {
		case a.GetMinZoneSize() < 0 || a.GetMinZoneSize() > 100 || a.GetMaxSize() < 0 || a.GetMaxSize() > 100:
			return invalidArgument("scale_policy.auto_scale: min_zone_size and max_size must be between 0 and 100")
		case a.GetMaxSize() != 0 && a.GetMaxSize() < a.GetMinZoneSize()*int64(zones):
			return invalidArgument("scale_policy.auto_scale: max_size %d is below min_zone_size times zones", a.GetMaxSize())
		case a.GetMeasurementDuration() != nil && !inRange(a.GetMeasurementDuration(), time.Minute, 10*time.Minute):
			return invalidArgument("scale_policy.auto_scale.measurement_duration must satisfy 1m-10m")
		case !inRange(a.GetWarmupDuration(), 0, 10*time.Minute):
			return invalidArgument("scale_policy.auto_scale.warmup_duration must satisfy <=10m")
		case a.GetStabilizationDuration() != nil && !inRange(a.GetStabilizationDuration(), time.Minute, 30*time.Minute):
			return invalidArgument("scale_policy.auto_scale.stabilization_duration must satisfy 1m-30m")
		case a.GetCpuUtilizationRule() == nil && len(a.GetCustomRules()) == 0:
			return invalidArgument("scale_policy.auto_scale needs cpu_utilization_rule or custom_rules")
		case a.GetCpuUtilizationRule() != nil && (a.GetCpuUtilizationRule().GetUtilizationTarget() < 10 || a.GetCpuUtilizationRule().GetUtilizationTarget() > 100):
			return invalidArgument("scale_policy.auto_scale.cpu_utilization_rule.utilization_target must be between 10 and 100")
		}
	default:
		return invalidArgument("scale_policy: fixed_scale or auto_scale is required")
	}
	return nil
}

// targetSize is how many instances a group runs right after a change: a
// fixed size, or an autoscaled group's lower bound (its initial size if
// larger), which the stand-in never scales beyond.
func targetSize(g *ig.InstanceGroup) int {
	if f := g.GetScalePolicy().GetFixedScale(); f != nil {
		return int(f.GetSize())
	}
	a := g.GetScalePolicy().GetAutoScale()
	return int(max(a.GetMinZoneSize()*int64(len(g.GetAllocationPolicy().GetZones())), a.GetInitialSize()))
}

// converge makes st's instances match its group: instances made from
// another template are replaced (a rolling update, which the deploy
// policy paces and which the stand-in finishes at once), and the count
// follows the target size.
func (s *Server) converge(st *igState) {
	tmpl := st.group.GetInstanceTemplate()
	var keep []GroupInstance
	for _, in := range st.instances {
		if proto.Equal(in.Template, tmpl) {
			keep = append(keep, in)
			continue
		}
		st.rolled++
		keep = append(keep, GroupInstance{ID: s.id("fhm"), Template: proto.Clone(tmpl).(*ig.InstanceTemplate)})
	}
	n := targetSize(st.group)
	for len(keep) < n {
		keep = append(keep, GroupInstance{ID: s.id("fhm"), Template: proto.Clone(tmpl).(*ig.InstanceTemplate)})
	}
	st.instances = keep[:n]
	st.group.ManagedInstancesState = &ig.ManagedInstancesState{TargetSize: int64(n), RunningActualCount: int64(n)}
}

func (x instanceGroupService) Create(_ context.Context, r *ig.CreateInstanceGroupRequest) (*operation.Operation, error) {
	s := x.s
	for _, st := range s.igs {
		if st.group.GetFolderId() == r.GetFolderId() && st.group.GetName() == r.GetName() && r.GetName() != "" {
			return nil, status.Errorf(codes.AlreadyExists, "Instance group with name %s already exists", r.GetName())
		}
	}
	g := &ig.InstanceGroup{
		Id: s.id("cl1"), FolderId: r.GetFolderId(), CreatedAt: timestamppb.Now(), Name: r.GetName(), Description: r.GetDescription(),
		Labels: r.GetLabels(), InstanceTemplate: r.GetInstanceTemplate(), ScalePolicy: r.GetScalePolicy(), DeployPolicy: r.GetDeployPolicy(),
		AllocationPolicy: r.GetAllocationPolicy(), HealthChecksSpec: r.GetHealthChecksSpec(), ServiceAccountId: r.GetServiceAccountId(),
		Variables: r.GetVariables(), AutoHealingPolicy: r.GetAutoHealingPolicy(), Status: ig.InstanceGroup_ACTIVE,
	}
	if r.GetLoadBalancerSpec() != nil || r.GetApplicationLoadBalancerSpec() != nil {
		return nil, invalidArgument("load balancer specs are not served by this stand-in")
	}
	if err := s.checkGroup(g); err != nil {
		return nil, err
	}
	st := &igState{group: g}
	s.converge(st)
	s.igs[g.Id] = st
	return s.op("Create instance group", &ig.CreateInstanceGroupMetadata{InstanceGroupId: g.Id}, g), nil
}

func (x instanceGroupService) Get(_ context.Context, r *ig.GetInstanceGroupRequest) (*ig.InstanceGroup, error) {
	st := x.s.igs[r.GetInstanceGroupId()]
	if st == nil {
		return nil, status.Errorf(codes.NotFound, "Instance group %s not found", r.GetInstanceGroupId())
	}
	return proto.Clone(st.group).(*ig.InstanceGroup), nil
}

func (x instanceGroupService) List(_ context.Context, r *ig.ListInstanceGroupsRequest) (*ig.ListInstanceGroupsResponse, error) {
	if r.GetFolderId() == "" {
		return nil, invalidArgument("folder_id is required")
	}
	out := &ig.ListInstanceGroupsResponse{}
	for _, st := range x.s.igs {
		if st.group.GetFolderId() == r.GetFolderId() {
			out.InstanceGroups = append(out.InstanceGroups, proto.Clone(st.group).(*ig.InstanceGroup))
		}
	}
	sort.Slice(out.InstanceGroups, func(i, j int) bool { return out.InstanceGroups[i].Id < out.InstanceGroups[j].Id })
	return out, nil
}

// Update changes the fields its update_mask names, and only those; a
// mask is required.
func (x instanceGroupService) Update(_ context.Context, r *ig.UpdateInstanceGroupRequest) (*operation.Operation, error) {
	s := x.s
	st := s.igs[r.GetInstanceGroupId()]
	if st == nil {
		return nil, status.Errorf(codes.NotFound, "Instance group %s not found", r.GetInstanceGroupId())
	}
	if len(r.GetUpdateMask().GetPaths()) == 0 {
		return nil, invalidArgument("update_mask is required")
	}
	g := proto.Clone(st.group).(*ig.InstanceGroup)
	for _, p := range r.GetUpdateMask().GetPaths() {
		switch p {
		case "name":
			g.Name = r.GetName()
		case "description":
			g.Description = r.GetDescription()
		case "labels":
			g.Labels = r.GetLabels()
		case "instance_template":
			g.InstanceTemplate = r.GetInstanceTemplate()
		case "scale_policy":
			g.ScalePolicy = r.GetScalePolicy()
		case "deploy_policy":
			g.DeployPolicy = r.GetDeployPolicy()
		case "allocation_policy":
			g.AllocationPolicy = r.GetAllocationPolicy()
		case "health_checks_spec":
			g.HealthChecksSpec = r.GetHealthChecksSpec()
		case "service_account_id":
			g.ServiceAccountId = r.GetServiceAccountId()
		case "auto_healing_policy":
			g.AutoHealingPolicy = r.GetAutoHealingPolicy()
		default:
			return nil, invalidArgument("update_mask: unknown field %q", p)
		}
	}
	if err := s.checkGroup(g); err != nil {
		return nil, err
	}
	st.group = g
	s.converge(st)
	return s.op("Update instance group", &ig.UpdateInstanceGroupMetadata{InstanceGroupId: g.Id}, g), nil
}

func (x instanceGroupService) Delete(_ context.Context, r *ig.DeleteInstanceGroupRequest) (*operation.Operation, error) {
	s := x.s
	if s.igs[r.GetInstanceGroupId()] == nil {
		return nil, status.Errorf(codes.NotFound, "Instance group %s not found", r.GetInstanceGroupId())
	}
	delete(s.igs, r.GetInstanceGroupId())
	return s.op("Delete instance group", &ig.DeleteInstanceGroupMetadata{InstanceGroupId: r.GetInstanceGroupId()}, &ig.InstanceGroup{}), nil
}

func (x instanceGroupService) ListInstances(_ context.Context, r *ig.ListInstanceGroupInstancesRequest) (*ig.ListInstanceGroupInstancesResponse, error) {
	st := x.s.igs[r.GetInstanceGroupId()]
	if st == nil {
		return nil, status.Errorf(codes.NotFound, "Instance group %s not found", r.GetInstanceGroupId())
	}
	out := &ig.ListInstanceGroupInstancesResponse{}
	zones := st.group.GetAllocationPolicy().GetZones()
	for i, in := range st.instances {
		zone := zones[i%len(zones)].GetZoneId()
		out.Instances = append(out.Instances, &ig.ManagedInstance{
			Id: in.ID, InstanceId: in.ID, Name: fmt.Sprintf("%s-%d", st.group.GetName(), i), Status: ig.ManagedInstance_RUNNING_ACTUAL,
			ZoneId: zone, Fqdn: in.ID + ".auto.internal",
		})
	}
	return out, nil
}
