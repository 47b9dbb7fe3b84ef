package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/runnerid"
	"github.com/gosling-ci/gosling/tofu"
)

// Tags every AWS module puts on a machine (default_tags).
const (
	awsTagDeployment = "gosling:deployment"
	awsTagEgg        = "gosling:egg"
	awsTagRunner     = "gosling:runner"
)

// AWSCloud is what a worker does on AWS beside OpenTofu, through the AWS
// SDK: it finds the deployment's EC2 instances by their tags and
// terminates them (Inventory), and finds each egg's runner role, its
// instance profile and its ECS task execution role (IdentitySource) by the
// names internal/runnerid gives them. AWS VMs are powered by OpenTofu
// (aws_ec2_instance_state).
type AWSCloud struct {
	deployment string
	ec2        *ec2.Client
	iam        *iam.Client
	ttl        time.Duration

	mu     sync.Mutex
	cached map[string]cachedIdentity
}

var (
	_ Inventory      = (*AWSCloud)(nil)
	_ IdentitySource = (*AWSCloud)(nil)
)

// NewAWSCloud reaches AWS in the provider's region as the worker (the AWS
// SDK's default chain: its task role, instance profile or keys), through
// the provider's role_arn when it names one.
func NewAWSCloud(ctx context.Context, deployment string, p fly.Provider) (*AWSCloud, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(p.Region))
	if err != nil {
		return nil, fmt.Errorf("aws runners: load the worker's credentials: %w", err)
	}
	if p.RoleARN != "" {
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), p.RoleARN))
	}
	return NewAWSCloudFromConfig(deployment, cfg), nil
}

// NewAWSCloudFromConfig uses cfg as it is (region, credentials, endpoints).
func NewAWSCloudFromConfig(deployment string, cfg aws.Config) *AWSCloud {
	return &AWSCloud{deployment: deployment, ec2: ec2.NewFromConfig(cfg), iam: iam.NewFromConfig(cfg), ttl: 5 * time.Minute, cached: map[string]cachedIdentity{}}
}

// Cloud implements Inventory.
func (c *AWSCloud) Cloud() string { return fly.CloudAWS }

// ListMachines implements Inventory: DescribeInstances filtered by the
// deployment's tag, instances not terminated, every page.
func (c *AWSCloud) ListMachines(ctx context.Context) ([]LabeledMachine, error) {
	var out []LabeledMachine
	pages := ec2.NewDescribeInstancesPaginator(c.ec2, &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{
			{Name: aws.String("tag:" + awsTagDeployment), Values: []string{c.deployment}},
			{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}},
		},
		MaxResults: aws.Int32(1000),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe the instances tagged %s=%s: %w", awsTagDeployment, c.deployment, err)
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				tags := map[string]string{}
				for _, t := range in.Tags {
					tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
				}
				if tags[awsTagRunner] == "" {
					continue
				}
				out = append(out, LabeledMachine{MachineRef: contract.MachineRef{Cloud: fly.CloudAWS, ID: aws.ToString(in.InstanceId)}, Egg: tags[awsTagEgg], RunnerID: tags[awsTagRunner]})
			}
		}
	}
	return out, nil
}

// TerminateMachine implements Inventory: TerminateInstances; an instance
// already gone is no error.
func (c *AWSCloud) TerminateMachine(ctx context.Context, m contract.MachineRef) error {
	_, err := c.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{m.ID}})
	if apiErrorCode(err) == "InvalidInstanceID.NotFound" {
		return nil
	}
	return err
}

func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// RunnerIdentity implements IdentitySource: the egg's runner role (under
// the deployment's IAM path) with its instance profile, and its ECS task
// execution role. The roles' policies are gosling deploy's.
func (c *AWSCloud) RunnerIdentity(ctx context.Context, egg string) (tofu.Identity, error) {
	c.mu.Lock()
	cached, ok := c.cached[egg]
	c.mu.Unlock()
	if ok && time.Since(cached.at) < c.ttl {
		return cached.id, nil
	}
	path := runnerid.AWSPath(c.deployment)
	role := func(name string) (string, error) {
		out, err := c.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
		if apiErrorCode(err) == "NoSuchEntity" || (err == nil && aws.ToString(out.Role.Path) != path) {
			return "", fmt.Errorf("%w: no IAM role %s%s; gosling deploy makes the egg's runner identity", tofu.ErrNoIdentity, path, name)
		}
		if err != nil {
			return "", fmt.Errorf("get IAM role %s: %w", name, err)
		}
		return aws.ToString(out.Role.Arn), nil
	}
	name := runnerid.AWSRole(c.deployment, egg)
	var id tofu.Identity
	var err error
	if id.RoleARN, err = role(name); err != nil {
		return id, err
	}
	if id.ExecutionRoleARN, err = role(runnerid.AWSExecutionRole(c.deployment, egg)); err != nil {
		return id, err
	}
	ip, err := c.iam.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
	if apiErrorCode(err) == "NoSuchEntity" {
		return id, fmt.Errorf("%w: no instance profile %s; gosling deploy makes the egg's runner identity", tofu.ErrNoIdentity, name)
	}
	if err != nil {
		return id, fmt.Errorf("get instance profile %s: %w", name, err)
	}
	id.InstanceProfile = aws.ToString(ip.InstanceProfile.InstanceProfileName)
	c.mu.Lock()
	c.cached[egg] = cachedIdentity{id: id, at: time.Now()}
	c.mu.Unlock()
	return id, nil
}
