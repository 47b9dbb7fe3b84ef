package bootstrap

import (
	"encoding/json"
	"fmt"
)

// The Props of the AWS resource kinds. Field names are Terraform's for
// the same resource (aws_iam_role's assume_role_policy, ...), which the
// plan prints and the journal keeps.

// RoleProps is an IAM role (aws_iam_role) with its one inline policy
// (policyName) and, when InstanceProfile is set, the instance profile of
// the same name.
type RoleProps struct {
	Name             string         `json:"name"`
	Path             string         `json:"path"`
	Description      string         `json:"description"`
	AssumeRolePolicy PolicyDocument `json:"assume_role_policy"`
	// Policy is the inline policy; nil when the role has none.
	Policy          *PolicyDocument   `json:"policy"`
	InstanceProfile bool              `json:"instance_profile"`
	Tags            map[string]string `json:"tags"`
}

// LogGroupProps is a CloudWatch Logs log group (aws_cloudwatch_log_group).
type LogGroupProps struct {
	Name            string            `json:"name"`
	RetentionInDays int               `json:"retention_in_days"`
	Tags            map[string]string `json:"tags"`
}

// SecretProps is a Secrets Manager secret (aws_secretsmanager_secret),
// made empty: its value never passes through a plan or the journal.
type SecretProps struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Tags        map[string]string `json:"tags"`
}

// TableProps is the store's DynamoDB table (aws_dynamodb_table): string
// keys HashKey and RangeKey.
type TableProps struct {
	Name string `json:"name"`
	// BillingMode is PAY_PER_REQUEST or PROVISIONED.
	BillingMode string            `json:"billing_mode"`
	HashKey     string            `json:"hash_key"`
	RangeKey    string            `json:"range_key"`
	Tags        map[string]string `json:"tags"`
}

func (RoleProps) isProps()     {}
func (LogGroupProps) isProps() {}
func (SecretProps) isProps()   {}
func (TableProps) isProps()    {}

func (p RoleProps) cloudName() string     { return p.Name }
func (p LogGroupProps) cloudName() string { return p.Name }
func (p SecretProps) cloudName() string   { return p.Name }
func (p TableProps) cloudName() string    { return p.Name }

// PolicyDocument is an IAM policy document, in IAM's JSON policy grammar
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html).
type PolicyDocument struct {
	Version   string            `json:"Version"`
	ID        string            `json:"Id,omitempty"`
	Statement []PolicyStatement `json:"Statement"`
}

// PolicyStatement is one statement of a policy document.
type PolicyStatement struct {
	Sid         string `json:"Sid,omitempty"`
	Effect      string `json:"Effect"`
	Action      Values `json:"Action,omitzero"`
	NotAction   Values `json:"NotAction,omitzero"`
	Resource    Values `json:"Resource,omitzero"`
	NotResource Values `json:"NotResource,omitzero"`
	// Principal maps a principal type (Service, AWS, Federated) to its
	// principals.
	Principal map[string]Values `json:"Principal,omitempty"`
	// Condition maps an operator (StringEquals, ArnLike) to condition
	// keys and their values.
	Condition map[string]map[string]Values `json:"Condition,omitempty"`
}

// Values is a policy element that IAM takes as one string or a list of
// them ("Action": "sts:AssumeRole" or ["iam:GetRole", "iam:PassRole"]).
// It keeps which it was, so a document read back compares equal to the
// one sent.
type Values struct {
	List []string
	// One marks a single string, not a list of one.
	One bool
}

// single is one string.
func single(s string) Values { return Values{List: []string{s}, One: true} }

// many is a list of strings (an empty one too).
func many(s ...string) Values {
	if s == nil {
		s = []string{}
	}
	return Values{List: s}
}

// MarshalJSON writes a string or a list.
func (v Values) MarshalJSON() ([]byte, error) {
	if v.One && len(v.List) == 1 {
		return json.Marshal(v.List[0])
	}
	if v.List == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(v.List)
}

// UnmarshalJSON reads a string or a list of strings.
func (v *Values) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*v = single(s)
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("a policy element is a string or a list of strings: %w", err)
	}
	*v = many(l...)
	return nil
}

// ClusterProps is an ECS cluster (aws_ecs_cluster).
type ClusterProps struct {
	Name string            `json:"name"`
	Tags map[string]string `json:"tags"`
}

// ServiceProps is a Fargate service (aws_ecs_service) with the task
// definition it runs; a change of Task registers a new revision.
type ServiceProps struct {
	Name    string `json:"name"`
	Cluster string `json:"cluster"`
	// DesiredCount is create-only when Application Auto Scaling moves it.
	DesiredCount   int      `json:"desired_count"`
	Task           TaskSpec `json:"task"`
	Subnets        []string `json:"subnets"`
	SecurityGroups []string `json:"security_groups"`
	// ServiceRegistry is the Cloud Map service's ARN the tasks register
	// in ("" for none).
	ServiceRegistry string            `json:"service_registry,omitempty"`
	Tags            map[string]string `json:"tags"`
}

// TaskSpec is a Fargate task definition of one container, gosling,
// listening on apiPort and logging to LogGroup.
type TaskSpec struct {
	Family  string   `json:"family"`
	Image   string   `json:"image"`
	Command []string `json:"command"`
	// CPU is in CPU units (1024 a vCPU), Memory in MiB.
	CPU              int               `json:"cpu"`
	Memory           int               `json:"memory"`
	TaskRoleARN      string            `json:"task_role_arn"`
	ExecutionRoleARN string            `json:"execution_role_arn"`
	LogGroup         string            `json:"log_group"`
	Environment      map[string]string `json:"environment"`
}

// ScalingTargetProps is an Application Auto Scaling scalable target
// (aws_appautoscaling_target): an ECS service's desired count between
// MinCapacity and MaxCapacity.
type ScalingTargetProps struct {
	ServiceNamespace  string            `json:"service_namespace"`
	ResourceID        string            `json:"resource_id"`
	ScalableDimension string            `json:"scalable_dimension"`
	MinCapacity       int               `json:"min_capacity"`
	MaxCapacity       int               `json:"max_capacity"`
	Tags              map[string]string `json:"tags"`
}

// ScalingPolicyProps is a target tracking scaling policy
// (aws_appautoscaling_policy).
type ScalingPolicyProps struct {
	Name              string         `json:"name"`
	ServiceNamespace  string         `json:"service_namespace"`
	ResourceID        string         `json:"resource_id"`
	ScalableDimension string         `json:"scalable_dimension"`
	PolicyType        string         `json:"policy_type"`
	TargetTracking    TargetTracking `json:"target_tracking"`
}

// TargetTracking keeps a predefined metric at TargetValue; cooldowns are
// in seconds.
type TargetTracking struct {
	PredefinedMetric string  `json:"predefined_metric,omitempty"`
	TargetValue      float64 `json:"target_value"`
	ScaleInCooldown  int     `json:"scale_in_cooldown"`
	ScaleOutCooldown int     `json:"scale_out_cooldown"`
}

func (ClusterProps) isProps()       {}
func (ServiceProps) isProps()       {}
func (ScalingTargetProps) isProps() {}
func (ScalingPolicyProps) isProps() {}

func (p ClusterProps) cloudName() string       { return p.Name }
func (p ServiceProps) cloudName() string       { return p.Name }
func (p ScalingPolicyProps) cloudName() string { return p.Name }

// SecurityGroupProps is an EC2 security group (aws_security_group),
// made without AWS's default egress rule; its rules are resources of
// their own.
type SecurityGroupProps struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	VPCID       string            `json:"vpc_id"`
	Tags        map[string]string `json:"tags"`
}

// SecurityGroupRuleProps is one rule of a group
// (aws_security_group_rule): traffic of Protocol on ports FromPort to
// ToPort (0 and 0 with all protocols, "-1") from or to one peer, another
// group or CIDR blocks.
type SecurityGroupRuleProps struct {
	SecurityGroupID string `json:"security_group_id"`
	// Type is ingress or egress.
	Type                  string   `json:"type"`
	Protocol              string   `json:"protocol"`
	FromPort              int      `json:"from_port"`
	ToPort                int      `json:"to_port"`
	SourceSecurityGroupID string   `json:"source_security_group_id"`
	CIDRBlocks            []string `json:"cidr_blocks"`
}

func (SecurityGroupProps) isProps()     {}
func (SecurityGroupRuleProps) isProps() {}

func (p SecurityGroupProps) cloudName() string { return p.Name }

// NamespaceProps is a Cloud Map private DNS namespace
// (aws_service_discovery_private_dns_namespace) in VPC.
type NamespaceProps struct {
	Name string            `json:"name"`
	VPC  string            `json:"vpc"`
	Tags map[string]string `json:"tags"`
}

// DiscoveryServiceProps is a Cloud Map service
// (aws_service_discovery_service) whose instances ECS registers.
type DiscoveryServiceProps struct {
	Name        string            `json:"name"`
	NamespaceID string            `json:"namespace_id"`
	DNSRecords  []DNSRecord       `json:"dns_records"`
	Tags        map[string]string `json:"tags"`
}

// DNSRecord is a record Cloud Map keeps per instance; TTL in seconds.
type DNSRecord struct {
	Type string `json:"type"`
	TTL  int64  `json:"ttl"`
}

func (NamespaceProps) isProps()        {}
func (DiscoveryServiceProps) isProps() {}

func (p NamespaceProps) cloudName() string        { return p.Name }
func (p DiscoveryServiceProps) cloudName() string { return p.Name }

// FunctionProps is a Lambda function of a container image
// (aws_lambda_function): MemorySize in MiB, Timeout in seconds;
// Environment holds secret URIs, never values.
type FunctionProps struct {
	Name        string            `json:"name"`
	PackageType string            `json:"package_type"`
	Image       string            `json:"image"`
	Command     []string          `json:"command"`
	Role        string            `json:"role"`
	MemorySize  int               `json:"memory_size"`
	Timeout     int               `json:"timeout"`
	Environment map[string]string `json:"environment"`
	Tags        map[string]string `json:"tags"`
}

// PermissionProps is one statement of a function's resource policy
// (aws_lambda_permission), made by AddPermission.
type PermissionProps struct {
	FunctionName string `json:"function_name"`
	StatementID  string `json:"statement_id"`
	Action       string `json:"action"`
	Principal    string `json:"principal"`
	SourceARN    string `json:"source_arn"`
}

// APIProps is an API Gateway HTTP API (aws_apigatewayv2_api).
type APIProps struct {
	Name         string            `json:"name"`
	ProtocolType string            `json:"protocol_type"`
	Tags         map[string]string `json:"tags"`
}

// VPCLinkProps is an HTTP API's VPC link (aws_apigatewayv2_vpc_link).
type VPCLinkProps struct {
	Name             string            `json:"name"`
	SubnetIDs        []string          `json:"subnet_ids"`
	SecurityGroupIDs []string          `json:"security_group_ids"`
	Tags             map[string]string `json:"tags"`
}

// IntegrationProps is an HTTP API's integration
// (aws_apigatewayv2_integration); Description is its resource name, as
// integrations have none.
type IntegrationProps struct {
	APIID                string `json:"api_id"`
	Description          string `json:"description"`
	IntegrationType      string `json:"integration_type"`
	IntegrationMethod    string `json:"integration_method"`
	ConnectionType       string `json:"connection_type"`
	ConnectionID         string `json:"connection_id"`
	IntegrationURI       string `json:"integration_uri"`
	PayloadFormatVersion string `json:"payload_format_version"`
}

// AuthorizerProps is an HTTP API's Lambda authorizer
// (aws_apigatewayv2_authorizer); the result TTL is in seconds.
type AuthorizerProps struct {
	APIID                          string   `json:"api_id"`
	Name                           string   `json:"name"`
	AuthorizerType                 string   `json:"authorizer_type"`
	AuthorizerPayloadFormatVersion string   `json:"authorizer_payload_format_version"`
	EnableSimpleResponses          bool     `json:"enable_simple_responses"`
	IdentitySource                 []string `json:"identity_source"`
	AuthorizerResultTTLInSeconds   int      `json:"authorizer_result_ttl_in_seconds"`
	AuthorizerURI                  string   `json:"authorizer_uri"`
}

// RouteProps is an HTTP API's route (aws_apigatewayv2_route);
// AuthorizerID is "" with authorization type NONE.
type RouteProps struct {
	APIID             string `json:"api_id"`
	RouteKey          string `json:"route_key"`
	Target            string `json:"target"`
	AuthorizationType string `json:"authorization_type"`
	AuthorizerID      string `json:"authorizer_id"`
}

// StageProps is an HTTP API's stage (aws_apigatewayv2_stage).
type StageProps struct {
	APIID      string            `json:"api_id"`
	Name       string            `json:"name"`
	AutoDeploy bool              `json:"auto_deploy"`
	Tags       map[string]string `json:"tags"`
}

// DomainNameProps is a custom domain name (aws_apigatewayv2_domain_name)
// served with an ACM certificate.
type DomainNameProps struct {
	DomainName     string            `json:"domain_name"`
	CertificateARN string            `json:"certificate_arn"`
	EndpointType   string            `json:"endpoint_type"`
	SecurityPolicy string            `json:"security_policy"`
	Tags           map[string]string `json:"tags"`
}

// APIMappingProps maps a domain name's path (APIMappingKey, "" for the
// root) to an API's stage (aws_apigatewayv2_api_mapping).
type APIMappingProps struct {
	DomainName    string `json:"domain_name"`
	APIID         string `json:"api_id"`
	Stage         string `json:"stage"`
	APIMappingKey string `json:"api_mapping_key"`
}

func (FunctionProps) isProps()    {}
func (PermissionProps) isProps()  {}
func (APIProps) isProps()         {}
func (VPCLinkProps) isProps()     {}
func (IntegrationProps) isProps() {}
func (AuthorizerProps) isProps()  {}
func (RouteProps) isProps()       {}
func (StageProps) isProps()       {}
func (DomainNameProps) isProps()  {}
func (APIMappingProps) isProps()  {}

func (p FunctionProps) cloudName() string   { return p.Name }
func (p APIProps) cloudName() string        { return p.Name }
func (p VPCLinkProps) cloudName() string    { return p.Name }
func (p AuthorizerProps) cloudName() string { return p.Name }
func (p StageProps) cloudName() string      { return p.Name }

func (p IntegrationProps) apiID() string { return p.APIID }
func (p AuthorizerProps) apiID() string  { return p.APIID }
func (p RouteProps) apiID() string       { return p.APIID }
func (p StageProps) apiID() string       { return p.APIID }

// QueueProps is a queue behind the SQS API (aws_sqs_queue, and Yandex
// Message Queue's yandex_message_queue). Unset attributes are the
// service's defaults; times are in seconds.
type QueueProps struct {
	Name                     string `json:"name"`
	VisibilityTimeoutSeconds *int   `json:"visibility_timeout_seconds,omitempty"`
	MessageRetentionSeconds  *int   `json:"message_retention_seconds,omitempty"`
	// RedrivePolicy is the queue's RedrivePolicy attribute, SQS's own
	// JSON ({"deadLetterTargetArn": ..., "maxReceiveCount": ...}).
	RedrivePolicy json.RawMessage   `json:"redrive_policy,omitempty"`
	Tags          map[string]string `json:"tags"`
}

// ScheduleGroupProps is an EventBridge Scheduler schedule group
// (aws_scheduler_schedule_group).
type ScheduleGroupProps struct {
	Name string            `json:"name"`
	Tags map[string]string `json:"tags"`
}

// ScheduleProps is an EventBridge Scheduler schedule
// (aws_scheduler_schedule) that sends Target.Input to Target.ARN as
// Target.RoleARN.
type ScheduleProps struct {
	Name       string         `json:"name"`
	Group      string         `json:"group"`
	Expression string         `json:"expression"`
	Timezone   string         `json:"timezone"`
	Target     ScheduleTarget `json:"target"`
}

// ScheduleTarget is where a schedule sends its input.
type ScheduleTarget struct {
	ARN     string `json:"arn"`
	RoleARN string `json:"role_arn"`
	Input   string `json:"input"`
}

func (QueueProps) isProps()         {}
func (ScheduleGroupProps) isProps() {}
func (ScheduleProps) isProps()      {}

func (p QueueProps) cloudName() string         { return p.Name }
func (p ScheduleGroupProps) cloudName() string { return p.Name }
func (p ScheduleProps) cloudName() string      { return p.Name }
