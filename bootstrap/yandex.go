package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/access"
	iam "github.com/yandex-cloud/go-genproto/yandex/cloud/iam/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/lockbox/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	rm "github.com/yandex-cloud/go-genproto/yandex/cloud/resourcemanager/v1"
	apigw "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/apigateway/v1"
	containers "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/containers/v1"
	functions "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/functions/v1"
	triggers "github.com/yandex-cloud/go-genproto/yandex/cloud/serverless/triggers/v1"
	ydb "github.com/yandex-cloud/go-genproto/yandex/cloud/ydb/v1"
	ycsdk "github.com/yandex-cloud/go-sdk/v2"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

// Yandex Cloud resource types, in the order they are made.
const (
	YCServiceAccount = "yandex_iam_service_account"
	YCFolderBinding  = "yandex_folder_iam_binding"
	YCDatabase       = "yandex_ydb_database"
	YCQueue          = "yandex_message_queue"
	YCSecret         = "yandex_lockbox_secret"
	// YCSecretBinding is a service account's roles on one Lockbox secret.
	YCSecretBinding = "yandex_lockbox_secret_iam_binding"
	// YCContainer is a Serverless Container with its latest revision.
	YCContainer = "yandex_serverless_container"
	// YCFunction is a Cloud Function with its latest version.
	YCFunction = "yandex_function"
	// YCFunctionBinding is a service account's roles on one function.
	YCFunctionBinding = "yandex_function_iam_binding"
	YCTrigger         = "yandex_function_trigger"
	YCGateway         = "yandex_api_gateway"
)

// yandexTypes are the types the provider reads and changes. Message Queue
// queues and timer triggers are no longer desired (see YandexDesired), but
// an earlier deploy's are still read, so that deploy deletes them, and a
// rollback to before that deploy can make them again.
var yandexTypes = []string{YCServiceAccount, YCFolderBinding, YCSecret, YCSecretBinding, YCDatabase, YCQueue, YCContainer, YCInstanceGroup, YCFunction, YCFunctionBinding, YCTrigger, YCGateway}

// YandexOptions say how to reach Yandex Cloud: the endpoint and the
// credentials of internal/yandexauth (a service-account key file, an IAM
// token, else the instance's service account from the metadata service).
type YandexOptions struct {
	Auth yandexauth.Options
	// FolderID is where the servers go (default: the yandex provider's
	// folder_id, else the lockbox block's).
	FolderID string
	// PollInterval is how often a long-running operation is checked
	// (default one second).
	PollInterval time.Duration
	// MessageQueue, when set, replaces the AWS SDK configuration Message
	// Queue is reached with (default: the AWS SDK's chain, which must hold
	// a service account's static access key, in region ru-central1 at
	// YMQEndpoint).
	MessageQueue *aws.Config
}

// YMQEndpoint is Yandex Message Queue's SQS-compatible endpoint.
const YMQEndpoint = "https://message-queue.api.cloud.yandex.net"

// ycRoles are the folder roles of each component's service account: what
// it needs and no more (Yandex grants service roles per folder).
// The components' accounts pull their image from Container Registry
// (container-registry.images.puller): Serverless Containers pull the
// API's revision as its account, the Container-Optimized Image the
// worker's container as the VM's.
var ycRoles = map[string][]string{
	"api":                {"container-registry.images.puller", "lockbox.payloadViewer", "ydb.editor"},
	"mothergoose-worker": {"compute.editor", "container-registry.images.puller", "iam.serviceAccounts.user", "lockbox.editor", "lockbox.payloadViewer", "serverless.containers.editor", "vpc.user", "ydb.editor"},
	"uglyfox-worker":     {"compute.editor", "container-registry.images.puller", "lockbox.editor", "lockbox.payloadViewer", "serverless.containers.editor", "ydb.editor"},
	// Runners have no folder role: each egg's service account holds
	// lockbox.payloadViewer on its own secrets only (identities.go).
	// The API gateway calls the API's container as it.
	"invoker": {"serverless.containers.invoker"},
	// The workers' instance groups make, replace and delete their VMs as
	// it: VMs (compute.editor) in the subnet (vpc.user) running as the
	// workers' accounts (iam.serviceAccounts.user).
	"instance-groups": {"compute.editor", "iam.serviceAccounts.user", "vpc.user"},
}

// YandexFolder is the folder a Nest's servers go to.
func YandexFolder(n *fly.Nest) string {
	if p, ok := n.MotherGoose.Providers[fly.CloudYandex]; ok && p.FolderID != "" {
		return p.FolderID
	}
	return n.MotherGoose.Secrets.Backends[fly.SchemeLockbox].FolderID
}

// YandexDesired builds the Yandex Cloud resources of a Nest whose
// MotherGoose runs on Yandex Cloud: a service account per component, one
// that invokes the API's container and one the workers' instance groups
// act as, each with its folder roles (written out in the plan), each egg's
// runner identity (yandexRunnerIdentities), Lockbox secrets for the runner
// tokens and the servers' secrets (made empty, never deleted), the
// serverless YDB database (never deleted), the API as a Serverless
// Container (request-driven: it listens on the $PORT the platform gives
// it) whose revision runs the image as its service account, each Temporal
// worker as an instance group on the Container-Optimized Image (always on:
// see yandexWorkers), the auth function of api_gateway.auth when it names
// tokens (see yandexAuth), and an API gateway whose OpenAPI spec sends
// every request to the API container, those of /api/ through the auth
// function (see gatewaySpec).
//
// No Message Queue queue and no timer trigger is made: the store's outbox
// keeps what the API accepts while Temporal is unreachable, and Temporal
// Schedules run UglyFox and the jobs; fly warns about
// the queue and triggers blocks that still ask for them.
func YandexDesired(n *fly.Nest, folder string) ([]Resource, error) {
	mg := &n.MotherGoose
	if mg.Cloud != fly.CloudYandex {
		return nil, fmt.Errorf("mothergoose.cloud is %q, not yandex", mg.Cloud)
	}
	if folder == "" {
		return nil, errors.New("no Yandex Cloud folder: set folder_id in provider \"yandex\"")
	}
	dep := DeploymentName(n)
	labelSet := map[string]string{TagDeployment: dep}
	var out []Resource
	keys := []string{"api", "mothergoose-worker", "uglyfox-worker", "invoker", "instance-groups"}
	for _, key := range keys {
		sa := YCServiceAccount + "." + key
		out = append(out,
			Resource{Type: YCServiceAccount, Name: key, Props: ServiceAccountProps{
				Name: dep + "-" + key, FolderID: folder, Description: "gosling " + dep + ": " + key,
			}},
			Resource{Type: YCFolderBinding, Name: key, Props: FolderBindingProps{
				FolderID: folder, ServiceAccountID: Ref(sa, "id"), Roles: ycRoles[key],
			}},
		)
	}
	// Lockbox names secrets by ID, which only exists once a secret is made:
	// deploy makes them empty and prints their IDs for the Nest's URIs
	// (runner_tokens, yc-lockbox://<id>/<key>).
	for _, sec := range []struct{ key, purpose string }{
		{"runner-tokens", "runner tokens, one entry per runner (mothergoose.secrets.lockbox.runner_tokens)"},
		{"servers", "the servers' secrets: GitLab tokens, webhook secrets, API tokens"},
	} {
		out = append(out, Resource{Type: YCSecret, Name: sec.key, Props: LockboxSecretProps{
			Name: dep + "-" + sec.key, FolderID: folder, Description: "gosling " + dep + ": " + sec.purpose, Labels: labelSet,
		}})
	}
	out = append(out, yandexRunnerIdentities(n, folder, labelSet)...)
	if mg.Database.Engine == "ydb" {
		out = append(out, Resource{Type: YCDatabase, Name: "store", Props: DatabaseProps{
			Name: dep + "-store", FolderID: folder, Serverless: true, Labels: labelSet,
		}})
	}
	ct := mg.Containers.API
	if ct.Image == "" {
		return nil, fmt.Errorf("mothergoose.containers.api: no image: set image = \"cr.yandex/<registry>/gosling:<version>\"")
	}
	cores, fraction := ycCores(ct.CPU)
	out = append(out, Resource{Type: YCContainer, Name: "api", Props: ContainerProps{
		Name: dep + "-api", FolderID: folder, Labels: labelSet,
		Revision: &ContainerRevision{
			// No --addr: gosling server listens on the $PORT the platform sets.
			Image: ct.Image, Args: YandexAPICommand, Memory: int64(ct.Memory), Cores: int64(cores), CoreFraction: int64(fraction),
			Concurrency: int64(ct.Concurrency), TimeoutSeconds: int64(ct.Timeout.D().Seconds()), MinInstances: int64(ct.MinInstances),
			ServiceAccountID: Ref(YCServiceAccount+".api", "id"),
			Environment:      map[string]string{"GOSLING_NEST": "/nest"},
		},
	}, DependsOn: []string{YCFolderBinding + ".api"}})
	workers, err := yandexWorkers(mg, dep, folder, labelSet)
	if err != nil {
		return nil, err
	}
	out = append(out, workers...)
	authRes, err := yandexAuth(n, folder, labelSet)
	if err != nil {
		return nil, err
	}
	out = append(out, authRes...)
	spec, description := gatewaySpec(n, dep)
	gwDeps := []string{YCFolderBinding + ".invoker"}
	if len(authRes) > 0 {
		gwDeps = append(gwDeps, YCFunctionBinding+".auth")
	}
	out = append(out, Resource{Type: YCGateway, Name: "api", Props: GatewayProps{
		Name: dep, FolderID: folder, Labels: labelSet, Description: description, OpenAPISpec: spec,
	}, DependsOn: gwDeps})
	return out, nil
}

// YandexAPICommand is the API container's gosling arguments: no --addr,
// so it listens on the $PORT Serverless Containers set.
var YandexAPICommand = []string{"server"}

// ycCores turns vCPUs into Serverless Containers' cores and core fraction
// (percent of a core guaranteed).
func ycCores(cpu float64) (cores, fraction int) {
	if cpu >= 1 {
		return int(math.Ceil(cpu)), 100
	}
	return 1, int(math.Ceil(cpu * 100))
}

// YandexProvider reads and changes a deployment's Yandex Cloud resources
// through the Yandex Cloud Go SDK (connections, IAM tokens, endpoints) and
// go-genproto's service clients.
type YandexProvider struct {
	Deployment string
	FolderID   string
	sdk        *ycsdk.SDK
	poll       time.Duration
	ymq        *sqs.Client
	ymqConfig  func(context.Context) (*aws.Config, error)
}

// NewYandexProvider connects to Yandex Cloud as o says.
func NewYandexProvider(ctx context.Context, deployment string, n *fly.Nest, o YandexOptions) (*YandexProvider, error) {
	creds, err := yandexauth.Credentials(o.Auth)
	if err != nil {
		return nil, err
	}
	sdk, err := yandexauth.BuildSDK(ctx, o.Auth, creds)
	if err != nil {
		return nil, err
	}
	folder := o.FolderID
	if folder == "" {
		folder = YandexFolder(n)
	}
	poll := o.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	p := &YandexProvider{Deployment: deployment, FolderID: folder, sdk: sdk, poll: poll}
	p.ymqConfig = func(ctx context.Context) (*aws.Config, error) {
		if o.MessageQueue != nil {
			return o.MessageQueue, nil
		}
		cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion("ru-central1"), awsconfig.WithBaseEndpoint(YMQEndpoint))
		if err != nil {
			return nil, fmt.Errorf("load the static access key for Message Queue: %w", err)
		}
		return &cfg, nil
	}
	return p, nil
}

// queues reaches Message Queue through the SQS API, configured on first use.
func (p *YandexProvider) queues(ctx context.Context) (sqsQueues, error) {
	if p.ymq == nil {
		cfg, err := p.ymqConfig(ctx)
		if err != nil {
			return sqsQueues{}, err
		}
		p.ymq = sqs.NewFromConfig(*cfg)
	}
	return sqsQueues{client: p.ymq, deployment: p.Deployment, typ: YCQueue}, nil
}

// Close releases the SDK's connections.
func (p *YandexProvider) Close(ctx context.Context) error { return p.sdk.Shutdown(ctx) }

// Types implements Provider.
func (p *YandexProvider) Types() []string { return yandexTypes }

// conn is the SDK's connection to a gRPC service (it adds IAM tokens).
func (p *YandexProvider) conn(ctx context.Context, service protoreflect.FullName) (grpc.ClientConnInterface, error) {
	return p.sdk.GetConnection(ctx, service)
}

const (
	ycSAService        = protoreflect.FullName("yandex.cloud.iam.v1.ServiceAccountService")
	ycFolderService    = protoreflect.FullName("yandex.cloud.resourcemanager.v1.FolderService")
	ycContainerService = protoreflect.FullName("yandex.cloud.serverless.containers.v1.ContainerService")
	ycDatabaseService  = protoreflect.FullName("yandex.cloud.ydb.v1.DatabaseService")
	ycSecretService    = protoreflect.FullName("yandex.cloud.lockbox.v1.SecretService")
	ycPayloadService   = protoreflect.FullName("yandex.cloud.lockbox.v1.PayloadService")
	ycOperationService = protoreflect.FullName("yandex.cloud.operation.OperationService")
	ycTriggerService   = protoreflect.FullName("yandex.cloud.serverless.triggers.v1.TriggerService")
	ycGatewayService   = protoreflect.FullName("yandex.cloud.serverless.apigateway.v1.ApiGatewayService")
)

// wait follows a long-running operation, as a call returns it, to its end
// and returns its error: p.wait(ctx)(client.Create(ctx, req)).
func (p *YandexProvider) wait(ctx context.Context) func(*operation.Operation, error) (*operation.Operation, error) {
	return func(op *operation.Operation, err error) (*operation.Operation, error) { return p.follow(ctx, op, err) }
}

func (p *YandexProvider) follow(ctx context.Context, op *operation.Operation, err error) (*operation.Operation, error) {
	if err != nil {
		return nil, err
	}
	for !op.GetDone() {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(p.poll):
		}
		c, err := p.conn(ctx, ycOperationService)
		if err != nil {
			return nil, err
		}
		if op, err = operation.NewOperationServiceClient(c).Get(ctx, &operation.GetOperationRequest{OperationId: op.GetId()}); err != nil {
			return nil, err
		}
	}
	if e := op.GetError(); e != nil {
		return nil, status.ErrorProto(e)
	}
	return op, nil
}

// Read implements Provider.
func (p *YandexProvider) Read(ctx context.Context, hints []Resource) ([]Resource, error) {
	sas, err := p.readServiceAccounts(ctx)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(sas)
	bindings, err := p.readBindings(ctx, sas)
	if err != nil {
		return nil, err
	}
	out = append(out, bindings...)
	dbs, err := p.readDatabases(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, dbs...)
	secrets, err := p.readSecrets(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, secrets...)
	if slices.ContainsFunc(hints, func(h Resource) bool { return h.Type == YCQueue }) {
		q, err := p.queues(ctx)
		if err != nil {
			return nil, err
		}
		qs, err := q.read(ctx, hints)
		if err != nil {
			return nil, err
		}
		out = append(out, qs...)
	}
	cs, err := p.readContainers(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, cs...)
	igs, err := p.readInstanceGroups(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, igs...)
	auth, err := p.readAuth(ctx, sas, hints)
	if err != nil {
		return nil, err
	}
	out = append(out, auth...)
	runners, err := p.readRunnerBindings(ctx, sas, secrets, hints)
	if err != nil {
		return nil, err
	}
	out = append(out, runners...)
	ts, err := p.readTriggers(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, ts...)
	gs, err := p.readGateways(ctx)
	if err != nil {
		return nil, err
	}
	return append(out, gs...), nil
}

func (p *YandexProvider) readSecrets(ctx context.Context) ([]Resource, error) {
	c, err := p.conn(ctx, ycSecretService)
	if err != nil {
		return nil, err
	}
	var out []Resource
	for sec, err := range pages(ctx, func(ctx context.Context, token string) ([]*lockbox.Secret, string, error) {
		resp, err := lockbox.NewSecretServiceClient(c).List(ctx, &lockbox.ListSecretsRequest{FolderId: p.FolderID, PageSize: 1000, PageToken: token})
		return resp.GetSecrets(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the Lockbox secrets of folder %s: %w", p.FolderID, err)
		}
		if sec.GetLabels()[TagDeployment] != p.Deployment {
			continue
		}
		out = append(out, Resource{Type: YCSecret, Name: strings.TrimPrefix(sec.GetName(), p.Deployment+"-"), Props: LockboxSecretProps{
			Name: sec.GetName(), FolderID: sec.GetFolderId(), Description: sec.GetDescription(), Labels: nonNilMap(sec.GetLabels()),
		}, ID: sec.GetId(), Outputs: map[string]string{"id": sec.GetId()}, Retain: true})
	}
	return out, nil
}

func (p *YandexProvider) putSecret(ctx context.Context, before, r *Resource) error {
	c, err := p.conn(ctx, ycSecretService)
	if err != nil {
		return err
	}
	cl := lockbox.NewSecretServiceClient(c)
	want := as[LockboxSecretProps](*r)
	labels := nonNilMap(want.Labels)
	if before != nil {
		_, err := p.wait(ctx)(cl.Update(ctx, &lockbox.UpdateSecretRequest{
			SecretId: before.ID, Name: want.Name, Description: want.Description, Labels: labels,
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "description", "labels"}},
		}))
		return err
	}
	// No version: the secret is made empty, and no value passes through a
	// plan or the journal.
	op, err := p.wait(ctx)(cl.Create(ctx, &lockbox.CreateSecretRequest{
		FolderId: want.FolderID, Name: want.Name, Description: want.Description, Labels: labels,
		CreateVersion: wrapperspb.Bool(false),
	}))
	if err != nil {
		return err
	}
	var sec lockbox.Secret
	if err := op.GetResponse().UnmarshalTo(&sec); err != nil {
		return fmt.Errorf("read the operation's response: %w", err)
	}
	r.ID, r.Outputs, r.Retain = sec.GetId(), map[string]string{"id": sec.GetId()}, true
	return nil
}

func (p *YandexProvider) readTriggers(ctx context.Context) ([]Resource, error) {
	c, err := p.conn(ctx, ycTriggerService)
	if err != nil {
		return nil, err
	}
	var out []Resource
	for t, err := range pages(ctx, func(ctx context.Context, token string) ([]*triggers.Trigger, string, error) {
		resp, err := triggers.NewTriggerServiceClient(c).List(ctx, &triggers.ListTriggersRequest{FolderId: p.FolderID, PageSize: 1000, PageToken: token})
		return resp.GetTriggers(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the triggers of folder %s: %w", p.FolderID, err)
		}
		if t.GetLabels()[TagDeployment] != p.Deployment {
			continue
		}
		timer := t.GetRule().GetTimer()
		inv := timer.GetInvokeContainerWithRetry()
		out = append(out, Resource{Type: YCTrigger, Name: strings.TrimPrefix(t.GetName(), p.Deployment+"-"), Props: TriggerProps{
			Name: t.GetName(), FolderID: t.GetFolderId(), Labels: nonNilMap(t.GetLabels()), Cron: timer.GetCronExpression(),
			Payload: timer.GetPayload(), ContainerID: inv.GetContainerId(), Path: inv.GetPath(), ServiceAccountID: inv.GetServiceAccountId(),
		}, ID: t.GetId(), Outputs: map[string]string{"id": t.GetId()}})
	}
	return out, nil
}

func (p *YandexProvider) readGateways(ctx context.Context) ([]Resource, error) {
	c, err := p.conn(ctx, ycGatewayService)
	if err != nil {
		return nil, err
	}
	cl := apigw.NewApiGatewayServiceClient(c)
	var out []Resource
	for g, err := range pages(ctx, func(ctx context.Context, token string) ([]*apigw.ApiGateway, string, error) {
		resp, err := cl.List(ctx, &apigw.ListApiGatewayRequest{FolderId: p.FolderID, PageSize: 1000, PageToken: token})
		return resp.GetApiGateways(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the API gateways of folder %s: %w", p.FolderID, err)
		}
		if g.GetLabels()[TagDeployment] != p.Deployment {
			continue
		}
		spec, err := cl.GetOpenapiSpec(ctx, &apigw.GetOpenapiSpecRequest{ApiGatewayId: g.GetId()})
		if err != nil {
			return nil, fmt.Errorf("read the OpenAPI spec of API gateway %s: %w", g.GetName(), err)
		}
		// Yandex may hand the spec back as YAML; JSON is YAML too.
		var doc any
		if err := yaml.Unmarshal([]byte(spec.GetOpenapiSpec()), &doc); err != nil {
			return nil, fmt.Errorf("API gateway %s: its OpenAPI spec does not parse: %w", g.GetName(), err)
		}
		docJSON, err := json.Marshal(doc)
		if err != nil {
			return nil, fmt.Errorf("API gateway %s: its OpenAPI spec is not JSON: %w", g.GetName(), err)
		}
		out = append(out, Resource{Type: YCGateway, Name: "api", Props: GatewayProps{
			Name: g.GetName(), FolderID: g.GetFolderId(), Labels: nonNilMap(g.GetLabels()), Description: g.GetDescription(), OpenAPISpec: docJSON,
		}, ID: g.GetId(), Outputs: map[string]string{"id": g.GetId(), "domain": g.GetDomain()}})
	}
	return out, nil
}

func (p *YandexProvider) timerRule(t TriggerProps) *triggers.Trigger_Rule {
	return &triggers.Trigger_Rule{Rule: &triggers.Trigger_Rule_Timer{Timer: &triggers.Trigger_Timer{
		CronExpression: t.Cron, Payload: t.Payload,
		Action: &triggers.Trigger_Timer_InvokeContainerWithRetry{InvokeContainerWithRetry: &triggers.InvokeContainerWithRetry{
			ContainerId: t.ContainerID, Path: t.Path, ServiceAccountId: t.ServiceAccountID,
			RetrySettings: &triggers.RetrySettings{RetryAttempts: 1, Interval: durationpb.New(10 * time.Second)},
		}},
	}}}
}

func (p *YandexProvider) putTrigger(ctx context.Context, before, r *Resource) error {
	c, err := p.conn(ctx, ycTriggerService)
	if err != nil {
		return err
	}
	cl := triggers.NewTriggerServiceClient(c)
	want := as[TriggerProps](*r)
	labels := nonNilMap(want.Labels)
	if before != nil {
		_, err := p.wait(ctx)(cl.Update(ctx, &triggers.UpdateTriggerRequest{
			TriggerId: before.ID, Name: want.Name, Labels: labels, Rule: p.timerRule(want),
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "labels", "rule"}},
		}))
		return err
	}
	op, err := p.wait(ctx)(cl.Create(ctx, &triggers.CreateTriggerRequest{FolderId: want.FolderID, Name: want.Name, Labels: labels, Rule: p.timerRule(want)}))
	if err != nil {
		return err
	}
	var t triggers.Trigger
	if err := op.GetResponse().UnmarshalTo(&t); err != nil {
		return fmt.Errorf("read the operation's response: %w", err)
	}
	r.ID, r.Outputs = t.GetId(), map[string]string{"id": t.GetId()}
	return nil
}

func (p *YandexProvider) putGateway(ctx context.Context, before, r *Resource) error {
	c, err := p.conn(ctx, ycGatewayService)
	if err != nil {
		return err
	}
	cl := apigw.NewApiGatewayServiceClient(c)
	want := as[GatewayProps](*r)
	labels := nonNilMap(want.Labels)
	spec := string(want.OpenAPISpec)
	if before != nil {
		_, err := p.wait(ctx)(cl.Update(ctx, &apigw.UpdateApiGatewayRequest{
			ApiGatewayId: before.ID, Name: want.Name, Labels: labels, Description: want.Description,
			Spec:       &apigw.UpdateApiGatewayRequest_OpenapiSpec{OpenapiSpec: spec},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "labels", "description", "openapi_spec"}},
		}))
		return err
	}
	op, err := p.wait(ctx)(cl.Create(ctx, &apigw.CreateApiGatewayRequest{
		FolderId: want.FolderID, Name: want.Name, Labels: labels, Description: want.Description,
		Spec: &apigw.CreateApiGatewayRequest_OpenapiSpec{OpenapiSpec: spec},
	}))
	if err != nil {
		return err
	}
	var g apigw.ApiGateway
	if err := op.GetResponse().UnmarshalTo(&g); err != nil {
		return fmt.Errorf("read the operation's response: %w", err)
	}
	r.ID, r.Outputs = g.GetId(), map[string]string{"id": g.GetId(), "domain": g.GetDomain()}
	return nil
}

func (p *YandexProvider) readServiceAccounts(ctx context.Context) ([]Resource, error) {
	c, err := p.conn(ctx, ycSAService)
	if err != nil {
		return nil, err
	}
	var out []Resource
	prefix := p.Deployment + "-"
	for sa, err := range pages(ctx, func(ctx context.Context, token string) ([]*iam.ServiceAccount, string, error) {
		resp, err := iam.NewServiceAccountServiceClient(c).List(ctx, &iam.ListServiceAccountsRequest{FolderId: p.FolderID, PageSize: 1000, PageToken: token})
		return resp.GetServiceAccounts(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return nil, fmt.Errorf("list service accounts of folder %s: %w", p.FolderID, err)
		}
		key, ok := strings.CutPrefix(sa.GetName(), prefix)
		if !ok || !strings.HasPrefix(sa.GetDescription(), "gosling "+p.Deployment+": ") {
			continue
		}
		out = append(out, Resource{Type: YCServiceAccount, Name: key, Props: ServiceAccountProps{
			Name: sa.GetName(), FolderID: sa.GetFolderId(), Description: sa.GetDescription(),
		}, ID: sa.GetId(), Outputs: map[string]string{"id": sa.GetId()}})
	}
	return out, nil
}

func (p *YandexProvider) readBindings(ctx context.Context, sas []Resource) ([]Resource, error) {
	if len(sas) == 0 {
		return nil, nil
	}
	c, err := p.conn(ctx, ycFolderService)
	if err != nil {
		return nil, err
	}
	byID := map[string]string{}
	for _, sa := range sas {
		byID[sa.ID] = sa.Name
	}
	roles := map[string][]string{}
	for b, err := range pages(ctx, func(ctx context.Context, token string) ([]*access.AccessBinding, string, error) {
		resp, err := rm.NewFolderServiceClient(c).ListAccessBindings(ctx, &access.ListAccessBindingsRequest{ResourceId: p.FolderID, PageSize: 1000, PageToken: token})
		return resp.GetAccessBindings(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the access bindings of folder %s: %w", p.FolderID, err)
		}
		if s := b.GetSubject(); s.GetType() == "serviceAccount" && byID[s.GetId()] != "" {
			roles[s.GetId()] = append(roles[s.GetId()], b.GetRoleId())
		}
	}
	var out []Resource
	for id, rs := range roles {
		slices.Sort(rs)
		out = append(out, Resource{Type: YCFolderBinding, Name: byID[id], Props: FolderBindingProps{
			FolderID: p.FolderID, ServiceAccountID: id, Roles: rs,
		}, ID: p.FolderID + "/" + id, Outputs: map[string]string{}})
	}
	return out, nil
}

func (p *YandexProvider) readDatabases(ctx context.Context) ([]Resource, error) {
	c, err := p.conn(ctx, ycDatabaseService)
	if err != nil {
		return nil, err
	}
	var out []Resource
	for d, err := range pages(ctx, func(ctx context.Context, token string) ([]*ydb.Database, string, error) {
		resp, err := ydb.NewDatabaseServiceClient(c).List(ctx, &ydb.ListDatabasesRequest{FolderId: p.FolderID, PageSize: 1000, PageToken: token})
		return resp.GetDatabases(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the YDB databases of folder %s: %w", p.FolderID, err)
		}
		if d.GetLabels()[TagDeployment] != p.Deployment {
			continue
		}
		out = append(out, Resource{Type: YCDatabase, Name: "store", Props: DatabaseProps{
			Name: d.GetName(), FolderID: d.GetFolderId(), Serverless: d.GetServerlessDatabase() != nil, Labels: nonNilMap(d.GetLabels()),
		}, ID: d.GetId(), Outputs: map[string]string{"id": d.GetId(), "endpoint": d.GetEndpoint(), "document_api_endpoint": d.GetDocumentApiEndpoint()}, Retain: true})
	}
	return out, nil
}

func (p *YandexProvider) readContainers(ctx context.Context) ([]Resource, error) {
	c, err := p.conn(ctx, ycContainerService)
	if err != nil {
		return nil, err
	}
	cl := containers.NewContainerServiceClient(c)
	var out []Resource
	for ct, err := range pages(ctx, func(ctx context.Context, token string) ([]*containers.Container, string, error) {
		resp, err := cl.List(ctx, &containers.ListContainersRequest{FolderId: p.FolderID, PageSize: 1000, PageToken: token})
		return resp.GetContainers(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the serverless containers of folder %s: %w", p.FolderID, err)
		}
		if ct.GetLabels()[TagDeployment] != p.Deployment {
			continue
		}
		props := ContainerProps{Name: ct.GetName(), FolderID: ct.GetFolderId(), Labels: nonNilMap(ct.GetLabels())}
		revs, err := cl.ListRevisions(ctx, &containers.ListContainersRevisionsRequest{Id: &containers.ListContainersRevisionsRequest_ContainerId{ContainerId: ct.GetId()}, PageSize: 1})
		if err != nil {
			return nil, fmt.Errorf("list the revisions of container %s: %w", ct.GetName(), err)
		}
		if rs := revs.GetRevisions(); len(rs) > 0 {
			props.Revision = revisionProps(rs[0])
		}
		out = append(out, Resource{Type: YCContainer, Name: strings.TrimPrefix(ct.GetName(), p.Deployment+"-"), Props: props,
			ID: ct.GetId(), Outputs: map[string]string{"id": ct.GetId(), "url": ct.GetUrl()}})
	}
	return out, nil
}

func revisionProps(r *containers.Revision) *ContainerRevision {
	return &ContainerRevision{
		Image: r.GetImage().GetImageUrl(), Args: r.GetImage().GetArgs().GetArgs(), Memory: r.GetResources().GetMemory(),
		Cores: r.GetResources().GetCores(), CoreFraction: r.GetResources().GetCoreFraction(), Concurrency: r.GetConcurrency(),
		TimeoutSeconds: r.GetExecutionTimeout().GetSeconds(), MinInstances: r.GetProvisionPolicy().GetMinInstances(),
		ServiceAccountID: r.GetServiceAccountId(), Environment: nonNilMap(r.GetImage().GetEnvironment()),
	}
}

// Create implements Provider.
// A create that fails after its first call made the object (a container
// whose first revision is refused) deletes it again, so that nothing the
// journal does not know of is left.
func (p *YandexProvider) Create(ctx context.Context, r Resource) (Resource, error) {
	if err := p.put(ctx, nil, &r); err != nil {
		if r.ID != "" && !slices.Contains([]string{YCFolderBinding, YCSecretBinding, YCFunctionBinding}, r.Type) {
			if derr := p.Delete(context.WithoutCancel(ctx), r); derr != nil {
				err = errors.Join(err, fmt.Errorf("and removing what it made failed: %w", derr))
			}
		}
		return r, fmt.Errorf("create %s: %w", r.Address(), err)
	}
	return r, nil
}

// Update implements Provider.
func (p *YandexProvider) Update(ctx context.Context, before, after Resource) (Resource, error) {
	after.ID, after.Outputs = before.ID, before.Outputs
	if err := p.put(ctx, &before, &after); err != nil {
		return after, fmt.Errorf("update %s: %w", after.Address(), err)
	}
	return after, nil
}

func (p *YandexProvider) put(ctx context.Context, before, r *Resource) error {
	switch r.Type {
	case YCServiceAccount:
		return p.putServiceAccount(ctx, before, r)
	case YCFolderBinding, YCSecretBinding, YCFunctionBinding:
		return p.putBinding(ctx, before, r)
	case YCFunction:
		return p.putFunction(ctx, before, r)
	case YCDatabase:
		return p.putDatabase(ctx, before, r)
	case YCContainer:
		return p.putContainer(ctx, before, r)
	case YCInstanceGroup:
		return p.putInstanceGroup(ctx, before, r)
	case YCSecret:
		return p.putSecret(ctx, before, r)
	case YCQueue:
		q, err := p.queues(ctx)
		if err != nil {
			return err
		}
		if err := q.put(ctx, before, *r); err != nil {
			return err
		}
		got, err := q.read(ctx, []Resource{*r})
		if err != nil || len(got) == 0 {
			return errors.Join(err, fmt.Errorf("queue %s was not found right after it was written", as[QueueProps](*r).Name))
		}
		r.ID, r.Outputs = got[0].ID, got[0].Outputs
		return nil
	case YCTrigger:
		return p.putTrigger(ctx, before, r)
	case YCGateway:
		return p.putGateway(ctx, before, r)
	}
	return fmt.Errorf("unknown type %s", r.Type)
}

func (p *YandexProvider) putServiceAccount(ctx context.Context, before, r *Resource) error {
	c, err := p.conn(ctx, ycSAService)
	if err != nil {
		return err
	}
	cl := iam.NewServiceAccountServiceClient(c)
	want := as[ServiceAccountProps](*r)
	if before != nil {
		_, err := p.wait(ctx)(cl.Update(ctx, &iam.UpdateServiceAccountRequest{ServiceAccountId: before.ID, Description: want.Description, Name: want.Name}))
		return err
	}
	op, err := p.wait(ctx)(cl.Create(ctx, &iam.CreateServiceAccountRequest{FolderId: want.FolderID, Name: want.Name, Description: want.Description}))
	if err != nil {
		return err
	}
	var md iam.CreateServiceAccountMetadata
	if err := op.GetMetadata().UnmarshalTo(&md); err != nil {
		return fmt.Errorf("read the operation's metadata: %w", err)
	}
	r.ID, r.Outputs = md.GetServiceAccountId(), map[string]string{"id": md.GetServiceAccountId()}
	return nil
}

// updateBindings adds and removes roles of the service account saID on the
// resource (folder, secret or function) that bindings of type typ are on.
func (p *YandexProvider) updateBindings(ctx context.Context, typ, resource, saID string, add, remove []string) error {
	var deltas []*access.AccessBindingDelta
	for _, list := range []struct {
		roles  []string
		action access.AccessBindingAction
	}{{add, access.AccessBindingAction_ADD}, {remove, access.AccessBindingAction_REMOVE}} {
		for _, role := range list.roles {
			deltas = append(deltas, &access.AccessBindingDelta{Action: list.action, AccessBinding: &access.AccessBinding{
				RoleId: role, Subject: &access.Subject{Id: saID, Type: "serviceAccount"},
			}})
		}
	}
	if len(deltas) == 0 {
		return nil
	}
	cl, err := p.bindingClient(ctx, typ)
	if err != nil {
		return err
	}
	_, err = p.wait(ctx)(cl.UpdateAccessBindings(ctx, &access.UpdateAccessBindingsRequest{ResourceId: resource, AccessBindingDeltas: deltas}))
	return err
}

func (p *YandexProvider) putBinding(ctx context.Context, before, r *Resource) error {
	b := r.Props.(binding)
	want := b.roles()
	var have []string
	if before != nil {
		had := before.Props.(binding)
		have = had.roles()
		// Another account or another resource (a function made anew):
		// the old roles go first; a resource already gone took them along.
		if had.account() != b.account() || had.target() != b.target() {
			err := p.updateBindings(ctx, before.Type, had.target(), had.account(), nil, have)
			if err != nil && status.Code(err) != codes.NotFound {
				return err
			}
			have = nil
		}
	}
	var add, remove []string
	for _, role := range want {
		if !slices.Contains(have, role) {
			add = append(add, role)
		}
	}
	for _, role := range have {
		if !slices.Contains(want, role) {
			remove = append(remove, role)
		}
	}
	r.ID = b.target() + "/" + b.account()
	r.Outputs = map[string]string{}
	return p.updateBindings(ctx, r.Type, b.target(), b.account(), add, remove)
}

func (p *YandexProvider) putDatabase(ctx context.Context, before, r *Resource) error {
	c, err := p.conn(ctx, ycDatabaseService)
	if err != nil {
		return err
	}
	cl := ydb.NewDatabaseServiceClient(c)
	want := as[DatabaseProps](*r)
	labels := nonNilMap(want.Labels)
	if before != nil {
		_, err := p.wait(ctx)(cl.Update(ctx, &ydb.UpdateDatabaseRequest{DatabaseId: before.ID, Name: want.Name, Labels: labels}))
		return err
	}
	op, err := p.wait(ctx)(cl.Create(ctx, &ydb.CreateDatabaseRequest{
		FolderId: want.FolderID, Name: want.Name, Labels: labels,
		DatabaseType: &ydb.CreateDatabaseRequest_ServerlessDatabase{ServerlessDatabase: &ydb.ServerlessDatabase{}},
	}))
	if err != nil {
		return err
	}
	var d ydb.Database
	if err := op.GetResponse().UnmarshalTo(&d); err != nil {
		return fmt.Errorf("read the operation's response: %w", err)
	}
	r.ID, r.Retain = d.GetId(), true
	r.Outputs = map[string]string{"id": d.GetId(), "endpoint": d.GetEndpoint(), "document_api_endpoint": d.GetDocumentApiEndpoint()}
	return nil
}

func (p *YandexProvider) putContainer(ctx context.Context, before, r *Resource) error {
	c, err := p.conn(ctx, ycContainerService)
	if err != nil {
		return err
	}
	cl := containers.NewContainerServiceClient(c)
	want := as[ContainerProps](*r)
	labels := nonNilMap(want.Labels)
	var had ContainerProps
	if before == nil {
		op, err := p.wait(ctx)(cl.Create(ctx, &containers.CreateContainerRequest{FolderId: want.FolderID, Name: want.Name, Labels: labels}))
		if err != nil {
			return err
		}
		var ct containers.Container
		if err := op.GetResponse().UnmarshalTo(&ct); err != nil {
			return fmt.Errorf("read the operation's response: %w", err)
		}
		r.ID, r.Outputs = ct.GetId(), map[string]string{"id": ct.GetId(), "url": ct.GetUrl()}
	} else if had = as[ContainerProps](*before); !maps.Equal(had.Labels, want.Labels) {
		if _, err := p.wait(ctx)(cl.Update(ctx, &containers.UpdateContainerRequest{ContainerId: r.ID, Labels: labels})); err != nil {
			return err
		}
	}
	if before != nil && jsonString(had.Revision) == jsonString(want.Revision) {
		return nil
	}
	// A change of the revision is a new revision, as with Fargate's task
	// definitions.
	var rev ContainerRevision
	if want.Revision != nil {
		rev = *want.Revision
	}
	_, err = p.wait(ctx)(cl.DeployRevision(ctx, &containers.DeployContainerRevisionRequest{
		ContainerId: r.ID, Description: "gosling deploy",
		ImageSpec:        &containers.ImageSpec{ImageUrl: rev.Image, Args: &containers.Args{Args: rev.Args}, Environment: nonNilMap(rev.Environment)},
		Resources:        &containers.Resources{Memory: rev.Memory, Cores: rev.Cores, CoreFraction: rev.CoreFraction},
		ExecutionTimeout: durationpb.New(time.Duration(rev.TimeoutSeconds) * time.Second), Concurrency: rev.Concurrency,
		ServiceAccountId: rev.ServiceAccountID, ProvisionPolicy: &containers.ProvisionPolicy{MinInstances: rev.MinInstances},
	}))
	return err
}

// Delete implements Provider.
func (p *YandexProvider) Delete(ctx context.Context, r Resource) error {
	var err error
	switch r.Type {
	case YCServiceAccount:
		var c grpc.ClientConnInterface
		if c, err = p.conn(ctx, ycSAService); err == nil {
			_, err = p.wait(ctx)(iam.NewServiceAccountServiceClient(c).Delete(ctx, &iam.DeleteServiceAccountRequest{ServiceAccountId: r.ID}))
		}
	case YCFolderBinding, YCSecretBinding, YCFunctionBinding:
		b := r.Props.(binding)
		err = p.updateBindings(ctx, r.Type, b.target(), b.account(), nil, b.roles())
	case YCFunction:
		var c grpc.ClientConnInterface
		if c, err = p.conn(ctx, ycFunctionService); err == nil {
			_, err = p.wait(ctx)(functions.NewFunctionServiceClient(c).Delete(ctx, &functions.DeleteFunctionRequest{FunctionId: r.ID}))
		}
	case YCDatabase, YCSecret:
		err = fmt.Errorf("%s is retained: delete it by hand", r.Address())
	case YCContainer:
		var c grpc.ClientConnInterface
		if c, err = p.conn(ctx, ycContainerService); err == nil {
			_, err = p.wait(ctx)(containers.NewContainerServiceClient(c).Delete(ctx, &containers.DeleteContainerRequest{ContainerId: r.ID}))
		}
	case YCInstanceGroup:
		err = p.deleteInstanceGroup(ctx, r)
	case YCQueue:
		var q sqsQueues
		if q, err = p.queues(ctx); err == nil {
			err = q.delete(ctx, r)
		}
	case YCTrigger:
		var c grpc.ClientConnInterface
		if c, err = p.conn(ctx, ycTriggerService); err == nil {
			_, err = p.wait(ctx)(triggers.NewTriggerServiceClient(c).Delete(ctx, &triggers.DeleteTriggerRequest{TriggerId: r.ID}))
		}
	case YCGateway:
		var c grpc.ClientConnInterface
		if c, err = p.conn(ctx, ycGatewayService); err == nil {
			_, err = p.wait(ctx)(apigw.NewApiGatewayServiceClient(c).Delete(ctx, &apigw.DeleteApiGatewayRequest{ApiGatewayId: r.ID}))
		}
	default:
		err = fmt.Errorf("unknown type %s", r.Type)
	}
	if status.Code(err) == codes.NotFound {
		err = nil // already gone
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", r.Address(), err)
	}
	return nil
}

// YandexJournalSecret is the name of the Lockbox secret that keeps a
// deployment's journal.
func YandexJournalSecret(deployment string) string { return deployment + "-deploy-journal" }

// lockboxBlob keeps the journal as the binary entry "journal" of a Lockbox
// secret; each write adds a version.
type lockboxBlob struct{ p *YandexProvider }

// NewYandexJournal keeps the deployment's journal in Lockbox
// (YandexJournalSecret, in the deployment's folder), made on first write.
func (p *YandexProvider) NewYandexJournal() Journal { return BlobJournal{lockboxBlob{p}} }

func (b lockboxBlob) Where() string {
	return "yc-lockbox secret " + YandexJournalSecret(b.p.Deployment) + " in folder " + b.p.FolderID
}

func (b lockboxBlob) find(ctx context.Context) (string, error) {
	c, err := b.p.conn(ctx, ycSecretService)
	if err != nil {
		return "", err
	}
	for s, err := range pages(ctx, func(ctx context.Context, token string) ([]*lockbox.Secret, string, error) {
		resp, err := lockbox.NewSecretServiceClient(c).List(ctx, &lockbox.ListSecretsRequest{FolderId: b.p.FolderID, PageSize: 1000, PageToken: token})
		return resp.GetSecrets(), resp.GetNextPageToken(), err
	}) {
		if err != nil {
			return "", fmt.Errorf("list the Lockbox secrets of folder %s: %w", b.p.FolderID, err)
		}
		if s.GetName() == YandexJournalSecret(b.p.Deployment) {
			return s.GetId(), nil
		}
	}
	return "", nil
}

func (b lockboxBlob) Load(ctx context.Context) ([]byte, error) {
	id, err := b.find(ctx)
	if err != nil || id == "" {
		return nil, err
	}
	c, err := b.p.conn(ctx, ycPayloadService)
	if err != nil {
		return nil, err
	}
	pl, err := lockbox.NewPayloadServiceClient(c).Get(ctx, &lockbox.GetPayloadRequest{SecretId: id})
	if err != nil {
		return nil, fmt.Errorf("read the journal secret %s: %w", id, err)
	}
	for _, e := range pl.GetEntries() {
		if e.GetKey() == "journal" {
			return e.GetBinaryValue(), nil
		}
	}
	return nil, nil
}

func (b lockboxBlob) Save(ctx context.Context, doc []byte) error {
	id, err := b.find(ctx)
	if err != nil {
		return err
	}
	c, err := b.p.conn(ctx, ycSecretService)
	if err != nil {
		return err
	}
	cl := lockbox.NewSecretServiceClient(c)
	entry := []*lockbox.PayloadEntryChange{{Key: "journal", Value: &lockbox.PayloadEntryChange_BinaryValue{BinaryValue: doc}}}
	if id == "" {
		_, err = b.p.wait(ctx)(cl.Create(ctx, &lockbox.CreateSecretRequest{
			FolderId: b.p.FolderID, Name: YandexJournalSecret(b.p.Deployment), Labels: map[string]string{TagJournal: b.p.Deployment},
			Description: "gosling deploy journal: every change of each deploy, with its previous value", VersionPayloadEntries: entry,
		}))
		return err
	}
	_, err = b.p.wait(ctx)(cl.AddVersion(ctx, &lockbox.AddVersionRequest{SecretId: id, PayloadEntries: entry}))
	return err
}
