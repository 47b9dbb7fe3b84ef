package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewayv2"
	"github.com/aws/aws-sdk-go-v2/service/applicationautoscaling"
	aastypes "github.com/aws/aws-sdk-go-v2/service/applicationautoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	cwltypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	schedtypes "github.com/aws/aws-sdk-go-v2/service/scheduler/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// AWSEndpoints override the endpoint of single services (test servers,
// VPC endpoints), keyed by the SDK's service ID in lower case: iam, sts,
// sqs, ecs, cloudwatch logs, secrets manager, dynamodb, scheduler,
// apigatewayv2, lambda, servicediscovery, application auto scaling, ec2.
type AWSEndpoints map[string]string

// AWSProvider reads and changes a deployment's AWS resources through
// aws-sdk-go-v2. Its credentials are the SDK's standard chain (environment,
// shared config and profiles, role_arn assumption, container and instance
// metadata), loaded by the caller into the aws.Config.
type AWSProvider struct {
	Deployment string
	iam        *iam.Client
	sts        *sts.Client
	sqs        *sqs.Client
	ecs        *ecs.Client
	logs       *cloudwatchlogs.Client
	sm         *secretsmanager.Client
	ddb        *dynamodb.Client
	sched      *scheduler.Client
	gw         *apigatewayv2.Client
	lambda     *lambda.Client
	sd         *servicediscovery.Client
	scaling    *applicationautoscaling.Client
	ec2        *ec2.Client

	// retryDelay spaces the retries of a call AWS refused for a reason
	// that passes (an IAM role not yet propagated, an update in progress).
	retryDelay time.Duration

	acctMu sync.Mutex
	acct   *AWSAccount
}

// policyName is the one inline policy each role has.
const policyName = "gosling"

// NewAWSProvider builds the service clients over cfg.
func NewAWSProvider(cfg aws.Config, deployment string, endpoints AWSEndpoints) *AWSProvider {
	ep := func(service string) *string {
		if u, ok := endpoints[service]; ok {
			return aws.String(u)
		}
		return cfg.BaseEndpoint
	}
	return &AWSProvider{
		Deployment: deployment,
		retryDelay: 5 * time.Second,
		iam:        iam.NewFromConfig(cfg, func(o *iam.Options) { o.BaseEndpoint = ep("iam") }),
		sts:        sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = ep("sts") }),
		sqs:        sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = ep("sqs") }),
		ecs:        ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = ep("ecs") }),
		logs:       cloudwatchlogs.NewFromConfig(cfg, func(o *cloudwatchlogs.Options) { o.BaseEndpoint = ep("cloudwatch logs") }),
		sm:         secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) { o.BaseEndpoint = ep("secrets manager") }),
		ddb:        dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = ep("dynamodb") }),
		sched:      scheduler.NewFromConfig(cfg, func(o *scheduler.Options) { o.BaseEndpoint = ep("scheduler") }),
		gw:         apigatewayv2.NewFromConfig(cfg, func(o *apigatewayv2.Options) { o.BaseEndpoint = ep("apigatewayv2") }),
		lambda:     lambda.NewFromConfig(cfg, func(o *lambda.Options) { o.BaseEndpoint = ep("lambda") }),
		sd:         servicediscovery.NewFromConfig(cfg, func(o *servicediscovery.Options) { o.BaseEndpoint = ep("servicediscovery") }),
		scaling: applicationautoscaling.NewFromConfig(cfg, func(o *applicationautoscaling.Options) {
			o.BaseEndpoint = ep("application auto scaling")
		}),
		ec2: ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = ep("ec2") }),
	}
}

// Account asks STS who the credentials are (GetCallerIdentity) and returns
// the account and partition ARNs are built from.
func (p *AWSProvider) Account(ctx context.Context, region string) (AWSAccount, error) {
	out, err := p.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		err = fmt.Errorf("ask STS who the AWS credentials are: %w", err)
		if awsCredentialsFailed(err) {
			return AWSAccount{}, &CredentialsError{Cloud: "aws", Err: err,
				Hint: "set AWS_PROFILE (a profile may assume a role_arn), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance or task role"}
		}
		return AWSAccount{}, err
	}
	part := "aws"
	if arn := aws.ToString(out.Arn); strings.HasPrefix(arn, "arn:") {
		part = strings.SplitN(arn, ":", 3)[1]
	}
	return AWSAccount{ID: aws.ToString(out.Account), Region: region, Partition: part}, nil
}

// Types implements Provider.
func (p *AWSProvider) Types() []string { return awsTypes }

func (p *AWSProvider) path() string { return "/gosling/" + p.Deployment + "/" }

func (p *AWSProvider) queues() sqsQueues {
	return sqsQueues{client: p.sqs, deployment: p.Deployment, typ: AWSQueue}
}

// apiCode is the AWS error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func hintNames(hints []Resource, typ string) map[string]string {
	out := map[string]string{}
	for _, h := range hints {
		if h.Type == typ {
			if n := propsName(h.Props); n != "" {
				out[n] = h.Name
			}
		}
	}
	return out
}

// readers read every type of the provider, each its family.
func (p *AWSProvider) readers() []func(context.Context, []Resource) ([]Resource, error) {
	return []func(context.Context, []Resource) ([]Resource, error){
		p.readRoles, p.readLogGroups, p.readSecrets, p.readTables, p.queues().read, p.readSecurityGroups, p.readDiscovery, p.readECS,
		p.readScaling, p.readFunctions, p.readGateway, p.readDomains, p.readSchedules,
	}
}

// Read implements Provider.
func (p *AWSProvider) Read(ctx context.Context, hints []Resource) ([]Resource, error) {
	var out []Resource
	for _, read := range p.readers() {
		got, err := read(ctx, hints)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	markScaledServices(out)
	return out, nil
}

// Create implements Provider.
func (p *AWSProvider) Create(ctx context.Context, r Resource) (Resource, error) {
	var err error
	switch r.Type {
	case AWSRole:
		err = p.putRole(ctx, nil, r)
	case AWSLogGroup:
		err = p.putLogGroup(ctx, nil, r)
	case AWSSecret:
		err = p.putSecret(ctx, nil, r)
	case AWSTable:
		err = p.putTable(ctx, nil, r)
	case AWSQueue:
		err = p.queues().put(ctx, nil, r)
	case AWSCluster:
		err = p.putCluster(ctx, nil, r)
	case AWSService:
		err = p.putService(ctx, nil, r)
	case AWSScalingTarget:
		err = p.putScalingTarget(ctx, nil, r)
	case AWSScalingPolicy:
		err = p.putScalingPolicy(ctx, r)
	case AWSScheduleGroup:
		err = p.putScheduleGroup(ctx, nil, r)
	case AWSSchedule:
		err = p.putSchedule(ctx, nil, r)
	case AWSSecurityGroup:
		err = p.putSecurityGroup(ctx, nil, r)
	case AWSSecurityGroupRule:
		err = p.putSecurityGroupRule(ctx, nil, r)
	case AWSNamespace:
		err = p.putNamespace(ctx, nil, r)
	case AWSDiscoveryService:
		err = p.putDiscoveryService(ctx, nil, r)
	case AWSFunction:
		err = p.putFunction(ctx, nil, r)
	case AWSPermission:
		err = p.putPermission(ctx, nil, r)
	case AWSAPI:
		err = p.putAPI(ctx, nil, r)
	case AWSVPCLink:
		err = p.putVPCLink(ctx, nil, r)
	case AWSIntegration:
		err = p.putIntegration(ctx, nil, r)
	case AWSAuthorizer:
		err = p.putAuthorizer(ctx, nil, r)
	case AWSRoute:
		err = p.putRoute(ctx, nil, r)
	case AWSStage:
		err = p.putStage(ctx, nil, r)
	case AWSDomainName:
		err = p.putDomainName(ctx, nil, r)
	case AWSAPIMapping:
		err = p.putAPIMapping(ctx, nil, r)
	default:
		err = fmt.Errorf("unknown type %s", r.Type)
	}
	if err != nil {
		return r, fmt.Errorf("create %s: %w", r.Address(), err)
	}
	return p.reread(ctx, r)
}

// Update implements Provider.
func (p *AWSProvider) Update(ctx context.Context, before, after Resource) (Resource, error) {
	var err error
	switch after.Type {
	case AWSRole:
		err = p.putRole(ctx, &before, after)
	case AWSLogGroup:
		err = p.putLogGroup(ctx, &before, after)
	case AWSSecret:
		err = p.putSecret(ctx, &before, after)
	case AWSTable:
		err = p.putTable(ctx, &before, after)
	case AWSQueue:
		err = p.queues().put(ctx, &before, after)
	case AWSCluster:
		err = p.putCluster(ctx, &before, after)
	case AWSService:
		err = p.putService(ctx, &before, after)
	case AWSScalingTarget:
		err = p.putScalingTarget(ctx, &before, after)
	case AWSScalingPolicy:
		err = p.putScalingPolicy(ctx, after)
	case AWSScheduleGroup:
		err = p.putScheduleGroup(ctx, &before, after)
	case AWSSchedule:
		err = p.putSchedule(ctx, &before, after)
	case AWSSecurityGroup:
		err = p.putSecurityGroup(ctx, &before, after)
	case AWSSecurityGroupRule:
		err = p.putSecurityGroupRule(ctx, &before, after)
	case AWSNamespace:
		err = p.putNamespace(ctx, &before, after)
	case AWSDiscoveryService:
		err = p.putDiscoveryService(ctx, &before, after)
	case AWSFunction:
		err = p.putFunction(ctx, &before, after)
	case AWSPermission:
		err = p.putPermission(ctx, &before, after)
	case AWSAPI:
		err = p.putAPI(ctx, &before, after)
	case AWSVPCLink:
		err = p.putVPCLink(ctx, &before, after)
	case AWSIntegration:
		err = p.putIntegration(ctx, &before, after)
	case AWSAuthorizer:
		err = p.putAuthorizer(ctx, &before, after)
	case AWSRoute:
		err = p.putRoute(ctx, &before, after)
	case AWSStage:
		err = p.putStage(ctx, &before, after)
	case AWSDomainName:
		err = p.putDomainName(ctx, &before, after)
	case AWSAPIMapping:
		err = p.putAPIMapping(ctx, &before, after)
	default:
		err = fmt.Errorf("unknown type %s", after.Type)
	}
	if err != nil {
		return after, fmt.Errorf("update %s: %w", after.Address(), err)
	}
	return p.reread(ctx, after)
}

// reread reads r back for its ID and outputs, with the reader of its
// type's family alone (a role by its name): reading the whole deployment
// after every change cost a deploy of the AWS Nest some 2,200 calls.
// A service is read with the scaling targets, which say whether its
// desired count is the scaler's (markScaledServices), as Read does.
func (p *AWSProvider) reread(ctx context.Context, r Resource) (Resource, error) {
	var got []Resource
	if r.Type == AWSRole {
		role, err := p.readRole(ctx, as[RoleProps](r).Name)
		if err != nil {
			return r, err
		}
		got = append(got, role)
	} else {
		readers := p.readersOf(r.Type)
		if readers == nil {
			return r, fmt.Errorf("%s: no reader for type %s", r.Address(), r.Type)
		}
		for _, read := range readers {
			rs, err := read(ctx, []Resource{r})
			if err != nil {
				return r, err
			}
			got = append(got, rs...)
		}
		markScaledServices(got)
	}
	for _, g := range got {
		if g.Address() == r.Address() {
			return g, nil
		}
	}
	return r, fmt.Errorf("%s was not found right after it was written", r.Address())
}

// readersOf are the readers that find resources of typ: those of Read
// that read its family.
func (p *AWSProvider) readersOf(typ string) []func(context.Context, []Resource) ([]Resource, error) {
	switch typ {
	case AWSRole:
		return []func(context.Context, []Resource) ([]Resource, error){p.readRoles}
	case AWSLogGroup:
		return []func(context.Context, []Resource) ([]Resource, error){p.readLogGroups}
	case AWSSecret:
		return []func(context.Context, []Resource) ([]Resource, error){p.readSecrets}
	case AWSTable:
		return []func(context.Context, []Resource) ([]Resource, error){p.readTables}
	case AWSQueue:
		return []func(context.Context, []Resource) ([]Resource, error){p.queues().read}
	case AWSSecurityGroup, AWSSecurityGroupRule:
		return []func(context.Context, []Resource) ([]Resource, error){p.readSecurityGroups}
	case AWSNamespace, AWSDiscoveryService:
		return []func(context.Context, []Resource) ([]Resource, error){p.readDiscovery}
	case AWSCluster:
		return []func(context.Context, []Resource) ([]Resource, error){p.readECS}
	case AWSService:
		return []func(context.Context, []Resource) ([]Resource, error){p.readECS, p.readScaling}
	case AWSScalingTarget, AWSScalingPolicy:
		return []func(context.Context, []Resource) ([]Resource, error){p.readScaling}
	case AWSFunction, AWSPermission:
		return []func(context.Context, []Resource) ([]Resource, error){p.readFunctions}
	case AWSAPI, AWSVPCLink, AWSIntegration, AWSAuthorizer, AWSRoute, AWSStage:
		return []func(context.Context, []Resource) ([]Resource, error){p.readGateway}
	case AWSDomainName, AWSAPIMapping:
		return []func(context.Context, []Resource) ([]Resource, error){p.readDomains}
	case AWSScheduleGroup, AWSSchedule:
		return []func(context.Context, []Resource) ([]Resource, error){p.readSchedules}
	}
	return nil
}

// Delete implements Provider.
func (p *AWSProvider) Delete(ctx context.Context, r Resource) error {
	name := propsName(r.Props)
	var err error
	switch r.Type {
	case AWSRole:
		err = p.deleteRole(ctx, r)
	case AWSLogGroup:
		_, err = p.logs.DeleteLogGroup(ctx, &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: &name})
	case AWSSecret, AWSTable:
		err = fmt.Errorf("%s is retained: delete it by hand", r.Address())
	case AWSQueue:
		err = p.queues().delete(ctx, r)
	case AWSCluster:
		_, err = p.ecs.DeleteCluster(ctx, &ecs.DeleteClusterInput{Cluster: &name})
	case AWSService:
		err = p.deleteService(ctx, r)
	case AWSScalingTarget:
		t := as[ScalingTargetProps](r)
		_, err = p.scaling.DeregisterScalableTarget(ctx, &applicationautoscaling.DeregisterScalableTargetInput{
			ServiceNamespace: aastypes.ServiceNamespace(t.ServiceNamespace), ResourceId: aws.String(t.ResourceID),
			ScalableDimension: aastypes.ScalableDimension(t.ScalableDimension),
		})
	case AWSScalingPolicy:
		err = p.deleteScalingPolicy(ctx, r)
	case AWSScheduleGroup:
		_, err = p.sched.DeleteScheduleGroup(ctx, &scheduler.DeleteScheduleGroupInput{Name: &name})
	case AWSSchedule:
		group := as[ScheduleProps](r).Group
		_, err = p.sched.DeleteSchedule(ctx, &scheduler.DeleteScheduleInput{Name: &name, GroupName: &group})
	case AWSSecurityGroup:
		err = p.deleteSecurityGroup(ctx, r.ID)
	case AWSSecurityGroupRule:
		err = p.revokeSecurityGroupRule(ctx, r)
	case AWSNamespace:
		err = p.deleteNamespace(ctx, r)
	case AWSDiscoveryService:
		_, err = p.sd.DeleteService(ctx, &servicediscovery.DeleteServiceInput{Id: aws.String(r.ID)})
	case AWSFunction:
		_, err = p.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: &name})
	case AWSPermission:
		err = p.deletePermission(ctx, r)
	case AWSAPI, AWSVPCLink, AWSIntegration, AWSAuthorizer, AWSRoute, AWSStage:
		err = p.deleteGatewayResource(ctx, r)
	case AWSDomainName:
		err = p.deleteDomainName(ctx, as[DomainNameProps](r).DomainName)
	case AWSAPIMapping:
		err = p.deleteAPIMapping(ctx, r)
	default:
		err = fmt.Errorf("unknown type %s", r.Type)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", r.Address(), err)
	}
	return nil
}

// ---- IAM roles ----

func (p *AWSProvider) readRoles(ctx context.Context, _ []Resource) ([]Resource, error) {
	var out []Resource
	pg := iam.NewListRolesPaginator(p.iam, &iam.ListRolesInput{PathPrefix: aws.String(p.path())})
	for r, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *iam.ListRolesOutput) []iamtypes.Role { return o.Roles }) {
		if err != nil {
			return nil, fmt.Errorf("list IAM roles under %s: %w", p.path(), err)
		}
		res, err := p.readRole(ctx, aws.ToString(r.RoleName))
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, nil
}

// decodePolicy reads a policy document as IAM returns it (URL-encoded).
// Elements outside IAM's grammar are refused rather than dropped, so a
// document changed by hand never reads as the desired one.
func decodePolicy(doc string) (PolicyDocument, error) {
	if s, err := url.QueryUnescape(doc); err == nil {
		doc = s
	}
	var d PolicyDocument
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("policy document: %w", err)
	}
	if d.Statement == nil {
		d.Statement = []PolicyStatement{}
	}
	return d, nil
}

func (p *AWSProvider) readRole(ctx context.Context, name string) (Resource, error) {
	got, err := p.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: &name})
	if err != nil {
		return Resource{}, fmt.Errorf("get IAM role %s: %w", name, err)
	}
	role := got.Role
	trust, err := decodePolicy(aws.ToString(role.AssumeRolePolicyDocument))
	if err != nil {
		return Resource{}, fmt.Errorf("IAM role %s: %w", name, err)
	}
	props := RoleProps{
		Name: name, Path: aws.ToString(role.Path), Description: aws.ToString(role.Description),
		AssumeRolePolicy: trust, Tags: iamTags(role.Tags),
	}
	pol, err := p.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: &name, PolicyName: aws.String(policyName)})
	switch {
	case apiCode(err) == "NoSuchEntity":
	case err != nil:
		return Resource{}, fmt.Errorf("get the policy of IAM role %s: %w", name, err)
	default:
		doc, err := decodePolicy(aws.ToString(pol.PolicyDocument))
		if err != nil {
			return Resource{}, fmt.Errorf("IAM role %s: %w", name, err)
		}
		props.Policy = &doc
	}
	ips, err := p.iam.ListInstanceProfilesForRole(ctx, &iam.ListInstanceProfilesForRoleInput{RoleName: &name})
	if err != nil {
		return Resource{}, fmt.Errorf("list instance profiles of IAM role %s: %w", name, err)
	}
	outputs := map[string]string{"arn": aws.ToString(role.Arn)}
	for _, ip := range ips.InstanceProfiles {
		if aws.ToString(ip.InstanceProfileName) == name {
			props.InstanceProfile = true
			outputs["instance_profile_arn"] = aws.ToString(ip.Arn)
		}
	}
	return Resource{Type: AWSRole, Name: strings.TrimPrefix(name, p.Deployment+"-"), Props: props, ID: aws.ToString(role.Arn), Outputs: outputs}, nil
}

func iamTags(tags []iamtypes.Tag) map[string]string {
	out := map[string]string{}
	for _, t := range tags {
		out[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// nonNil is l, or an empty list for none, so a list read back compares
// equal to a desired empty one.
func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func (p *AWSProvider) putRole(ctx context.Context, before *Resource, r Resource) error {
	want := as[RoleProps](r)
	name := want.Name
	trust := jsonString(want.AssumeRolePolicy)
	var had RoleProps
	if before == nil {
		var tags []iamtypes.Tag
		for k, v := range want.Tags {
			tags = append(tags, iamtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		if _, err := p.iam.CreateRole(ctx, &iam.CreateRoleInput{
			RoleName: &name, Path: aws.String(want.Path), Description: aws.String(want.Description),
			AssumeRolePolicyDocument: &trust, Tags: tags,
		}); err != nil {
			return err
		}
		// The role exists now: a later step that fails removes it again.
		made := RoleProps{AssumeRolePolicy: want.AssumeRolePolicy, Description: want.Description}
		if err := p.putRole(ctx, &Resource{Type: AWSRole, Name: r.Name, Props: made}, r); err != nil {
			return errors.Join(err, p.deleteRole(context.WithoutCancel(ctx), r))
		}
		return nil
	} else {
		had = as[RoleProps](*before)
		if jsonString(had.AssumeRolePolicy) != trust {
			if _, err := p.iam.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: &name, PolicyDocument: &trust}); err != nil {
				return err
			}
		}
		if had.Description != want.Description {
			if _, err := p.iam.UpdateRole(ctx, &iam.UpdateRoleInput{RoleName: &name, Description: aws.String(want.Description)}); err != nil {
				return err
			}
		}
	}
	if pol := want.Policy; pol != nil && (had.Policy == nil || jsonString(had.Policy) != jsonString(pol)) {
		if _, err := p.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: &name, PolicyName: aws.String(policyName), PolicyDocument: aws.String(jsonString(pol))}); err != nil {
			return err
		}
	}
	switch {
	case want.InstanceProfile && !had.InstanceProfile:
		if _, err := p.iam.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: &name, Path: aws.String(want.Path)}); err != nil && apiCode(err) != "EntityAlreadyExists" {
			return err
		}
		if _, err := p.iam.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: &name, RoleName: &name}); err != nil {
			return err
		}
	case had.InstanceProfile && !want.InstanceProfile:
		return p.dropInstanceProfile(ctx, name)
	}
	return nil
}

func (p *AWSProvider) dropInstanceProfile(ctx context.Context, name string) error {
	if _, err := p.iam.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: &name, RoleName: &name}); err != nil && apiCode(err) != "NoSuchEntity" {
		return err
	}
	if _, err := p.iam.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: &name}); err != nil && apiCode(err) != "NoSuchEntity" {
		return err
	}
	return nil
}

func (p *AWSProvider) deleteRole(ctx context.Context, r Resource) error {
	role := as[RoleProps](r)
	name := role.Name
	if role.InstanceProfile {
		if err := p.dropInstanceProfile(ctx, name); err != nil {
			return err
		}
	}
	if _, err := p.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: &name, PolicyName: aws.String(policyName)}); err != nil && apiCode(err) != "NoSuchEntity" {
		return err
	}
	_, err := p.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: &name})
	return err
}

// ---- CloudWatch log groups ----

// readLogGroups reads the log groups under the deployment's path and the
// Lambda functions' (/aws/lambda/<deployment>-...) that carry its tag; a
// function's is named as the desired set names it, else after the
// function.
func (p *AWSProvider) readLogGroups(ctx context.Context, hints []Resource) ([]Resource, error) {
	names := hintNames(hints, AWSLogGroup)
	var out []Resource
	for _, prefix := range []string{p.path(), "/aws/lambda/" + p.Deployment + "-"} {
		pg := cloudwatchlogs.NewDescribeLogGroupsPaginator(p.logs, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: &prefix})
		for g, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *cloudwatchlogs.DescribeLogGroupsOutput) []cwltypes.LogGroup { return o.LogGroups }) {
			if err != nil {
				return nil, fmt.Errorf("list log groups under %s: %w", prefix, err)
			}
			name := aws.ToString(g.LogGroupName)
			arn := strings.TrimSuffix(aws.ToString(g.Arn), ":*")
			tags, err := p.logs.ListTagsForResource(ctx, &cloudwatchlogs.ListTagsForResourceInput{ResourceArn: &arn})
			if err != nil {
				return nil, fmt.Errorf("read the tags of log group %s: %w", name, err)
			}
			rn := strings.TrimPrefix(name, prefix)
			if prefix != p.path() {
				if !tagged(tags.Tags, p.Deployment) {
					continue
				}
				if n, ok := names[name]; ok {
					rn = n
				}
			}
			props := LogGroupProps{Name: name, RetentionInDays: int(aws.ToInt32(g.RetentionInDays)), Tags: nonNilMap(tags.Tags)}
			out = append(out, Resource{Type: AWSLogGroup, Name: rn, Props: props, ID: arn, Outputs: map[string]string{"arn": arn}})
		}
	}
	return out, nil
}

// nonNilMap is m, or an empty map for none, so tags read back compare
// equal to desired empty ones.
func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (p *AWSProvider) putLogGroup(ctx context.Context, before *Resource, r Resource) error {
	want := as[LogGroupProps](r)
	name := want.Name
	var had LogGroupProps
	if before == nil {
		if _, err := p.logs.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: &name, Tags: want.Tags}); err != nil {
			return err
		}
	} else if had = as[LogGroupProps](*before); !maps.Equal(had.Tags, want.Tags) {
		if _, err := p.logs.TagResource(ctx, &cloudwatchlogs.TagResourceInput{ResourceArn: aws.String(before.ID), Tags: want.Tags}); err != nil {
			return err
		}
	}
	if days := want.RetentionInDays; before == nil || had.RetentionInDays != days {
		if _, err := p.logs.PutRetentionPolicy(ctx, &cloudwatchlogs.PutRetentionPolicyInput{LogGroupName: &name, RetentionInDays: aws.Int32(int32(days))}); err != nil {
			return err
		}
	}
	return nil
}

// ---- Secrets Manager ----

func (p *AWSProvider) readSecrets(ctx context.Context, hints []Resource) ([]Resource, error) {
	seen := map[string]bool{}
	var out []Resource
	add := func(name, arn, desc string, tags []smtypes.Tag) {
		if seen[name] {
			return
		}
		seen[name] = true
		t := map[string]string{}
		for _, tg := range tags {
			t[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		props := SecretProps{Name: name, Description: desc, Tags: t}
		out = append(out, Resource{Type: AWSSecret, Name: resourceName(name), Props: props, ID: arn, Outputs: map[string]string{"arn": arn}, Retain: true})
	}
	pg := secretsmanager.NewListSecretsPaginator(p.sm, &secretsmanager.ListSecretsInput{Filters: []smtypes.Filter{
		{Key: smtypes.FilterNameStringTypeTagKey, Values: []string{TagDeployment}},
		{Key: smtypes.FilterNameStringTypeTagValue, Values: []string{p.Deployment}},
	}})
	for s, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *secretsmanager.ListSecretsOutput) []smtypes.SecretListEntry { return o.SecretList }) {
		if err != nil {
			return nil, fmt.Errorf("list the deployment's secrets: %w", err)
		}
		add(aws.ToString(s.Name), aws.ToString(s.ARN), aws.ToString(s.Description), s.Tags)
	}
	// Secrets made by hand carry no tag: look the desired ones up by name.
	for name := range hintNames(hints, AWSSecret) {
		if seen[name] {
			continue
		}
		d, err := p.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)})
		if apiCode(err) == "ResourceNotFoundException" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("describe secret %s: %w", name, err)
		}
		add(aws.ToString(d.Name), aws.ToString(d.ARN), aws.ToString(d.Description), d.Tags)
	}
	return out, nil
}

func (p *AWSProvider) putSecret(ctx context.Context, before *Resource, r Resource) error {
	want := as[SecretProps](r)
	name := want.Name
	var tags []smtypes.Tag
	for k, v := range want.Tags {
		tags = append(tags, smtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if before == nil {
		// No value: the secret is made empty, and its value never passes
		// through a plan or the journal.
		_, err := p.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &name, Description: aws.String(want.Description), Tags: tags})
		return err
	}
	if as[SecretProps](*before).Description != want.Description {
		if _, err := p.sm.UpdateSecret(ctx, &secretsmanager.UpdateSecretInput{SecretId: &name, Description: aws.String(want.Description)}); err != nil {
			return err
		}
	}
	_, err := p.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: &name, Tags: tags})
	return err
}

// ---- DynamoDB ----

func (p *AWSProvider) readTables(ctx context.Context, hints []Resource) ([]Resource, error) {
	var out []Resource
	for name, rn := range hintNames(hints, AWSTable) {
		d, err := p.ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &name})
		if apiCode(err) == "ResourceNotFoundException" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("describe table %s: %w", name, err)
		}
		t := d.Table
		props := TableProps{Name: name, BillingMode: "PROVISIONED"}
		if t.BillingModeSummary != nil {
			props.BillingMode = string(t.BillingModeSummary.BillingMode)
		}
		for _, k := range t.KeySchema {
			if k.KeyType == ddbtypes.KeyTypeHash {
				props.HashKey = aws.ToString(k.AttributeName)
			} else {
				props.RangeKey = aws.ToString(k.AttributeName)
			}
		}
		tags, err := p.ddb.ListTagsOfResource(ctx, &dynamodb.ListTagsOfResourceInput{ResourceArn: t.TableArn})
		if err != nil {
			return nil, fmt.Errorf("read the tags of table %s: %w", name, err)
		}
		props.Tags = map[string]string{}
		for _, tg := range tags.Tags {
			props.Tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		arn := aws.ToString(t.TableArn)
		out = append(out, Resource{Type: AWSTable, Name: rn, Props: props, ID: arn, Outputs: map[string]string{"arn": arn}, Retain: true})
	}
	return out, nil
}

func (p *AWSProvider) putTable(ctx context.Context, before *Resource, r Resource) error {
	want := as[TableProps](r)
	name := want.Name
	var tags []ddbtypes.Tag
	for k, v := range want.Tags {
		tags = append(tags, ddbtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if before != nil {
		had := as[TableProps](*before)
		if had.HashKey != want.HashKey || had.RangeKey != want.RangeKey {
			return fmt.Errorf("table %s exists with another key schema; the store needs (%s, %s): choose another table_prefix", name, want.HashKey, want.RangeKey)
		}
		if had.BillingMode != want.BillingMode {
			if _, err := p.ddb.UpdateTable(ctx, &dynamodb.UpdateTableInput{TableName: &name, BillingMode: ddbtypes.BillingMode(want.BillingMode)}); err != nil {
				return err
			}
		}
		_, err := p.ddb.TagResource(ctx, &dynamodb.TagResourceInput{ResourceArn: aws.String(before.ID), Tags: tags})
		return err
	}
	// The store's own layout (internal/store ensureTable): string keys pk
	// and sk. Made here so that no server role needs dynamodb:CreateTable.
	hash, rng := want.HashKey, want.RangeKey
	_, err := p.ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: &name,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: &hash, AttributeType: ddbtypes.ScalarAttributeTypeS},
			{AttributeName: &rng, AttributeType: ddbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []ddbtypes.KeySchemaElement{
			{AttributeName: &hash, KeyType: ddbtypes.KeyTypeHash},
			{AttributeName: &rng, KeyType: ddbtypes.KeyTypeRange},
		},
		BillingMode: ddbtypes.BillingMode(want.BillingMode),
		Tags:        tags,
	})
	if err != nil {
		return err
	}
	// Tags again on their own: DynamoDB-compatible servers (dynalite, YDB's
	// Document API) may drop CreateTable's.
	d, err := p.ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &name})
	if err != nil {
		return err
	}
	_, err = p.ddb.TagResource(ctx, &dynamodb.TagResourceInput{ResourceArn: d.Table.TableArn, Tags: tags})
	return err
}

// ---- ECS ----

func ecsTags(tags []ecstypes.Tag) map[string]string {
	out := map[string]string{}
	for _, t := range tags {
		out[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}

func toECSTags(m map[string]string) []ecstypes.Tag {
	var out []ecstypes.Tag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, ecstypes.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func (p *AWSProvider) readECS(ctx context.Context, _ []Resource) ([]Resource, error) {
	cl, err := p.ecs.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{p.Deployment}, Include: []ecstypes.ClusterField{ecstypes.ClusterFieldTags}})
	if err != nil {
		return nil, fmt.Errorf("describe ECS cluster %s: %w", p.Deployment, err)
	}
	var out []Resource
	var cluster *ecstypes.Cluster
	for i, c := range cl.Clusters {
		if aws.ToString(c.Status) == "ACTIVE" && aws.ToString(c.ClusterName) == p.Deployment {
			cluster = &cl.Clusters[i]
		}
	}
	if cluster == nil {
		return nil, nil
	}
	arn := aws.ToString(cluster.ClusterArn)
	out = append(out, Resource{Type: AWSCluster, Name: "servers", Props: ClusterProps{Name: p.Deployment, Tags: ecsTags(cluster.Tags)}, ID: arn, Outputs: map[string]string{"arn": arn}})
	var arns []string
	pg := ecs.NewListServicesPaginator(p.ecs, &ecs.ListServicesInput{Cluster: &p.Deployment})
	for it, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *ecs.ListServicesOutput) []string { return o.ServiceArns }) {
		if err != nil {
			return nil, fmt.Errorf("list the services of ECS cluster %s: %w", p.Deployment, err)
		}
		arns = append(arns, it)
	}
	for chunk := range slices.Chunk(arns, 10) {
		ds, err := p.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: &p.Deployment, Services: chunk, Include: []ecstypes.ServiceField{ecstypes.ServiceFieldTags}})
		if err != nil {
			return nil, fmt.Errorf("describe the services of ECS cluster %s: %w", p.Deployment, err)
		}
		for _, s := range ds.Services {
			if aws.ToString(s.Status) != "ACTIVE" {
				continue
			}
			res, err := p.readService(ctx, s)
			if err != nil {
				return nil, err
			}
			out = append(out, res)
		}
	}
	return out, nil
}

func (p *AWSProvider) readService(ctx context.Context, s ecstypes.Service) (Resource, error) {
	name := aws.ToString(s.ServiceName)
	td, err := p.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: s.TaskDefinition})
	if err != nil {
		return Resource{}, fmt.Errorf("describe the task definition of ECS service %s: %w", name, err)
	}
	t := td.TaskDefinition
	task := TaskSpec{Family: aws.ToString(t.Family), TaskRoleARN: aws.ToString(t.TaskRoleArn), ExecutionRoleARN: aws.ToString(t.ExecutionRoleArn)}
	task.CPU, _ = strconv.Atoi(aws.ToString(t.Cpu))
	task.Memory, _ = strconv.Atoi(aws.ToString(t.Memory))
	if len(t.ContainerDefinitions) > 0 {
		c := t.ContainerDefinitions[0]
		task.Image = aws.ToString(c.Image)
		task.Command = c.Command
		task.Environment = map[string]string{}
		for _, kv := range c.Environment {
			task.Environment[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
		}
		if c.LogConfiguration != nil {
			task.LogGroup = c.LogConfiguration.Options["awslogs-group"]
		}
	}
	var subnets, groups []string
	if nc := s.NetworkConfiguration; nc != nil && nc.AwsvpcConfiguration != nil {
		subnets, groups = nc.AwsvpcConfiguration.Subnets, nc.AwsvpcConfiguration.SecurityGroups
	}
	props := ServiceProps{
		Name: name, Cluster: p.Deployment, DesiredCount: int(s.DesiredCount), Task: task,
		Subnets: subnets, SecurityGroups: nonNil(groups), Tags: ecsTags(s.Tags),
	}
	if len(s.ServiceRegistries) > 0 {
		props.ServiceRegistry = aws.ToString(s.ServiceRegistries[0].RegistryArn)
	}
	arn := aws.ToString(s.ServiceArn)
	return Resource{Type: AWSService, Name: strings.TrimPrefix(name, p.Deployment+"-"), Props: props, ID: arn,
		Outputs: map[string]string{"arn": arn, "task_definition_arn": aws.ToString(t.TaskDefinitionArn)}}, nil
}

func (p *AWSProvider) putCluster(ctx context.Context, before *Resource, r Resource) error {
	if before == nil {
		_, err := p.ecs.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(as[ClusterProps](r).Name), Tags: toECSTags(as[ClusterProps](r).Tags)})
		return err
	}
	_, err := p.ecs.TagResource(ctx, &ecs.TagResourceInput{ResourceArn: aws.String(before.ID), Tags: toECSTags(as[ClusterProps](r).Tags)})
	return err
}

func (p *AWSProvider) registerTask(ctx context.Context, r Resource) (string, error) {
	svc := as[ServiceProps](r)
	task := svc.Task
	var env []ecstypes.KeyValuePair
	for _, k := range slices.Sorted(maps.Keys(task.Environment)) {
		env = append(env, ecstypes.KeyValuePair{Name: aws.String(k), Value: aws.String(task.Environment[k])})
	}
	region := p.ecs.Options().Region
	out, err := p.ecs.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(task.Family), RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		NetworkMode: ecstypes.NetworkModeAwsvpc, Cpu: aws.String(strconv.Itoa(task.CPU)), Memory: aws.String(strconv.Itoa(task.Memory)),
		TaskRoleArn: aws.String(task.TaskRoleARN), ExecutionRoleArn: aws.String(task.ExecutionRoleARN),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("gosling"), Image: aws.String(task.Image), Command: task.Command, Essential: aws.Bool(true),
			Environment:  env,
			PortMappings: []ecstypes.PortMapping{{ContainerPort: aws.Int32(8080), Protocol: ecstypes.TransportProtocolTcp}},
			LogConfiguration: &ecstypes.LogConfiguration{LogDriver: ecstypes.LogDriverAwslogs, Options: map[string]string{
				"awslogs-group": task.LogGroup, "awslogs-region": region, "awslogs-stream-prefix": "gosling",
			}},
		}},
		Tags: toECSTags(svc.Tags),
	})
	if err != nil {
		return "", fmt.Errorf("register task definition %s: %w", task.Family, err)
	}
	return aws.ToString(out.TaskDefinition.TaskDefinitionArn), nil
}

func (p *AWSProvider) putService(ctx context.Context, before *Resource, r Resource) error {
	want := as[ServiceProps](r)
	name, cluster := want.Name, want.Cluster
	// Without security groups ECS gives the tasks the VPC's default one.
	network := &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
		Subnets: want.Subnets, SecurityGroups: want.SecurityGroups, AssignPublicIp: ecstypes.AssignPublicIpDisabled,
	}}
	// The API service's tasks register in Cloud Map with the container's
	// port, for the gateway's VPC link integration.
	var registries []ecstypes.ServiceRegistry
	if reg := want.ServiceRegistry; reg != "" {
		registries = []ecstypes.ServiceRegistry{{RegistryArn: &reg, ContainerName: aws.String("gosling"), ContainerPort: aws.Int32(8080)}}
	}
	if before == nil {
		td, err := p.registerTask(ctx, r)
		if err != nil {
			return err
		}
		_, err = p.ecs.CreateService(ctx, &ecs.CreateServiceInput{
			ServiceName: &name, Cluster: &cluster, TaskDefinition: &td, DesiredCount: aws.Int32(int32(want.DesiredCount)),
			LaunchType: ecstypes.LaunchTypeFargate, NetworkConfiguration: network, Tags: toECSTags(want.Tags),
			PropagateTags: ecstypes.PropagateTagsService, ServiceRegistries: registries,
		})
		if err != nil {
			// No service uses the revision just registered.
			_, derr := p.ecs.DeregisterTaskDefinition(context.WithoutCancel(ctx), &ecs.DeregisterTaskDefinitionInput{TaskDefinition: &td})
			return errors.Join(err, derr)
		}
		return nil
	}
	had := as[ServiceProps](*before)
	in := &ecs.UpdateServiceInput{Service: &name, Cluster: &cluster, NetworkConfiguration: network}
	// The count is sent only when it changes: it may be the scaler's.
	if had.DesiredCount != want.DesiredCount {
		in.DesiredCount = aws.Int32(int32(want.DesiredCount))
	}
	if had.ServiceRegistry != want.ServiceRegistry {
		// An empty list removes the registry.
		in.ServiceRegistries = registries
		if in.ServiceRegistries == nil {
			in.ServiceRegistries = []ecstypes.ServiceRegistry{}
		}
	}
	if jsonString(had.Task) != jsonString(want.Task) {
		// Task definitions are immutable: a change is a new revision.
		td, err := p.registerTask(ctx, r)
		if err != nil {
			return err
		}
		in.TaskDefinition = &td
	}
	if _, err := p.ecs.UpdateService(ctx, in); err != nil {
		return err
	}
	if !maps.Equal(had.Tags, want.Tags) {
		_, err := p.ecs.TagResource(ctx, &ecs.TagResourceInput{ResourceArn: aws.String(before.ID), Tags: toECSTags(want.Tags)})
		return err
	}
	return nil
}

func (p *AWSProvider) deleteService(ctx context.Context, r Resource) error {
	name, cluster := as[ServiceProps](r).Name, as[ServiceProps](r).Cluster
	if _, err := p.ecs.DeleteService(ctx, &ecs.DeleteServiceInput{Service: &name, Cluster: &cluster, Force: aws.Bool(true)}); err != nil {
		return err
	}
	if td := r.Outputs["task_definition_arn"]; td != "" {
		if _, err := p.ecs.DeregisterTaskDefinition(ctx, &ecs.DeregisterTaskDefinitionInput{TaskDefinition: &td}); err != nil {
			return err
		}
	}
	return nil
}

// ---- EventBridge Scheduler ----

func (p *AWSProvider) readSchedules(ctx context.Context, _ []Resource) ([]Resource, error) {
	g, err := p.sched.GetScheduleGroup(ctx, &scheduler.GetScheduleGroupInput{Name: &p.Deployment})
	if apiCode(err) == "ResourceNotFoundException" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get schedule group %s: %w", p.Deployment, err)
	}
	tags, err := p.sched.ListTagsForResource(ctx, &scheduler.ListTagsForResourceInput{ResourceArn: g.Arn})
	if err != nil {
		return nil, fmt.Errorf("read the tags of schedule group %s: %w", p.Deployment, err)
	}
	tm := map[string]string{}
	for _, t := range tags.Tags {
		tm[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	out := []Resource{{Type: AWSScheduleGroup, Name: "triggers", Props: ScheduleGroupProps{Name: p.Deployment, Tags: tm}, ID: aws.ToString(g.Arn), Outputs: map[string]string{"arn": aws.ToString(g.Arn)}}}
	pg := scheduler.NewListSchedulesPaginator(p.sched, &scheduler.ListSchedulesInput{GroupName: &p.Deployment})
	for s, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *scheduler.ListSchedulesOutput) []schedtypes.ScheduleSummary { return o.Schedules }) {
		if err != nil {
			return nil, fmt.Errorf("list the schedules of group %s: %w", p.Deployment, err)
		}
		got, err := p.sched.GetSchedule(ctx, &scheduler.GetScheduleInput{Name: s.Name, GroupName: &p.Deployment})
		if err != nil {
			return nil, fmt.Errorf("get schedule %s: %w", aws.ToString(s.Name), err)
		}
		var target ScheduleTarget
		if t := got.Target; t != nil {
			target = ScheduleTarget{ARN: aws.ToString(t.Arn), RoleARN: aws.ToString(t.RoleArn), Input: aws.ToString(t.Input)}
		}
		props := ScheduleProps{
			Name: aws.ToString(got.Name), Group: p.Deployment, Expression: aws.ToString(got.ScheduleExpression),
			Timezone: aws.ToString(got.ScheduleExpressionTimezone), Target: target,
		}
		out = append(out, Resource{Type: AWSSchedule, Name: aws.ToString(got.Name), Props: props, ID: aws.ToString(got.Arn), Outputs: map[string]string{"arn": aws.ToString(got.Arn)}})
	}
	return out, nil
}

func (p *AWSProvider) putScheduleGroup(ctx context.Context, before *Resource, r Resource) error {
	var tags []schedtypes.Tag
	want := as[ScheduleGroupProps](r)
	for k, v := range want.Tags {
		tags = append(tags, schedtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if before == nil {
		_, err := p.sched.CreateScheduleGroup(ctx, &scheduler.CreateScheduleGroupInput{Name: aws.String(want.Name), Tags: tags})
		return err
	}
	_, err := p.sched.TagResource(ctx, &scheduler.TagResourceInput{ResourceArn: aws.String(before.ID), Tags: tags})
	return err
}

func (p *AWSProvider) putSchedule(ctx context.Context, before *Resource, r Resource) error {
	s := as[ScheduleProps](r)
	target := &schedtypes.Target{Arn: aws.String(s.Target.ARN), RoleArn: aws.String(s.Target.RoleARN), Input: aws.String(s.Target.Input)}
	name, group := s.Name, s.Group
	window := &schedtypes.FlexibleTimeWindow{Mode: schedtypes.FlexibleTimeWindowModeOff}
	if before == nil {
		_, err := p.sched.CreateSchedule(ctx, &scheduler.CreateScheduleInput{
			Name: &name, GroupName: &group, ScheduleExpression: aws.String(s.Expression),
			ScheduleExpressionTimezone: aws.String(s.Timezone), Target: target, FlexibleTimeWindow: window,
		})
		return err
	}
	_, err := p.sched.UpdateSchedule(ctx, &scheduler.UpdateScheduleInput{
		Name: &name, GroupName: &group, ScheduleExpression: aws.String(s.Expression),
		ScheduleExpressionTimezone: aws.String(s.Timezone), Target: target, FlexibleTimeWindow: window,
	})
	return err
}

// CredentialsError is a cloud refusing or missing the deployer's
// credentials; the CLI exits with code 4 on it.
type CredentialsError struct {
	// Cloud is "aws" or "yandex".
	Cloud string
	// Hint says where credentials come from.
	Hint string
	Err  error
}

func (e *CredentialsError) Error() string { return e.Err.Error() + " (" + e.Hint + ")" }
func (e *CredentialsError) Unwrap() error { return e.Err }

// awsCredentialsFailed reports whether err is the SDK finding no
// credentials in its chain, or STS refusing them
// (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html).
func awsCredentialsFailed(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch",
			"IncompleteSignature", "MissingAuthenticationToken", "UnrecognizedClientException", "AccessDenied":
			return true
		}
		return false
	}
	// The SDK's credential chain wraps its failure in text only.
	msg := err.Error()
	return strings.Contains(msg, "get credentials") || strings.Contains(msg, "failed to retrieve credentials")
}
