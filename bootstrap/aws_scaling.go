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
		if h.Type == AWSScalingTarget || h.Type == AWSScalingPolicy {
			if id := str(raw(h.Props), "resource_id"); strings.HasPrefix(id, "service/"+p.Deployment+"/") {
				ids[id] = true
			}
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
	tags := map[string]any{}
	if arn != "" {
		got, err := p.scaling.ListTagsForResource(ctx, &applicationautoscaling.ListTagsForResourceInput{ResourceARN: &arn})
		if err != nil {
			return Resource{}, fmt.Errorf("read the tags of scalable target %s: %w", id, err)
		}
		for k, v := range got.Tags {
			tags[k] = v
		}
	}
	props := map[string]any{
		"service_namespace": string(t.ServiceNamespace), "resource_id": id, "scalable_dimension": string(t.ScalableDimension),
		"min_capacity": int(aws.ToInt32(t.MinCapacity)), "max_capacity": int(aws.ToInt32(t.MaxCapacity)), "tags": tags,
	}
	return Resource{Type: AWSScalingTarget, Name: p.scalingName(id), Props: normalize(props), ID: arn, Outputs: map[string]string{"arn": arn}}, nil
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
		tracking := map[string]any{}
		if c := sp.TargetTrackingScalingPolicyConfiguration; c != nil {
			tracking["target_value"] = aws.ToFloat64(c.TargetValue)
			tracking["scale_in_cooldown"] = int(aws.ToInt32(c.ScaleInCooldown))
			tracking["scale_out_cooldown"] = int(aws.ToInt32(c.ScaleOutCooldown))
			if m := c.PredefinedMetricSpecification; m != nil {
				tracking["predefined_metric"] = string(m.PredefinedMetricType)
			}
		}
		props := map[string]any{
			"name": aws.ToString(sp.PolicyName), "service_namespace": string(sp.ServiceNamespace), "resource_id": resourceID,
			"scalable_dimension": string(sp.ScalableDimension), "policy_type": string(sp.PolicyType), "target_tracking": tracking,
		}
		arn := aws.ToString(sp.PolicyARN)
		out = append(out, Resource{Type: AWSScalingPolicy, Name: name, Props: normalize(props), ID: arn, Outputs: map[string]string{"arn": arn}})
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
			scaled[str(raw(r.Props), "resource_id")] = true
		}
	}
	for i, r := range read {
		if r.Type == AWSService && scaled[ecsScalingResourceID(str(raw(r.Props), "cluster"), str(raw(r.Props), "name"))] {
			read[i].CreateOnly = []string{"desired_count"}
		}
	}
}

// putScalingTarget registers the scalable target, or registers it again
// with new bounds (RegisterScalableTarget creates or updates). Tags go with
// the first registration and through TagResource after. No RoleARN:
// Application Auto Scaling uses its service-linked role for ECS.
func (p *AWSProvider) putScalingTarget(ctx context.Context, before *Resource, r Resource) error {
	tags := strMap(mapOf(raw(r.Props), "tags"))
	in := &applicationautoscaling.RegisterScalableTargetInput{
		ServiceNamespace: aastypes.ServiceNamespace(str(raw(r.Props), "service_namespace")), ResourceId: aws.String(str(raw(r.Props), "resource_id")),
		ScalableDimension: aastypes.ScalableDimension(str(raw(r.Props), "scalable_dimension")),
		MinCapacity:       aws.Int32(int32(num(raw(r.Props), "min_capacity"))), MaxCapacity: aws.Int32(int32(num(raw(r.Props), "max_capacity"))),
	}
	if before == nil {
		in.Tags = tags
	}
	out, err := p.scaling.RegisterScalableTarget(ctx, in)
	if err != nil {
		return err
	}
	if before != nil && jsonString(raw(before.Props)["tags"]) != jsonString(raw(r.Props)["tags"]) {
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
	tt := mapOf(raw(r.Props), "target_tracking")
	target := 0.0
	if v, ok := tt["target_value"].(float64); ok {
		target = v
	}
	_, err := p.scaling.PutScalingPolicy(ctx, &applicationautoscaling.PutScalingPolicyInput{
		PolicyName: aws.String(str(raw(r.Props), "name")), ServiceNamespace: aastypes.ServiceNamespace(str(raw(r.Props), "service_namespace")),
		ResourceId: aws.String(str(raw(r.Props), "resource_id")), ScalableDimension: aastypes.ScalableDimension(str(raw(r.Props), "scalable_dimension")),
		PolicyType: aastypes.PolicyType(str(raw(r.Props), "policy_type")),
		TargetTrackingScalingPolicyConfiguration: &aastypes.TargetTrackingScalingPolicyConfiguration{
			TargetValue:                   aws.Float64(target),
			PredefinedMetricSpecification: &aastypes.PredefinedMetricSpecification{PredefinedMetricType: aastypes.MetricType(str(tt, "predefined_metric"))},
			ScaleInCooldown:               aws.Int32(int32(num(tt, "scale_in_cooldown"))),
			ScaleOutCooldown:              aws.Int32(int32(num(tt, "scale_out_cooldown"))),
		},
	})
	return err
}

// deleteScalingPolicy deletes the policy; one already gone is no error,
// since deregistering a scalable target deletes its policies with it.
func (p *AWSProvider) deleteScalingPolicy(ctx context.Context, r Resource) error {
	_, err := p.scaling.DeleteScalingPolicy(ctx, &applicationautoscaling.DeleteScalingPolicyInput{
		PolicyName: aws.String(str(raw(r.Props), "name")), ServiceNamespace: aastypes.ServiceNamespace(str(raw(r.Props), "service_namespace")),
		ResourceId: aws.String(str(raw(r.Props), "resource_id")), ScalableDimension: aastypes.ScalableDimension(str(raw(r.Props), "scalable_dimension")),
	})
	if apiCode(err) == "ObjectNotFoundException" {
		return nil
	}
	return err
}
