package bootstrap

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/applicationautoscaling"
	aastypes "github.com/aws/aws-sdk-go-v2/service/applicationautoscaling/types"
)

// scalingResourceIDs are the Application Auto Scaling resource IDs of the
// deployment's ECS services (service/<cluster>/<deployment>-<component>),
// plus those the hints name.
func (p *AWSProvider) scalingResourceIDs(hints []Resource) []string {
	ids := map[string]bool{}
	for _, c := range components {
		ids[ecsScalingResourceID(p.Deployment, p.Deployment+"-"+c.key)] = true
	}
	for _, h := range hints {
		var id string
		switch h.Type {
		case AWSScalingTarget:
			id = as[ScalingTargetProps](h).ResourceID
		case AWSScalingPolicy:
			id = as[ScalingPolicyProps](h).ResourceID
		}
		if strings.HasPrefix(id, "service/"+p.Deployment+"/") {
			ids[id] = true
		}
	}
	return slices.Sorted(maps.Keys(ids))
}

// scalingName is the resource name of a target or policy on the
// deployment's ECS service resourceID: the component's key.
func (p *AWSProvider) scalingName(resourceID string) string {
	return strings.TrimPrefix(resourceID, ecsScalingResourceID(p.Deployment, p.Deployment+"-"))
}

// readScaling finds the scalable targets of the deployment's ECS services
// (DescribeScalableTargets filtered by their resource IDs), their tags
// (ListTagsForResource on the target's ARN) and the target tracking
// policy each has (DescribeScalingPolicies by resource ID). Policies not
// named <deployment>-<component>-cpu were made by someone else and are
// left out.
func (p *AWSProvider) readScaling(ctx context.Context, hints []Resource) ([]Resource, error) {
	ids := p.scalingResourceIDs(hints)
	var out []Resource
	pg := applicationautoscaling.NewDescribeScalableTargetsPaginator(p.scaling, &applicationautoscaling.DescribeScalableTargetsInput{
		ServiceNamespace: aastypes.ServiceNamespaceEcs, ResourceIds: ids, ScalableDimension: aastypes.ScalableDimensionECSServiceDesiredCount,
	})
	for t, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *applicationautoscaling.DescribeScalableTargetsOutput) []aastypes.ScalableTarget {
		return o.ScalableTargets
	}) {
		if err != nil {
			return nil, fmt.Errorf("describe the scalable targets of the ECS services of %s: %w", p.Deployment, err)
		}
		res, err := p.readScalingTarget(ctx, t)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
		policies, err := p.readScalingPolicies(ctx, aws.ToString(t.ResourceId))
		if err != nil {
			return nil, err
		}
		out = append(out, policies...)
	}
	return out, nil
}

func (p *AWSProvider) readScalingTarget(ctx context.Context, t aastypes.ScalableTarget) (Resource, error) {
	id, arn := aws.ToString(t.ResourceId), aws.ToString(t.ScalableTargetARN)
	tags := map[string]string{}
	if arn != "" {
		got, err := p.scaling.ListTagsForResource(ctx, &applicationautoscaling.ListTagsForResourceInput{ResourceARN: &arn})
		if err != nil {
			return Resource{}, fmt.Errorf("read the tags of scalable target %s: %w", id, err)
		}
		maps.Copy(tags, got.Tags)
	}
	props := ScalingTargetProps{
		ServiceNamespace: string(t.ServiceNamespace), ResourceID: id, ScalableDimension: string(t.ScalableDimension),
		MinCapacity: int(aws.ToInt32(t.MinCapacity)), MaxCapacity: int(aws.ToInt32(t.MaxCapacity)), Tags: tags,
	}
	return Resource{Type: AWSScalingTarget, Name: p.scalingName(id), Props: props, ID: arn, Outputs: map[string]string{"arn": arn}}, nil
}

func (p *AWSProvider) readScalingPolicies(ctx context.Context, resourceID string) ([]Resource, error) {
	name := p.scalingName(resourceID)
	var out []Resource
	pg := applicationautoscaling.NewDescribeScalingPoliciesPaginator(p.scaling, &applicationautoscaling.DescribeScalingPoliciesInput{
		ServiceNamespace: aastypes.ServiceNamespaceEcs, ResourceId: &resourceID, ScalableDimension: aastypes.ScalableDimensionECSServiceDesiredCount,
	})
	for sp, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *applicationautoscaling.DescribeScalingPoliciesOutput) []aastypes.ScalingPolicy {
		return o.ScalingPolicies
	}) {
		if err != nil {
			return nil, fmt.Errorf("describe the scaling policies of %s: %w", resourceID, err)
		}
		if aws.ToString(sp.PolicyName) != p.Deployment+"-"+name+"-cpu" {
			continue
		}
		var tracking TargetTracking
		if c := sp.TargetTrackingScalingPolicyConfiguration; c != nil {
			tracking.TargetValue = aws.ToFloat64(c.TargetValue)
			tracking.ScaleInCooldown = int(aws.ToInt32(c.ScaleInCooldown))
			tracking.ScaleOutCooldown = int(aws.ToInt32(c.ScaleOutCooldown))
			if m := c.PredefinedMetricSpecification; m != nil {
				tracking.PredefinedMetric = string(m.PredefinedMetricType)
			}
		}
		props := ScalingPolicyProps{
			Name: aws.ToString(sp.PolicyName), ServiceNamespace: string(sp.ServiceNamespace), ResourceID: resourceID,
			ScalableDimension: string(sp.ScalableDimension), PolicyType: string(sp.PolicyType), TargetTracking: tracking,
		}
		arn := aws.ToString(sp.PolicyARN)
		out = append(out, Resource{Type: AWSScalingPolicy, Name: name, Props: props, ID: arn, Outputs: map[string]string{"arn": arn}})
	}
	return out, nil
}

// markScaledServices marks desired_count create-only on every ECS service
// that has a scalable target among read, so that a rollback to a state
// read with the target leaves the scaler's count alone.
func markScaledServices(read []Resource) {
	scaled := map[string]bool{}
	for _, r := range read {
		if r.Type == AWSScalingTarget {
			scaled[as[ScalingTargetProps](r).ResourceID] = true
		}
	}
	for i, r := range read {
		if r.Type == AWSService && scaled[ecsScalingResourceID(as[ServiceProps](r).Cluster, as[ServiceProps](r).Name)] {
			read[i].CreateOnly = []string{"desired_count"}
		}
	}
}

// putScalingTarget registers the scalable target, or registers it again
// with new bounds (RegisterScalableTarget creates or updates). Tags go with
// the first registration and through TagResource after. No RoleARN:
// Application Auto Scaling uses its service-linked role for ECS.
func (p *AWSProvider) putScalingTarget(ctx context.Context, before *Resource, r Resource) error {
	want := as[ScalingTargetProps](r)
	tags := want.Tags
	in := &applicationautoscaling.RegisterScalableTargetInput{
		ServiceNamespace: aastypes.ServiceNamespace(want.ServiceNamespace), ResourceId: aws.String(want.ResourceID),
		ScalableDimension: aastypes.ScalableDimension(want.ScalableDimension),
		MinCapacity:       aws.Int32(int32(want.MinCapacity)), MaxCapacity: aws.Int32(int32(want.MaxCapacity)),
	}
	if before == nil {
		in.Tags = tags
	}
	out, err := p.scaling.RegisterScalableTarget(ctx, in)
	if err != nil {
		return err
	}
	if before != nil && !maps.Equal(as[ScalingTargetProps](*before).Tags, tags) {
		arn := aws.ToString(out.ScalableTargetARN)
		if arn == "" {
			arn = before.ID
		}
		_, err = p.scaling.TagResource(ctx, &applicationautoscaling.TagResourceInput{ResourceARN: &arn, Tags: tags})
	}
	return err
}

// putScalingPolicy puts the target tracking policy (PutScalingPolicy
// creates or replaces it by name).
func (p *AWSProvider) putScalingPolicy(ctx context.Context, r Resource) error {
	sp := as[ScalingPolicyProps](r)
	tt := sp.TargetTracking
	_, err := p.scaling.PutScalingPolicy(ctx, &applicationautoscaling.PutScalingPolicyInput{
		PolicyName: aws.String(sp.Name), ServiceNamespace: aastypes.ServiceNamespace(sp.ServiceNamespace),
		ResourceId: aws.String(sp.ResourceID), ScalableDimension: aastypes.ScalableDimension(sp.ScalableDimension),
		PolicyType: aastypes.PolicyType(sp.PolicyType),
		TargetTrackingScalingPolicyConfiguration: &aastypes.TargetTrackingScalingPolicyConfiguration{
			TargetValue:                   aws.Float64(tt.TargetValue),
			PredefinedMetricSpecification: &aastypes.PredefinedMetricSpecification{PredefinedMetricType: aastypes.MetricType(tt.PredefinedMetric)},
			ScaleInCooldown:               aws.Int32(int32(tt.ScaleInCooldown)),
			ScaleOutCooldown:              aws.Int32(int32(tt.ScaleOutCooldown)),
		},
	})
	return err
}

// deleteScalingPolicy deletes the policy; one already gone is no error,
// since deregistering a scalable target deletes its policies with it.
func (p *AWSProvider) deleteScalingPolicy(ctx context.Context, r Resource) error {
	sp := as[ScalingPolicyProps](r)
	_, err := p.scaling.DeleteScalingPolicy(ctx, &applicationautoscaling.DeleteScalingPolicyInput{
		PolicyName: aws.String(sp.Name), ServiceNamespace: aastypes.ServiceNamespace(sp.ServiceNamespace),
		ResourceId: aws.String(sp.ResourceID), ScalableDimension: aastypes.ScalableDimension(sp.ScalableDimension),
	})
	if apiCode(err) == "ObjectNotFoundException" {
		return nil
	}
	return err
}
