package bootstrap

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	compute "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1"
	ig "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1/instancegroup"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	vpc "github.com/yandex-cloud/go-genproto/yandex/cloud/vpc/v1"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/gosling-ci/gosling/fly"
)

// YCInstanceGroup is a Compute Cloud instance group whose virtual machines
// run one container on the Container-Optimized Image: how the Temporal
// workers run on Yandex Cloud, always on.
const YCInstanceGroup = "yandex_compute_instance_group"

// The Container-Optimized Image: Yandex publishes it as an image family in
// the standard-images folder; a VM made from it runs the container its
// metadata key docker-container-declaration declares (a COI
// specification, https://yandex.cloud/en/docs/cos/concepts/coi-specifications),
// restarts it when it exits, and pulls its image with the VM's service
// account.
const (
	COIFamily            = "container-optimized-image"
	COIFolder            = "standard-images"
	coiDeclarationKey    = "docker-container-declaration"
	workerPlatform       = "standard-v3"
	workerBootDiskType   = "network-ssd"
	workerBootDiskSize   = 30 * fly.GiB
	workerDefaultZone    = "ru-central1-a"
	workerStartupSeconds = 60
)

// WorkerMetricsPort is where a worker serves /metrics and /healthz
// (gosling worker --metrics-addr): the instance groups' health checks
// probe GET /healthz there and replace an instance that fails them.
const WorkerMetricsPort = 9090

// workerCommand is a worker's gosling arguments, with the health checks'
// port spelt out.
func workerCommand(queue string) []string {
	return []string{"worker", "--queue", queue, "--metrics-addr", fmt.Sprintf(":%d", WorkerMetricsPort)}
}

// workerShape turns vCPUs and bytes into what the standard-v3 platform
// offers: an even number of cores (at least two), the least guaranteed
// share of them (20, 50 or 100 per cent) that still gives cpu, and whole
// GiB of memory, at least one per core.
func workerShape(cpu float64, memory fly.Size) (cores, fraction int, mem int64) {
	cores = max(2, int(math.Ceil(cpu)))
	cores += cores % 2
	fraction = 100
	for _, f := range []int{20, 50} {
		if float64(cores*f) >= cpu*100 {
			fraction = f
			break
		}
	}
	gib := int64(fly.GiB)
	mem = max((int64(memory)+gib-1)/gib*gib, int64(cores)*gib)
	return cores, fraction, mem
}

// yandexWorkers is an instance group per worker: its VMs run the worker's
// image on the Container-Optimized Image as the worker's service account,
// between min_instances (at least one: a worker polls Temporal and is never
// woken by a request) and max_instances, scaled on average CPU at
// ScalingTargetCPU per cent; a new image rolls the group one VM at a time,
// the new VM started before the old one stops. The group itself acts as
// the instance-groups service account.
func yandexWorkers(mg *fly.MotherGoose, dep, folder string, labels map[string]string) ([]Resource, error) {
	prov := mg.Providers[fly.CloudYandex]
	if prov.SubnetID == "" {
		return nil, fmt.Errorf("mothergoose provider \"yandex\": the workers' instance groups need a subnet: set subnet_id (one with a NAT gateway, so the workers reach Temporal and Container Registry)")
	}
	zone := prov.Zone
	if zone == "" {
		zone = workerDefaultZone
	}
	var out []Resource
	for _, c := range components {
		if c.key == "api" {
			continue
		}
		ct := containerOf(mg, c.key)
		if ct.Image == "" {
			return nil, fmt.Errorf("mothergoose.containers.%s: no image: set image = \"cr.yandex/<registry>/gosling:<version>\"", strings.ReplaceAll(c.key, "-", "_"))
		}
		cores, fraction, mem := workerShape(ct.CPU, ct.Memory)
		lo := max(ct.MinInstances, 1)
		hi := max(ct.MaxInstances, lo)
		out = append(out, Resource{Type: YCInstanceGroup, Name: c.key, Props: InstanceGroupProps{
			Name: dep + "-" + c.key, FolderID: folder, Labels: labels, Description: "gosling " + dep + ": " + c.key,
			ServiceAccountID: Ref(YCServiceAccount+".instance-groups", "id"),
			Instance: InstanceTemplate{
				PlatformID: workerPlatform, Cores: int64(cores), CoreFraction: int64(fraction), Memory: mem,
				BootDisk:         BootDisk{ImageFamily: COIFamily, ImageFolderID: COIFolder, Type: workerBootDiskType, Size: int64(workerBootDiskSize)},
				SubnetID:         prov.SubnetID,
				ServiceAccountID: Ref(YCServiceAccount+"."+c.key, "id"),
				Container:        COIContainer{Image: ct.Image, Args: workerCommand(c.command[len(c.command)-1]), Environment: map[string]string{"GOSLING_NEST": "/nest"}},
				Labels:           labels,
			},
			Scale:       GroupScale{Min: int64(lo), Max: int64(hi), CPUTarget: ScalingTargetCPU},
			Deploy:      GroupDeploy{MaxUnavailable: 0, MaxExpansion: 1, StartupSeconds: workerStartupSeconds},
			Zones:       []string{zone},
			HealthCheck: GroupHealthCheck{Port: WorkerMetricsPort, Path: "/healthz", OnFailure: "recreate"},
		}, DependsOn: []string{YCFolderBinding + "." + c.key, YCFolderBinding + ".instance-groups"}})
	}
	return out, nil
}

// coiDeclaration is the COI specification of one container, restarted
// whenever it exits.
func coiDeclaration(container COIContainer) (string, error) {
	type envVar struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	}
	type spec struct {
		Name            string          `yaml:"name"`
		Image           string          `yaml:"image"`
		Args            []string        `yaml:"args,omitempty"`
		Env             []envVar        `yaml:"env,omitempty"`
		SecurityContext map[string]bool `yaml:"securityContext"`
		Stdin           bool            `yaml:"stdin"`
		TTY             bool            `yaml:"tty"`
	}
	env := container.Environment
	c := spec{Name: "gosling", Image: container.Image, Args: container.Args, SecurityContext: map[string]bool{"privileged": false}}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		c.Env = append(c.Env, envVar{Name: k, Value: env[k]})
	}
	type pod struct {
		Containers    []spec `yaml:"containers"`
		RestartPolicy string `yaml:"restartPolicy"`
	}
	doc := struct {
		Spec pod `yaml:"spec"`
	}{pod{Containers: []spec{c}, RestartPolicy: "Always"}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("write the COI specification: %w", err)
	}
	return string(b), nil
}

// containerOfDeclaration reads back what coiDeclaration wrote.
func containerOfDeclaration(decl string) (COIContainer, error) {
	var doc struct {
		Spec struct {
			Containers []struct {
				Image string   `yaml:"image"`
				Args  []string `yaml:"args"`
				Env   []struct {
					Name  string `yaml:"name"`
					Value string `yaml:"value"`
				} `yaml:"env"`
			} `yaml:"containers"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(decl), &doc); err != nil {
		return COIContainer{}, fmt.Errorf("its %s is not YAML: %w", coiDeclarationKey, err)
	}
	if len(doc.Spec.Containers) != 1 {
		return COIContainer{}, fmt.Errorf("its %s declares %d containers, not one", coiDeclarationKey, len(doc.Spec.Containers))
	}
	c := doc.Spec.Containers[0]
	out := COIContainer{Image: c.Image, Args: []string{}, Environment: map[string]string{}}
	for _, e := range c.Env {
		out.Environment[e.Name] = e.Value
	}
	out.Args = append(out.Args, c.Args...)
	return out, nil
}

const (
	ycInstanceGroupService = protoreflect.FullName("yandex.cloud.compute.v1.instancegroup.InstanceGroupService")
	ycImageService         = protoreflect.FullName("yandex.cloud.compute.v1.ImageService")
	ycSubnetService        = protoreflect.FullName("yandex.cloud.vpc.v1.SubnetService")
)

func (p *YandexProvider) instanceGroups(ctx context.Context) (ig.InstanceGroupServiceClient, error) {
	c, err := p.conn(ctx, ycInstanceGroupService)
	if err != nil {
		return nil, err
	}
	return ig.NewInstanceGroupServiceClient(c), nil
}

func (p *YandexProvider) readInstanceGroups(ctx context.Context) ([]Resource, error) {
	cl, err := p.instanceGroups(ctx)
	if err != nil {
		return nil, err
	}
	images := map[string]*compute.Image{}
	var out []Resource
	for g, err := range pages(ctx, func(ctx context.Context, token string) ([]*ig.InstanceGroup, string, error) {
		resp, err := cl.List(ctx, &ig.ListInstanceGroupsRequest{FolderId: p.FolderID, PageSize: 1000, View: ig.InstanceGroupView_FULL, PageToken: token})
		return resp.GetInstanceGroups(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the instance groups of folder %s: %w", p.FolderID, err)
		}
		if g.GetLabels()[TagDeployment] != p.Deployment {
			continue
		}
		r, err := p.instanceGroupResource(ctx, g, images)
		if err != nil {
			return nil, fmt.Errorf("instance group %s: %w", g.GetName(), err)
		}
		out = append(out, r)
	}
	return out, nil
}

// instanceGroupResource puts a group in the desired set's shape; its boot
// image is named by its family, so a newer release of the
// Container-Optimized Image changes nothing until the next rollout.
func (p *YandexProvider) instanceGroupResource(ctx context.Context, g *ig.InstanceGroup, images map[string]*compute.Image) (Resource, error) {
	t := g.GetInstanceTemplate()
	disk := t.GetBootDiskSpec().GetDiskSpec()
	im := images[disk.GetImageId()]
	if im == nil {
		c, err := p.conn(ctx, ycImageService)
		if err != nil {
			return Resource{}, err
		}
		if im, err = compute.NewImageServiceClient(c).Get(ctx, &compute.GetImageRequest{ImageId: disk.GetImageId()}); err != nil {
			return Resource{}, fmt.Errorf("read its boot image %s: %w", disk.GetImageId(), err)
		}
		images[disk.GetImageId()] = im
	}
	container, err := containerOfDeclaration(t.GetMetadata()[coiDeclarationKey])
	if err != nil {
		return Resource{}, err
	}
	subnet := ""
	if nics := t.GetNetworkInterfaceSpecs(); len(nics) > 0 && len(nics[0].GetSubnetIds()) > 0 {
		subnet = nics[0].GetSubnetIds()[0]
	}
	var scale GroupScale
	if f := g.GetScalePolicy().GetFixedScale(); f != nil {
		scale = GroupScale{Min: f.GetSize(), Max: f.GetSize(), CPUTarget: ScalingTargetCPU}
	} else {
		a := g.GetScalePolicy().GetAutoScale()
		zones := int64(len(g.GetAllocationPolicy().GetZones()))
		scale = GroupScale{Min: a.GetMinZoneSize() * zones, Max: a.GetMaxSize(), CPUTarget: a.GetCpuUtilizationRule().GetUtilizationTarget()}
	}
	var zones []string
	for _, z := range g.GetAllocationPolicy().GetZones() {
		zones = append(zones, z.GetZoneId())
	}
	var health GroupHealthCheck
	if hcs := g.GetHealthChecksSpec().GetHealthCheckSpecs(); len(hcs) > 0 {
		health.Port, health.Path = hcs[0].GetHttpOptions().GetPort(), hcs[0].GetHttpOptions().GetPath()
	}
	if a := g.GetAutoHealingPolicy().GetAutoHealingAction(); a != ig.AutoHealingPolicy_AUTO_HEALING_ACTION_UNSPECIFIED {
		health.OnFailure = strings.ToLower(a.String())
	}
	dp := g.GetDeployPolicy()
	props := InstanceGroupProps{
		Name: g.GetName(), FolderID: g.GetFolderId(), Labels: nonNilMap(g.GetLabels()), Description: g.GetDescription(),
		ServiceAccountID: g.GetServiceAccountId(),
		Instance: InstanceTemplate{
			PlatformID: t.GetPlatformId(), Cores: t.GetResourcesSpec().GetCores(), CoreFraction: t.GetResourcesSpec().GetCoreFraction(),
			Memory:           t.GetResourcesSpec().GetMemory(),
			BootDisk:         BootDisk{ImageFamily: im.GetFamily(), ImageFolderID: im.GetFolderId(), Type: disk.GetTypeId(), Size: disk.GetSize()},
			SubnetID:         subnet,
			ServiceAccountID: t.GetServiceAccountId(),
			Container:        container,
			Labels:           nonNilMap(t.GetLabels()),
		},
		Scale:       scale,
		Deploy:      GroupDeploy{MaxUnavailable: dp.GetMaxUnavailable(), MaxExpansion: dp.GetMaxExpansion(), StartupSeconds: dp.GetStartupDuration().GetSeconds()},
		Zones:       zones,
		HealthCheck: health,
	}
	return Resource{Type: YCInstanceGroup, Name: strings.TrimPrefix(g.GetName(), p.Deployment+"-"), Props: props,
		ID: g.GetId(), Outputs: map[string]string{"id": g.GetId()}}, nil
}

// instanceGroupSpec turns Props into the API's messages: the boot image is
// the newest of its family and the network the subnet's.
func (p *YandexProvider) instanceGroupSpec(ctx context.Context, r *Resource) (*ig.InstanceGroup, error) {
	want := as[InstanceGroupProps](*r)
	in := want.Instance
	disk := in.BootDisk
	c, err := p.conn(ctx, ycImageService)
	if err != nil {
		return nil, err
	}
	im, err := compute.NewImageServiceClient(c).GetLatestByFamily(ctx, &compute.GetImageLatestByFamilyRequest{FolderId: disk.ImageFolderID, Family: disk.ImageFamily})
	if err != nil {
		return nil, fmt.Errorf("find the newest image of family %s: %w", disk.ImageFamily, err)
	}
	if c, err = p.conn(ctx, ycSubnetService); err != nil {
		return nil, err
	}
	subnet, err := vpc.NewSubnetServiceClient(c).Get(ctx, &vpc.GetSubnetRequest{SubnetId: in.SubnetID})
	if err != nil {
		return nil, fmt.Errorf("read subnet %s: %w", in.SubnetID, err)
	}
	decl, err := coiDeclaration(in.Container)
	if err != nil {
		return nil, err
	}
	scale := want.Scale
	lo, hi := scale.Min, scale.Max
	var zones []*ig.AllocationPolicy_Zone
	for _, z := range want.Zones {
		zones = append(zones, &ig.AllocationPolicy_Zone{ZoneId: z})
	}
	sp := &ig.ScalePolicy{ScaleType: &ig.ScalePolicy_FixedScale_{FixedScale: &ig.ScalePolicy_FixedScale{Size: lo}}}
	if hi > lo {
		sp = &ig.ScalePolicy{ScaleType: &ig.ScalePolicy_AutoScale_{AutoScale: &ig.ScalePolicy_AutoScale{
			MinZoneSize: lo / int64(max(len(zones), 1)), MaxSize: hi, InitialSize: lo,
			MeasurementDuration:   durationpb.New(time.Minute),
			WarmupDuration:        durationpb.New(workerStartupSeconds * time.Second),
			StabilizationDuration: durationpb.New(ScalingScaleInCooldown * time.Second),
			CpuUtilizationRule:    &ig.ScalePolicy_CpuUtilizationRule{UtilizationTarget: scale.CPUTarget},
		}}}
	}
	dp := want.Deploy
	hc := want.HealthCheck
	return &ig.InstanceGroup{
		FolderId: want.FolderID, Name: want.Name, Description: want.Description,
		Labels: nonNilMap(want.Labels), ServiceAccountId: want.ServiceAccountID,
		InstanceTemplate: &ig.InstanceTemplate{
			PlatformId:    in.PlatformID,
			ResourcesSpec: &ig.ResourcesSpec{Cores: in.Cores, CoreFraction: in.CoreFraction, Memory: in.Memory},
			Metadata:      map[string]string{coiDeclarationKey: decl},
			Labels:        nonNilMap(in.Labels),
			BootDiskSpec: &ig.AttachedDiskSpec{Mode: ig.AttachedDiskSpec_READ_WRITE, DiskSpec: &ig.AttachedDiskSpec_DiskSpec{
				TypeId: disk.Type, Size: disk.Size, SourceOneof: &ig.AttachedDiskSpec_DiskSpec_ImageId{ImageId: im.GetId()},
			}},
			NetworkInterfaceSpecs: []*ig.NetworkInterfaceSpec{{NetworkId: subnet.GetNetworkId(), SubnetIds: []string{subnet.GetId()}}},
			ServiceAccountId:      in.ServiceAccountID,
		},
		ScalePolicy: sp,
		DeployPolicy: &ig.DeployPolicy{
			MaxUnavailable: dp.MaxUnavailable, MaxExpansion: dp.MaxExpansion,
			StartupDuration: durationpb.New(time.Duration(dp.StartupSeconds) * time.Second), Strategy: ig.DeployPolicy_PROACTIVE,
		},
		AllocationPolicy:  &ig.AllocationPolicy{Zones: zones},
		AutoHealingPolicy: &ig.AutoHealingPolicy{AutoHealingAction: ig.AutoHealingPolicy_AutoHealingAction(ig.AutoHealingPolicy_AutoHealingAction_value[strings.ToUpper(hc.OnFailure)])},
		HealthChecksSpec: &ig.HealthChecksSpec{HealthCheckSpecs: []*ig.HealthCheckSpec{{
			Interval: durationpb.New(10 * time.Second), Timeout: durationpb.New(5 * time.Second), UnhealthyThreshold: 3, HealthyThreshold: 2,
			HealthCheckOptions: &ig.HealthCheckSpec_HttpOptions_{HttpOptions: &ig.HealthCheckSpec_HttpOptions{Port: hc.Port, Path: hc.Path}},
		}}},
	}, nil
}

// igRoleAttempts bounds the creates of an instance group tried while
// Yandex refuses the group's service account: folder roles bound a moment
// before take effect a little later. The waits double from the poll
// interval, about a minute in all at the default second.
const igRoleAttempts = 7

// putInstanceGroup makes or changes a group; a change sends only the
// fields that differ, so a new image rolls the group and a new size only
// rescales it.
func (p *YandexProvider) putInstanceGroup(ctx context.Context, before, r *Resource) error {
	cl, err := p.instanceGroups(ctx)
	if err != nil {
		return err
	}
	g, err := p.instanceGroupSpec(ctx, r)
	if err != nil {
		return err
	}
	if before == nil {
		req := &ig.CreateInstanceGroupRequest{
			FolderId: g.FolderId, Name: g.Name, Description: g.Description, Labels: g.Labels, InstanceTemplate: g.InstanceTemplate,
			ScalePolicy: g.ScalePolicy, DeployPolicy: g.DeployPolicy, AllocationPolicy: g.AllocationPolicy, HealthChecksSpec: g.HealthChecksSpec,
			ServiceAccountId: g.ServiceAccountId, AutoHealingPolicy: g.AutoHealingPolicy,
		}
		var op *operation.Operation
		for attempt := 1; ; attempt++ {
			op, err = p.wait(ctx)(cl.Create(ctx, req))
			if status.Code(err) != codes.PermissionDenied || attempt == igRoleAttempts {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(p.poll << (attempt - 1)):
			}
		}
		if err != nil {
			return err
		}
		var made ig.InstanceGroup
		if err := op.GetResponse().UnmarshalTo(&made); err != nil {
			return fmt.Errorf("read the operation's response: %w", err)
		}
		r.ID, r.Outputs = made.GetId(), map[string]string{"id": made.GetId()}
		return nil
	}
	had, want := as[InstanceGroupProps](*before), as[InstanceGroupProps](*r)
	var mask []string
	for _, f := range []struct {
		had, want any
		path      string
	}{
		{had.Name, want.Name, "name"}, {had.Description, want.Description, "description"}, {had.Labels, want.Labels, "labels"},
		{had.Instance, want.Instance, "instance_template"}, {had.Scale, want.Scale, "scale_policy"}, {had.Deploy, want.Deploy, "deploy_policy"},
		{had.Zones, want.Zones, "allocation_policy"}, {had.HealthCheck, want.HealthCheck, "health_checks_spec"},
		{had.ServiceAccountID, want.ServiceAccountID, "service_account_id"},
	} {
		if jsonString(f.had) != jsonString(f.want) {
			mask = append(mask, f.path)
			if f.path == "health_checks_spec" {
				mask = append(mask, "auto_healing_policy")
			}
		}
	}
	if len(mask) == 0 {
		return nil
	}
	_, err = p.wait(ctx)(cl.Update(ctx, &ig.UpdateInstanceGroupRequest{
		InstanceGroupId: before.ID, UpdateMask: &fieldmaskpb.FieldMask{Paths: mask},
		Name: g.Name, Description: g.Description, Labels: g.Labels, InstanceTemplate: g.InstanceTemplate, ScalePolicy: g.ScalePolicy,
		DeployPolicy: g.DeployPolicy, AllocationPolicy: g.AllocationPolicy, HealthChecksSpec: g.HealthChecksSpec, ServiceAccountId: g.ServiceAccountId,
		AutoHealingPolicy: g.AutoHealingPolicy,
	}))
	return err
}

func (p *YandexProvider) deleteInstanceGroup(ctx context.Context, r Resource) error {
	cl, err := p.instanceGroups(ctx)
	if err != nil {
		return err
	}
	_, err = p.wait(ctx)(cl.Delete(ctx, &ig.DeleteInstanceGroupRequest{InstanceGroupId: r.ID}))
	return err
}
