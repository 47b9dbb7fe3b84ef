package bootstrap

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/runnerid"
)

// AWS resource types, in the order they are made.
const (
	AWSRole          = "aws_iam_role"
	AWSLogGroup      = "aws_cloudwatch_log_group"
	AWSSecret        = "aws_secretsmanager_secret"
	AWSTable         = "aws_dynamodb_table"
	AWSQueue         = "aws_sqs_queue"
	AWSCluster       = "aws_ecs_cluster"
	AWSService       = "aws_ecs_service"
	AWSScalingTarget = "aws_appautoscaling_target"
	AWSScalingPolicy = "aws_appautoscaling_policy"
	AWSScheduleGroup = "aws_scheduler_schedule_group"
	AWSSchedule      = "aws_scheduler_schedule"

	AWSSecurityGroup     = "aws_security_group"
	AWSSecurityGroupRule = "aws_security_group_rule"

	AWSNamespace        = "aws_service_discovery_private_dns_namespace"
	AWSDiscoveryService = "aws_service_discovery_service"
	AWSFunction         = "aws_lambda_function"
	AWSPermission       = "aws_lambda_permission"
	AWSAPI              = "aws_apigatewayv2_api"
	AWSVPCLink          = "aws_apigatewayv2_vpc_link"
	AWSIntegration      = "aws_apigatewayv2_integration"
	AWSAuthorizer       = "aws_apigatewayv2_authorizer"
	AWSRoute            = "aws_apigatewayv2_route"
	AWSStage            = "aws_apigatewayv2_stage"
	AWSDomainName       = "aws_apigatewayv2_domain_name"
	AWSAPIMapping       = "aws_apigatewayv2_api_mapping"
)

// awsTypes is the order AWS resources are made in; resources read back
// carry no DependsOn, so deletes run in the reverse of this order (a
// route before its authorizer, the ECS service before its Cloud Map
// service, a Lambda permission before its function, a security group's
// rules before the groups, the services and the VPC link before the
// groups they name). The VPC link comes before the services: a change it
// cannot take (putVPCLink) stops a deploy before any service rolls.
var awsTypes = []string{
	AWSRole, AWSLogGroup, AWSSecret, AWSTable, AWSQueue, AWSSecurityGroup, AWSSecurityGroupRule, AWSNamespace, AWSDiscoveryService, AWSVPCLink, AWSCluster, AWSService,
	AWSScalingTarget, AWSScalingPolicy, AWSFunction, AWSAPI, AWSIntegration, AWSAuthorizer, AWSRoute, AWSStage, AWSDomainName, AWSAPIMapping, AWSPermission,
	AWSScheduleGroup, AWSSchedule,
}

// TagDeployment is the tag (AWS) or label (Yandex) that names the
// deployment a resource belongs to.
const TagDeployment = "gosling-deployment"

// AWSAccount is what the desired set needs to know of the account: ARNs
// are built from it, so policies can name resources before they exist.
type AWSAccount struct {
	ID     string
	Region string
	// Partition is aws, aws-cn or aws-us-gov.
	Partition string
}

func (a AWSAccount) arn(service, resource string) string {
	region := a.Region
	if service == "iam" {
		region = ""
	}
	return fmt.Sprintf("arn:%s:%s:%s:%s:%s", a.Partition, service, region, a.ID, resource)
}

// DeploymentName is the deployment's name: the API gateway's name
// (mothergoose.api_gateway.name), which every resource carries.
func DeploymentName(n *fly.Nest) string { return n.MotherGoose.APIGateway.Name }

// components are the server processes, each with its own role and log
// group: key, container block, gosling command.
var components = []struct {
	key     string
	command []string
}{
	{"api", []string{"server", "--addr", ":8080"}},
	{"mothergoose-worker", []string{"worker", "--queue", "mothergoose"}},
	{"uglyfox-worker", []string{"worker", "--queue", "uglyfox"}},
}

func containerOf(mg *fly.MotherGoose, key string) fly.Container {
	switch key {
	case "api":
		return mg.Containers.API
	case "mothergoose-worker":
		return mg.Containers.Worker
	}
	return mg.Containers.UglyFox
}

// AWSDesired builds the AWS resources of a Nest whose MotherGoose runs on
// AWS: one IAM role per component (least privilege, written out in the
// plan), each egg's runner roles (awsRunnerIdentities), the
// tasks' execution role, CloudWatch log groups, the Secrets Manager secrets
// the Nest names (created empty, never deleted), the store's DynamoDB table
// (never deleted), an ECS cluster
// with one Fargate service per component (scaled between min_instances
// and max_instances by Application Auto Scaling, see awsScaling),
// and, when the aws provider names a vpc_id, the API gateway (awsGateway)
// with the auth function's role and log group, the Cloud Map namespace
// and service the API service registers in, and the security groups of
// the VPC link and the services (awsSecurityGroups).
func AWSDesired(n *fly.Nest, acct AWSAccount) ([]Resource, error) {
	mg := &n.MotherGoose
	if mg.Cloud != fly.CloudAWS {
		return nil, fmt.Errorf("mothergoose.cloud is %q, not aws", mg.Cloud)
	}
	dep := DeploymentName(n)
	tagSet := map[string]string{TagDeployment: dep}
	path := "/gosling/" + dep + "/"
	var out []Resource
	add := func(typ, name string, props Props, deps ...string) {
		out = append(out, Resource{Type: typ, Name: name, Props: props, DependsOn: deps})
	}

	// Names and ARNs everything else refers to.
	table := ""
	if mg.Database.Engine == "dynamodb" {
		table = mg.Database.TablePrefix + "-store"
	}
	logGroup := func(key string) string { return "/gosling/" + dep + "/" + key }
	secretsOf := awsSecrets(n)
	secretARNs := func(names []string) []string {
		var arns []string
		for _, s := range names {
			// Secrets Manager appends six random characters to a secret's ARN.
			arns = append(arns, acct.arn("secretsmanager", "secret:"+s+"-??????"))
		}
		return arns
	}
	// Runner tokens, each egg's under its own prefix (runnerid), and
	// where runners made before that kept theirs.
	runnerTokens := []string{acct.arn("secretsmanager", "secret:"+runnerid.AWSTokensPrefix(dep)+"*"), acct.arn("secretsmanager", "secret:gosling/runners/*")}
	tableARN := acct.arn("dynamodb", "table/"+table)
	storeActions := many("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
		"dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable")
	var runnerRoles []string
	for _, p := range mg.Providers {
		if p.Name == fly.CloudAWS && p.RoleARN != "" {
			runnerRoles = append(runnerRoles, p.RoleARN)
		}
	}
	slices.Sort(runnerRoles)

	// Roles.
	role := func(key, service, purpose string, stmts ...[]*PolicyStatement) {
		pol := policy(slices.Concat(stmts...)...)
		add(AWSRole, key, RoleProps{
			Name: dep + "-" + key, Path: path, Description: purpose,
			AssumeRolePolicy: policy(assumedBy(single(service))), Policy: &pol,
			Tags: tagSet,
		})
	}
	ecsTasks := "ecs-tasks.amazonaws.com"
	var storeStmt *PolicyStatement
	if table != "" {
		storeStmt = allow(storeActions, tableARN)
	}
	assumeRunners := func() *PolicyStatement {
		if len(runnerRoles) == 0 {
			return nil
		}
		return allow(single("sts:AssumeRole"), runnerRoles...)
	}
	readSecrets := func(names []string) *PolicyStatement {
		if len(names) == 0 {
			return nil
		}
		return allow(single("secretsmanager:GetSecretValue"), secretARNs(names)...)
	}
	stmts := func(s ...*PolicyStatement) []*PolicyStatement { return s }
	role("api", ecsTasks, "MotherGoose API: takes webhooks, keeps what Temporal cannot take yet in the store's outbox, reads the store",
		stmts(storeStmt, readSecrets(secretsOf.api)))
	role("mothergoose-worker", ecsTasks, "MotherGoose worker: provisions runners (OpenTofu as the runner role), keeps runner tokens, drains the outbox",
		stmts(storeStmt, readSecrets(secretsOf.worker),
			allow(many("secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret", "secretsmanager:TagResource"), runnerTokens...),
			assumeRunners()), awsWorkerRunnerStatements(n, acct))
	role("uglyfox-worker", ecsTasks, "UglyFox worker: prunes and reconciles runners, rotates their tokens",
		stmts(storeStmt, readSecrets(secretsOf.worker),
			allow(many("secretsmanager:PutSecretValue", "secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"), runnerTokens...),
			assumeRunners()), awsWorkerRunnerStatements(n, acct))
	role("task-execution", ecsTasks, "ECS task execution: pull the images, write the containers' logs",
		stmts(allow(many("ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"), "*"),
			allow(many("logs:CreateLogStream", "logs:PutLogEvents"), acct.arn("logs", "log-group:/gosling/"+dep+"/*:*"))))
	// The gateway exists when the aws provider names the VPC its link
	// reaches the API service in (fly requires vpc_id with api_gateway).
	aws := mg.Providers[fly.CloudAWS]
	gateway := aws.VPCID != ""
	auth := mg.APIGateway.Auth
	authFunction := dep + "-" + auth.Name
	authLogGroup := "/aws/lambda/" + authFunction
	if gateway {
		var tokens []string
		for _, t := range auth.Tokens {
			if u, err := t.Parse(); err == nil && u.Scheme == fly.SchemeAWSSM && !slices.Contains(tokens, u.Path) {
				tokens = append(tokens, u.Path)
			}
		}
		slices.Sort(tokens)
		role("auth", "lambda.amazonaws.com", "Auth function (the gateway's Lambda authorizer): reads the API tokens, writes its own logs",
			stmts(readSecrets(tokens),
				allow(many("logs:CreateLogStream", "logs:PutLogEvents"), acct.arn("logs", "log-group:"+authLogGroup+":*"))))
	}
	// Log groups.
	for _, key := range []string{"api", "mothergoose-worker", "uglyfox-worker", "runners"} {
		add(AWSLogGroup, key, LogGroupProps{Name: logGroup(key), RetentionInDays: 30, Tags: tagSet})
	}
	if gateway {
		// Lambda writes to /aws/lambda/<function>, not under the deployment's path.
		add(AWSLogGroup, "auth", LogGroupProps{Name: authLogGroup, RetentionInDays: 30, Tags: tagSet})
	}

	// Secrets, created empty; their values are set with gosling secrets put.
	for _, s := range secretsOf.all {
		add(AWSSecret, resourceName(s), SecretProps{Name: s, Description: "Gosling " + dep + ": set its value with gosling secrets put", Tags: tagSet})
	}

	if table != "" {
		add(AWSTable, "store", TableProps{Name: table, BillingMode: "PAY_PER_REQUEST", HashKey: "pk", RangeKey: "sk", Tags: tagSet})
	}

	// No SQS queue and no EventBridge schedule: the store's outbox keeps
	// what the API accepts while Temporal is unreachable, and Temporal
	// Schedules run UglyFox and the jobs. An earlier deploy's are read
	// and deleted.

	// The API service's name in Cloud Map, which the gateway's VPC link
	// integration looks up (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-private.html).
	// SRV records carry the port, so the instances ECS registers have
	// AWS_INSTANCE_IPV4 and AWS_INSTANCE_PORT.
	if gateway {
		if len(aws.Subnets) == 0 {
			return nil, fmt.Errorf("mothergoose provider \"aws\": the gateway's VPC link needs subnets: set subnets = [\"subnet-...\"] (those of the API service)")
		}
		add(AWSNamespace, "servers", NamespaceProps{Name: dep + ".internal", VPC: aws.VPCID, Tags: tagSet})
		add(AWSDiscoveryService, "api", DiscoveryServiceProps{
			Name: "api", NamespaceID: Ref(AWSNamespace+".servers", "id"),
			DNSRecords: []DNSRecord{{Type: "SRV", TTL: 10}}, Tags: tagSet,
		})
		awsSecurityGroups(add, dep, aws.VPCID, tagSet)
	}

	// Fargate services.
	add(AWSCluster, "servers", ClusterProps{Name: dep, Tags: tagSet})
	for _, c := range components {
		ct := containerOf(mg, c.key)
		cpu, mem, err := fargateShape(ct.CPU, ct.Memory)
		if err != nil {
			return nil, fmt.Errorf("mothergoose.containers.%s: %w", strings.ReplaceAll(c.key, "-", "_"), err)
		}
		if ct.Image == "" {
			return nil, fmt.Errorf("mothergoose.containers.%s: no image: set image = \"<registry>/gosling:<version>\"", strings.ReplaceAll(c.key, "-", "_"))
		}
		props := ServiceProps{
			Name: dep + "-" + c.key, Cluster: dep, DesiredCount: ct.MinInstances,
			Task: TaskSpec{
				Family: dep + "-" + c.key, Image: ct.Image, Command: c.command, CPU: cpu, Memory: mem,
				TaskRoleARN:      Ref(AWSRole+"."+c.key, "arn"),
				ExecutionRoleARN: Ref(AWSRole+".task-execution", "arn"),
				LogGroup:         logGroup(c.key),
				Environment:      map[string]string{"GOSLING_NEST": "/nest", "AWS_REGION": acct.Region},
			},
			Subnets: aws.Subnets, SecurityGroups: []string{}, Tags: tagSet,
		}
		if gateway {
			props.SecurityGroups = []string{Ref(AWSSecurityGroup+"."+securityGroupOf(c.key), "id")}
		}
		if gateway && c.key == "api" {
			// ECS registers every task of the service in Cloud Map with the
			// container's port (8080, where gosling server listens).
			props.ServiceRegistry = Ref(AWSDiscoveryService+".api", "arn")
		}
		add(AWSService, c.key, props, AWSCluster+".servers", AWSLogGroup+"."+c.key)
		if ct.MaxInstances > ct.MinInstances {
			// The scaler owns the count once the service exists: a deploy
			// that set it back to min_instances would undo its work.
			out[len(out)-1].CreateOnly = []string{"desired_count"}
			awsScaling(add, dep, c.key, ct, tagSet)
		}
	}

	if gateway {
		if err := awsGateway(add, mg, acct, dep, authFunction, tagSet); err != nil {
			return nil, err
		}
	}

	// Each egg's runner identity (identities.go).
	out = append(out, awsRunnerIdentities(n, acct, tagSet)...)
	return out, nil
}

// Service autoscaling defaults: a target tracking policy keeps the
// service's average CPU at ScalingTargetCPU percent, waits
// ScalingScaleInCooldown seconds after a scale-in and
// ScalingScaleOutCooldown seconds after a scale-out before the next one.
const (
	ScalingTargetCPU        = 60
	ScalingScaleInCooldown  = 300
	ScalingScaleOutCooldown = 60
)

// ecsScalableDimension is what Application Auto Scaling changes on an ECS
// service: its desired task count.
const ecsScalableDimension = "ecs:service:DesiredCount"

// ecsScalingResourceID is an ECS service's resource ID in Application
// Auto Scaling: service/<cluster>/<service>.
func ecsScalingResourceID(cluster, service string) string {
	return "service/" + cluster + "/" + service
}

// awsScaling adds what scales a component's ECS service between the
// container's min_instances and max_instances
// (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-autoscaling-targettracking.html):
//
//   - aws_appautoscaling_target: the service's desired count as a
//     scalable target (namespace ecs, dimension ecs:service:DesiredCount,
//     resource ID service/<cluster>/<service>) with min_capacity
//     min_instances and max_capacity max_instances. No role is named:
//     Application Auto Scaling uses its service-linked role for ECS,
//     AWSServiceRoleForApplicationAutoScaling_ECSService, which it makes
//     on the first registration in the account
//     (https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-service-linked-roles.html);
//   - aws_appautoscaling_policy <deployment>-<component>-cpu: target
//     tracking on ECSServiceAverageCPUUtilization at ScalingTargetCPU (60)
//     percent, scale-in cooldown ScalingScaleInCooldown (300 s), scale-out
//     cooldown ScalingScaleOutCooldown (60 s).
//
// The service's desired_count is then set only when the service is made
// (Resource.CreateOnly), as Terraform's aws_ecs_service advises with
// ignore_changes = [desired_count]: a deploy never resets what the scaler
// chose. Raising min_instances still raises the count, because the scaler
// moves a count below a target's new minimum up to it. With
// min_instances = 0 a service with no task has no CPU metric, so the
// policy cannot scale it out again; components that must answer keep
// min_instances at 1 or more.
// The deployer needs application-autoscaling:*, iam:CreateServiceLinkedRole
// and the CloudWatch alarm actions target tracking uses
// (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/auto-scaling-IAM.html).
func awsScaling(add func(typ, name string, props Props, deps ...string), dep, key string, ct fly.Container, tags map[string]string) {
	resourceID := ecsScalingResourceID(dep, dep+"-"+key)
	add(AWSScalingTarget, key, ScalingTargetProps{
		ServiceNamespace: "ecs", ResourceID: resourceID, ScalableDimension: ecsScalableDimension,
		MinCapacity: ct.MinInstances, MaxCapacity: ct.MaxInstances, Tags: tags,
	}, AWSService+"."+key)
	add(AWSScalingPolicy, key, ScalingPolicyProps{
		Name: dep + "-" + key + "-cpu", ServiceNamespace: "ecs", ResourceID: resourceID,
		ScalableDimension: ecsScalableDimension, PolicyType: "TargetTrackingScaling",
		TargetTracking: TargetTracking{
			PredefinedMetric: "ECSServiceAverageCPUUtilization", TargetValue: ScalingTargetCPU,
			ScaleInCooldown: ScalingScaleInCooldown, ScaleOutCooldown: ScalingScaleOutCooldown,
		},
	}, AWSScalingTarget+"."+key)
}

// apiPort is the TCP port gosling server listens on in the API service's
// tasks, which the gateway's VPC link reaches.
const apiPort = 8080

// securityGroupOf is the security group of a component's tasks: api for
// the API service, workers for both workers.
func securityGroupOf(component string) string {
	if component == "api" {
		return "api"
	}
	return "workers"
}

// awsSecurityGroups adds the security groups of the gateway's path to the
// API service, in the aws provider's VPC
// (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html):
//
//   - <deployment>-vpclink, the VPC link's: no ingress (API Gateway's
//     network interfaces only open connections) and egress only to the
//     api group on TCP apiPort (8080), the one place the link sends
//     requests; security groups are stateful, so the answers come back;
//   - <deployment>-api, the API service's tasks: ingress on TCP apiPort
//     only from the vpclink group, egress to anywhere (GitLab, Temporal,
//     the store, Secrets Manager, ECR);
//   - <deployment>-workers, both workers' tasks: no ingress, egress to
//     anywhere.
//
// Each rule is an aws_security_group_rule of its own, as Terraform's
// aws_security_group_rule, because the vpclink and api groups refer to
// each other; a group is made without AWS's default allow-all egress
// rule (the provider revokes it), so egress is only what is written here.
// The deployer needs ec2:CreateSecurityGroup, DescribeSecurityGroups,
// AuthorizeSecurityGroupIngress, AuthorizeSecurityGroupEgress,
// RevokeSecurityGroupIngress, RevokeSecurityGroupEgress,
// DeleteSecurityGroup and CreateTags.
func awsSecurityGroups(add func(typ, name string, props Props, deps ...string), dep, vpc string, tags map[string]string) {
	group := func(key, purpose string) {
		add(AWSSecurityGroup, key, SecurityGroupProps{Name: dep + "-" + key, Description: "Gosling " + dep + ": " + purpose, VPCID: vpc, Tags: tags})
	}
	group("vpclink", "the API gateway's VPC link, to the API service")
	group("api", "the API service's tasks, from the VPC link")
	group("workers", "the workers' tasks, outbound only")
	rule := func(key, kind, protocol string, port int, peerGroup string) {
		props := SecurityGroupRuleProps{
			SecurityGroupID: Ref(AWSSecurityGroup+"."+key, "id"), Type: kind, Protocol: protocol,
			FromPort: port, ToPort: port, CIDRBlocks: []string{},
		}
		peer := "all"
		if peerGroup != "" {
			props.SourceSecurityGroupID, peer = Ref(AWSSecurityGroup+"."+peerGroup, "id"), peerGroup
		} else {
			props.CIDRBlocks = []string{allIPv4}
		}
		add(AWSSecurityGroupRule, ruleName(key, kind, peer), props)
	}
	rule("vpclink", "egress", "tcp", apiPort, "api")
	rule("api", "ingress", "tcp", apiPort, "vpclink")
	rule("api", "egress", allProtocols, 0, "")
	rule("workers", "egress", allProtocols, 0, "")
}

// allIPv4 and allProtocols make a rule to or from anywhere; with all
// protocols a rule has no ports, written 0 as in Terraform.
const (
	allIPv4      = "0.0.0.0/0"
	allProtocols = "-1"
)

// ruleName is a security group rule's resource name:
// <group>-<ingress|egress>-<peer>, the peer being the other group's
// resource name or "all" for 0.0.0.0/0.
func ruleName(group, kind, peer string) string { return group + "-" + kind + "-" + peer }

// awsGateway adds the API Gateway HTTP API in front of the API service:
// the auth function (a Lambda function running `gosling authorizer` from
// the API's image) as a REQUEST authorizer with simple responses
// (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-lambda-authorizer.html),
// the permission that lets API Gateway invoke it, a VPC link (in the
// vpclink security group, awsSecurityGroups) and an
// HTTP_PROXY integration to the API service's Cloud Map service, the
// route ANY /api/{proxy+} behind the authorizer, the $default route
// without it (GitLab webhooks and agents carry their own tokens, which the
// API server checks), and the auto-deployed $default stage.
func awsGateway(add func(typ, name string, props Props, deps ...string), mg *fly.MotherGoose, acct AWSAccount, dep, function string, tags map[string]string) error {
	auth := mg.APIGateway.Auth
	image := mg.Containers.API.Image
	if image == "" {
		return fmt.Errorf("mothergoose.containers.api: no image: the auth function runs the API's image; set image = \"<registry>/gosling:<version>\"")
	}
	var tokens []string
	for i, t := range auth.Tokens {
		// The function's role is its only credential: it can read Secrets
		// Manager, not Vault or Lockbox.
		if u, err := t.Parse(); err != nil || u.Scheme != fly.SchemeAWSSM {
			return fmt.Errorf("mothergoose.api_gateway.auth.tokens[%d]: the auth function reads its tokens from Secrets Manager with its role: write aws-sm://<secret-name>/<key>", i)
		}
		tokens = append(tokens, string(t))
	}
	add(AWSFunction, "auth", FunctionProps{
		Name: function, PackageType: "Image", Image: image, Command: []string{"authorizer"},
		Role: Ref(AWSRole+".auth", "arn"), MemorySize: 128, Timeout: 5,
		// Secret URIs, never values: the function reads them with its role.
		Environment: map[string]string{
			"GOSLING_AUTH_TOKENS":    strings.Join(tokens, ","),
			"GOSLING_AUTH_CACHE_TTL": auth.CacheTTL.D().String(),
		},
		Tags: tags,
	}, AWSLogGroup+".auth")
	add(AWSAPI, "api", APIProps{Name: dep, ProtocolType: "HTTP", Tags: tags})
	functionARN := acct.arn("lambda", "function:"+function)
	add(AWSAuthorizer, "auth", AuthorizerProps{
		APIID: Ref(AWSAPI+".api", "id"), Name: "auth", AuthorizerType: "REQUEST",
		AuthorizerPayloadFormatVersion: "2.0", EnableSimpleResponses: true,
		IdentitySource:               []string{"$request.header.Authorization"},
		AuthorizerResultTTLInSeconds: int(auth.CacheTTL.D().Seconds()),
		AuthorizerURI:                fmt.Sprintf("arn:%s:apigateway:%s:lambda:path/2015-03-31/functions/%s/invocations", acct.Partition, acct.Region, functionARN),
	}, AWSFunction+".auth")
	add(AWSPermission, "auth", PermissionProps{
		FunctionName: function, StatementID: "apigateway-" + dep, Action: "lambda:InvokeFunction",
		Principal: "apigateway.amazonaws.com", SourceARN: Ref(AWSAPI+".api", "execution_arn") + "/*",
	}, AWSFunction+".auth")
	add(AWSVPCLink, "api", VPCLinkProps{
		Name: dep, SubnetIDs: mg.Providers[fly.CloudAWS].Subnets,
		SecurityGroupIDs: []string{Ref(AWSSecurityGroup+".vpclink", "id")}, Tags: tags,
	})
	add(AWSIntegration, "api", IntegrationProps{
		APIID: Ref(AWSAPI+".api", "id"), Description: "api", IntegrationType: "HTTP_PROXY",
		IntegrationMethod: "ANY", ConnectionType: "VPC_LINK", ConnectionID: Ref(AWSVPCLink+".api", "id"),
		IntegrationURI: Ref(AWSDiscoveryService+".api", "arn"), PayloadFormatVersion: "1.0",
	})
	route := func(key, authorizer string) {
		props := RouteProps{
			APIID: Ref(AWSAPI+".api", "id"), RouteKey: key, Target: "integrations/" + Ref(AWSIntegration+".api", "id"),
			AuthorizationType: "NONE",
		}
		if authorizer != "" {
			props.AuthorizationType, props.AuthorizerID = "CUSTOM", Ref(AWSAuthorizer+"."+authorizer, "id")
		}
		add(AWSRoute, routeName(key), props)
	}
	route("ANY /api/{proxy+}", "auth")
	route("$default", "")
	add(AWSStage, "default", StageProps{APIID: Ref(AWSAPI+".api", "id"), Name: "$default", AutoDeploy: true, Tags: tags})
	if d := mg.APIGateway.Domain; d != "" {
		if mg.APIGateway.CertificateARN == "" {
			return fmt.Errorf("mothergoose.api_gateway: domain %s has no certificate: request or import an ACM certificate for it in %s and set certificate_arn", d, acct.Region)
		}
		awsDomain(add, d, mg.APIGateway.CertificateARN, tags)
	}
	return nil
}

// awsDomain adds the gateway's custom domain
// (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-custom-domain-names.html):
//
//   - aws_apigatewayv2_domain_name: the domain, REGIONAL, served with the
//     ACM certificate certificate_arn names (in the deployment's region,
//     which fly checks) under the TLS_1_2 security policy. Its outputs
//     target_domain_name (d-<id>.execute-api.<region>.amazonaws.com) and
//     hosted_zone_id are what the operator's DNS points at: a CNAME to the
//     first, or a Route 53 alias to it in the second;
//   - aws_apigatewayv2_api_mapping: the domain's root (no mapping key) to
//     the HTTP API's $default stage, so https://<domain>/webhooks/gitlab
//     reaches the API service.
//
// Another domain is not a rename: API Gateway keys a domain name by its
// name, so the provider asks for the old one to be deleted by hand.
// The deployer needs apigateway:POST, GET, PATCH and DELETE on
// /domainnames and /domainnames/*/apimappings; the certificate is only
// named, never read through ACM here. DNS is the operator's: deploy
// prints the target to point a CNAME or Route 53 alias at.
func awsDomain(add func(typ, name string, props Props, deps ...string), domain, certificate string, tags map[string]string) {
	add(AWSDomainName, "api", DomainNameProps{
		DomainName: domain, CertificateARN: certificate, EndpointType: "REGIONAL",
		SecurityPolicy: "TLS_1_2", Tags: tags,
	})
	add(AWSAPIMapping, "api", APIMappingProps{
		DomainName: domain, APIID: Ref(AWSAPI+".api", "id"), Stage: "$default",
	}, AWSDomainName+".api", AWSStage+".default")
}

// routeName is a route's resource name: "default" for $default, else the
// method (left out for ANY) and the path's words, such as "api" for
// ANY /api/{proxy+}.
func routeName(key string) string {
	if key == "$default" {
		return "default"
	}
	method, path, _ := strings.Cut(key, " ")
	var words []string
	if method != "ANY" {
		words = append(words, strings.ToLower(method))
	}
	for _, w := range strings.Split(path, "/") {
		if w != "" && !strings.HasPrefix(w, "{") {
			words = append(words, w)
		}
	}
	return resourceName(strings.Join(words, "-"))
}

// resourceName makes a secret name (ci/gitlab) a resource name (ci-gitlab).
func resourceName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, s)
}

// policy is a policy document of stmts, the nil ones left out.
func policy(stmts ...*PolicyStatement) PolicyDocument {
	d := PolicyDocument{Version: "2012-10-17", Statement: []PolicyStatement{}}
	for _, s := range stmts {
		if s != nil {
			d.Statement = append(d.Statement, *s)
		}
	}
	return d
}

// allow allows action on resources (a statement without a Resource
// element when there are none, as a trust policy's).
func allow(action Values, resources ...string) *PolicyStatement {
	s := &PolicyStatement{Effect: "Allow", Action: action}
	if resources != nil {
		s.Resource = many(resources...)
	}
	return s
}

// assumedBy is a trust policy's statement: services may assume the role.
func assumedBy(services Values) *PolicyStatement {
	s := allow(single("sts:AssumeRole"))
	s.Principal = map[string]Values{"Service": services}
	return s
}

// awsSecretSet are the Secrets Manager secrets the Nest names, by who reads
// them.
type awsSecretSet struct{ all, api, worker []string }

func awsSecrets(n *fly.Nest) awsSecretSet {
	var s awsSecretSet
	add := func(list *[]string, ref fly.SecretRef) {
		u, err := ref.Parse()
		if err != nil || u.Scheme != fly.SchemeAWSSM {
			return
		}
		if !slices.Contains(*list, u.Path) {
			*list = append(*list, u.Path)
		}
		if !slices.Contains(s.all, u.Path) {
			s.all = append(s.all, u.Path)
		}
	}
	mg := &n.MotherGoose
	for _, l := range []*[]string{&s.api, &s.worker} {
		add(l, mg.Temporal.APIKey)
		add(l, mg.Nest.Token)
		for _, e := range n.Eggs {
			add(l, e.GitLab.Token)
		}
	}
	for _, t := range mg.APIGateway.Auth.Tokens {
		add(&s.api, t)
	}
	for _, e := range n.Eggs {
		add(&s.api, e.GitLab.WebhookSecret)
		for _, v := range e.Runner.Env {
			add(&s.worker, v.Secret)
		}
	}
	slices.Sort(s.all)
	slices.Sort(s.api)
	slices.Sort(s.worker)
	return s
}

// fargateShape turns vCPUs and memory into Fargate's task cpu units and
// MiB, rounding the CPU up to a size Fargate offers and checking the memory
// against it (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size).
func fargateShape(vcpu float64, memory fly.Size) (cpu, mib int, err error) {
	type size struct{ cpu, min, max, step int }
	sizes := []size{
		{256, 512, 2048, 512}, {512, 1024, 4096, 1024}, {1024, 2048, 8192, 1024}, {2048, 4096, 16384, 1024},
		{4096, 8192, 30720, 1024}, {8192, 16384, 61440, 4096}, {16384, 32768, 122880, 8192},
	}
	units := int(math.Ceil(vcpu * 1024))
	mib = int(int64(memory) / int64(fly.MiB))
	for _, s := range sizes {
		if units > s.cpu {
			continue
		}
		if mib < s.min || mib > s.max || (mib != 512 && mib%s.step != 0) {
			return 0, 0, fmt.Errorf("on Fargate, %g vCPU (%d units) take %d to %d MiB of memory in steps of %d MiB, not %d MiB: change cpu or memory", float64(s.cpu)/1024, s.cpu, s.min, s.max, s.step, mib)
		}
		return s.cpu, mib, nil
	}
	return 0, 0, fmt.Errorf("fargate offers at most 16 vCPU, not %g", vcpu)
}
