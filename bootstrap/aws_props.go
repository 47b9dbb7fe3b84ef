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
