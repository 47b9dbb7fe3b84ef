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
func yandexWorkers(mg *fly.MotherGoose, dep, folder string, labels map[string]any) ([]Resource, error) {
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
		out = append(out, Resource{Type: YCInstanceGroup, Name: c.key, Props: untyped{
			"name": dep + "-" + c.key, "folder_id": folder, "labels": labels, "description": "gosling " + dep + ": " + c.key,
			"service_account_id": Ref(YCServiceAccount+".instance-groups", "id"),
			"instance": map[string]any{
				"platform_id": workerPlatform, "cores": cores, "core_fraction": fraction, "memory": mem,
				"boot_disk":          map[string]any{"image_family": COIFamily, "image_folder_id": COIFolder, "type": workerBootDiskType, "size": int64(workerBootDiskSize)},
				"subnet_id":          prov.SubnetID,
				"service_account_id": Ref(YCServiceAccount+"."+c.key, "id"),
				"container":          map[string]any{"image": ct.Image, "args": workerCommand(c.command[len(c.command)-1]), "environment": map[string]any{"GOSLING_NEST": "/nest"}},
				"labels":             labels,
			},
			"scale":        map[string]any{"min": lo, "max": hi, "cpu_target": ScalingTargetCPU},
			"deploy":       map[string]any{"max_unavailable": 0, "max_expansion": 1, "startup_seconds": workerStartupSeconds},
			"zones":        []any{zone},
			"health_check": map[string]any{"port": WorkerMetricsPort, "path": "/healthz", "on_failure": "recreate"},
		}, DependsOn: []string{YCFolderBinding + "." + c.key, YCFolderBinding + ".instance-groups"}})
	}
	return out, nil
}

// coiDeclaration is the COI specification of one container, restarted
// whenever it exits.
func coiDeclaration(container map[string]any) (string, error) {
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
	env := strMap(mapOf(container, "environment"))
	c := spec{Name: "gosling", Image: str(container, "image"), Args: strList(container, "args"), SecurityContext: map[string]bool{"privileged": false}}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		c.Env = append(c.Env, envVar{Name: k, Value: env[k]})
	}
	doc := map[string]any{"spec": map[string]any{"containers": []spec{c}, "restartPolicy": "Always"}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("write the COI specification: %w", err)
	}
	return string(b), nil
}

// containerOfDeclaration reads back what coiDeclaration wrote.
func containerOfDeclaration(decl string) (map[string]any, error) {
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
		return nil, fmt.Errorf("its %s is not YAML: %w", coiDeclarationKey, err)
	}
	if len(doc.Spec.Containers) != 1 {
		return nil, fmt.Errorf("its %s declares %d containers, not one", coiDeclarationKey, len(doc.Spec.Containers))
	}
	c := doc.Spec.Containers[0]
	env := map[string]any{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	args := []any{}
	for _, a := range c.Args {
		args = append(args, a)
	}
	return map[string]any{"image": c.Image, "args": args, "environment": env}, nil
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
	scale := map[string]any{}
	if f := g.GetScalePolicy().GetFixedScale(); f != nil {
		scale["min"], scale["max"], scale["cpu_target"] = f.GetSize(), f.GetSize(), ScalingTargetCPU
	} else {
		a := g.GetScalePolicy().GetAutoScale()
		zones := int64(len(g.GetAllocationPolicy().GetZones()))
		scale["min"], scale["max"], scale["cpu_target"] = a.GetMinZoneSize()*zones, a.GetMaxSize(), a.GetCpuUtilizationRule().GetUtilizationTarget()
	}
	var zones []any
	for _, z := range g.GetAllocationPolicy().GetZones() {
		zones = append(zones, z.GetZoneId())
	}
	health := map[string]any{}
	if hcs := g.GetHealthChecksSpec().GetHealthCheckSpecs(); len(hcs) > 0 {
		health["port"], health["path"] = hcs[0].GetHttpOptions().GetPort(), hcs[0].GetHttpOptions().GetPath()
	}
	if a := g.GetAutoHealingPolicy().GetAutoHealingAction(); a != ig.AutoHealingPolicy_AUTO_HEALING_ACTION_UNSPECIFIED {
		health["on_failure"] = strings.ToLower(a.String())
	}
	dp := g.GetDeployPolicy()
	props := map[string]any{
		"name": g.GetName(), "folder_id": g.GetFolderId(), "labels": anyMap(g.GetLabels()), "description": g.GetDescription(),
		"service_account_id": g.GetServiceAccountId(),
		"instance": map[string]any{
			"platform_id": t.GetPlatformId(), "cores": t.GetResourcesSpec().GetCores(), "core_fraction": t.GetResourcesSpec().GetCoreFraction(),
			"memory":             t.GetResourcesSpec().GetMemory(),
			"boot_disk":          map[string]any{"image_family": im.GetFamily(), "image_folder_id": im.GetFolderId(), "type": disk.GetTypeId(), "size": disk.GetSize()},
			"subnet_id":          subnet,
			"service_account_id": t.GetServiceAccountId(),
			"container":          container,
			"labels":             anyMap(t.GetLabels()),
		},
		"scale":        scale,
		"deploy":       map[string]any{"max_unavailable": dp.GetMaxUnavailable(), "max_expansion": dp.GetMaxExpansion(), "startup_seconds": dp.GetStartupDuration().GetSeconds()},
		"zones":        zones,
		"health_check": health,
	}
	return Resource{Type: YCInstanceGroup, Name: strings.TrimPrefix(g.GetName(), p.Deployment+"-"), Props: normalize(props),
		ID: g.GetId(), Outputs: map[string]string{"id": g.GetId()}}, nil
}

// instanceGroupSpec turns Props into the API's messages: the boot image is
// the newest of its family and the network the subnet's.
func (p *YandexProvider) instanceGroupSpec(ctx context.Context, r *Resource) (*ig.InstanceGroup, error) {
	in := mapOf(raw(r.Props), "instance")
	disk := mapOf(in, "boot_disk")
	c, err := p.conn(ctx, ycImageService)
	if err != nil {
		return nil, err
	}
	im, err := compute.NewImageServiceClient(c).GetLatestByFamily(ctx, &compute.GetImageLatestByFamilyRequest{FolderId: str(disk, "image_folder_id"), Family: str(disk, "image_family")})
	if err != nil {
		return nil, fmt.Errorf("find the newest image of family %s: %w", str(disk, "image_family"), err)
	}
	if c, err = p.conn(ctx, ycSubnetService); err != nil {
		return nil, err
	}
	subnet, err := vpc.NewSubnetServiceClient(c).Get(ctx, &vpc.GetSubnetRequest{SubnetId: str(in, "subnet_id")})
	if err != nil {
		return nil, fmt.Errorf("read subnet %s: %w", str(in, "subnet_id"), err)
	}
	decl, err := coiDeclaration(mapOf(in, "container"))
	if err != nil {
		return nil, err
	}
	scale := mapOf(raw(r.Props), "scale")
	lo, hi := int64(num(scale, "min")), int64(num(scale, "max"))
	var zones []*ig.AllocationPolicy_Zone
	for _, z := range strList(raw(r.Props), "zones") {
		zones = append(zones, &ig.AllocationPolicy_Zone{ZoneId: z})
	}
	sp := &ig.ScalePolicy{ScaleType: &ig.ScalePolicy_FixedScale_{FixedScale: &ig.ScalePolicy_FixedScale{Size: lo}}}
	if hi > lo {
		sp = &ig.ScalePolicy{ScaleType: &ig.ScalePolicy_AutoScale_{AutoScale: &ig.ScalePolicy_AutoScale{
			MinZoneSize: lo / int64(max(len(zones), 1)), MaxSize: hi, InitialSize: lo,
			MeasurementDuration:   durationpb.New(time.Minute),
			WarmupDuration:        durationpb.New(workerStartupSeconds * time.Second),
			StabilizationDuration: durationpb.New(ScalingScaleInCooldown * time.Second),
			CpuUtilizationRule:    &ig.ScalePolicy_CpuUtilizationRule{UtilizationTarget: float64(num(scale, "cpu_target"))},
		}}}
	}
	dp := mapOf(raw(r.Props), "deploy")
	hc := mapOf(raw(r.Props), "health_check")
	return &ig.InstanceGroup{
		FolderId: str(raw(r.Props), "folder_id"), Name: str(raw(r.Props), "name"), Description: str(raw(r.Props), "description"),
		Labels: strMap(mapOf(raw(r.Props), "labels")), ServiceAccountId: str(raw(r.Props), "service_account_id"),
		InstanceTemplate: &ig.InstanceTemplate{
			PlatformId:    str(in, "platform_id"),
			ResourcesSpec: &ig.ResourcesSpec{Cores: int64(num(in, "cores")), CoreFraction: int64(num(in, "core_fraction")), Memory: int64(num(in, "memory"))},
			Metadata:      map[string]string{coiDeclarationKey: decl},
			Labels:        strMap(mapOf(in, "labels")),
			BootDiskSpec: &ig.AttachedDiskSpec{Mode: ig.AttachedDiskSpec_READ_WRITE, DiskSpec: &ig.AttachedDiskSpec_DiskSpec{
				TypeId: str(disk, "type"), Size: int64(num(disk, "size")), SourceOneof: &ig.AttachedDiskSpec_DiskSpec_ImageId{ImageId: im.GetId()},
			}},
			NetworkInterfaceSpecs: []*ig.NetworkInterfaceSpec{{NetworkId: subnet.GetNetworkId(), SubnetIds: []string{subnet.GetId()}}},
			ServiceAccountId:      str(in, "service_account_id"),
		},
		ScalePolicy: sp,
		DeployPolicy: &ig.DeployPolicy{
			MaxUnavailable: int64(num(dp, "max_unavailable")), MaxExpansion: int64(num(dp, "max_expansion")),
			StartupDuration: durationpb.New(time.Duration(num(dp, "startup_seconds")) * time.Second), Strategy: ig.DeployPolicy_PROACTIVE,
		},
		AllocationPolicy:  &ig.AllocationPolicy{Zones: zones},
		AutoHealingPolicy: &ig.AutoHealingPolicy{AutoHealingAction: ig.AutoHealingPolicy_AutoHealingAction(ig.AutoHealingPolicy_AutoHealingAction_value[strings.ToUpper(str(hc, "on_failure"))])},
		HealthChecksSpec: &ig.HealthChecksSpec{HealthCheckSpecs: []*ig.HealthCheckSpec{{
			Interval: durationpb.New(10 * time.Second), Timeout: durationpb.New(5 * time.Second), UnhealthyThreshold: 3, HealthyThreshold: 2,
			HealthCheckOptions: &ig.HealthCheckSpec_HttpOptions_{HttpOptions: &ig.HealthCheckSpec_HttpOptions{Port: int64(num(hc, "port")), Path: str(hc, "path")}},
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
	var mask []string
	for _, f := range []struct{ prop, path string }{
		{"name", "name"}, {"description", "description"}, {"labels", "labels"}, {"instance", "instance_template"},
		{"scale", "scale_policy"}, {"deploy", "deploy_policy"}, {"zones", "allocation_policy"}, {"health_check", "health_checks_spec"},
		{"service_account_id", "service_account_id"},
	} {
		if jsonString(raw(before.Props)[f.prop]) != jsonString(raw(r.Props)[f.prop]) {
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
