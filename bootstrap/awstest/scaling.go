package awstest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// ---- Application Auto Scaling (JSON 1.1, X-Amz-Target: AnyScaleFrontendService.Op) ----
//
// Only the ecs namespace is served: a target is an ECS service of this
// stand-in (service/<cluster>/<service>, dimension
// ecs:service:DesiredCount), and registering one moves the service's
// desired count into the new bounds as the real scaler does. Policies are
// stored as sent; nothing evaluates them. Describe calls answer in one
// page.

type scalableTarget struct {
	Namespace, ResourceID, Dimension, Arn string
	Min, Max                              int
	Tags                                  map[string]string
	Created                               time.Time
}

type scalingPolicy struct {
	Name, Arn, Key string // Key is the target's key
	Doc            map[string]any
	Alarms         []any
	Created        time.Time
}

const ecsDesiredCount = "ecs:service:DesiredCount"

func targetKey(namespace, resourceID, dimension string) string {
	return namespace + "|" + resourceID + "|" + dimension
}

func (t *scalableTarget) json() map[string]any {
	return map[string]any{
		"ServiceNamespace": t.Namespace, "ResourceId": t.ResourceID, "ScalableDimension": t.Dimension,
		"MinCapacity": t.Min, "MaxCapacity": t.Max, "ScalableTargetARN": t.Arn, "CreationTime": epoch(t.Created),
		"RoleARN":        arn("iam", "role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"),
		"SuspendedState": map[string]any{"DynamicScalingInSuspended": false, "DynamicScalingOutSuspended": false, "ScheduledScalingSuspended": false},
	}
}

func (x *scalingPolicy) json() map[string]any {
	out := map[string]any{"Alarms": x.Alarms, "CreationTime": epoch(x.Created), "PolicyARN": x.Arn, "PolicyName": x.Name}
	for _, k := range []string{"PolicyType", "ServiceNamespace", "ResourceId", "ScalableDimension", "TargetTrackingScalingPolicyConfiguration", "StepScalingPolicyConfiguration"} {
		if v, ok := x.Doc[k]; ok {
			out[k] = v
		}
	}
	return out
}

func scalingValidation(format string, args ...any) *apiError {
	return errorf(400, "ValidationException", format, args...)
}

func noTarget(namespace, resourceID, dimension string) *apiError {
	return errorf(400, "ObjectNotFoundException", "No scalable target registered for service namespace: %s, resource ID: %s, scalable dimension: %s", namespace, resourceID, dimension)
}

// ecsServiceOf finds the ACTIVE ECS service an ecs resource ID names.
func (s *Server) ecsServiceOf(resourceID string) *service {
	parts := strings.Split(resourceID, "/")
	if len(parts) != 3 || parts[0] != "service" {
		return nil
	}
	if x := s.services[parts[1]+"/"+parts[2]]; x != nil && x.Status == "ACTIVE" {
		return x
	}
	return nil
}

// checkTargetID checks a request's namespace, resource ID and dimension.
func checkTargetID(namespace, resourceID, dimension string) *apiError {
	if namespace != "ecs" {
		return scalingValidation("service namespace %q is not served by this stand-in", namespace)
	}
	if dimension != ecsDesiredCount {
		return scalingValidation("Unsupported scalable dimension '%s' for service namespace 'ecs'", dimension)
	}
	if parts := strings.Split(resourceID, "/"); len(parts) != 3 || parts[0] != "service" || parts[1] == "" || parts[2] == "" {
		return scalingValidation("Unsupported resource ID '%s' for service namespace 'ecs': use service/<cluster>/<service>", resourceID)
	}
	return nil
}

func (s *Server) applicationAutoScaling(op string, in map[string]any) (any, *apiError) {
	namespace, resourceID, dimension := sv(in, "ServiceNamespace"), sv(in, "ResourceId"), sv(in, "ScalableDimension")
	switch op {
	case "RegisterScalableTarget":
		if aerr := checkTargetID(namespace, resourceID, dimension); aerr != nil {
			return nil, aerr
		}
		svc := s.ecsServiceOf(resourceID)
		if svc == nil {
			return nil, scalingValidation("ECS service doesn't exist: %s", resourceID)
		}
		key := targetKey(namespace, resourceID, dimension)
		t := s.targets[key]
		minC, hasMin := nv(in, "MinCapacity")
		maxC, hasMax := nv(in, "MaxCapacity")
		if t == nil && (!hasMin || !hasMax) {
			return nil, scalingValidation("MinCapacity and MaxCapacity are required for registering a new scalable target")
		}
		if t != nil {
			if !hasMin {
				minC = t.Min
			}
			if !hasMax {
				maxC = t.Max
			}
		}
		if minC < 0 || maxC < 0 {
			return nil, scalingValidation("Capacities cannot be negative")
		}
		if minC > maxC {
			return nil, scalingValidation("Minimum capacity cannot be greater than maximum capacity")
		}
		if t == nil {
			t = &scalableTarget{Namespace: namespace, ResourceID: resourceID, Dimension: dimension, Tags: map[string]string{}, Created: time.Now(),
				Arn: arn("application-autoscaling", "scalable-target/"+s.id("0e"))}
			for k, v := range strMapOf(obj(in, "Tags")) {
				t.Tags[k] = v
			}
			s.targets[key] = t
		}
		t.Min, t.Max = minC, maxC
		// A count outside the new bounds is scaled into them.
		svc.Desired = min(max(svc.Desired, minC), maxC)
		return map[string]any{"ScalableTargetARN": t.Arn}, nil
	case "DescribeScalableTargets":
		if namespace == "" {
			return nil, scalingValidation("1 validation error detected: Value null at 'serviceNamespace' failed to satisfy constraint: Member must not be null")
		}
		var ids []string
		for _, v := range list(in, "ResourceIds") {
			ids = append(ids, fmt.Sprint(v))
		}
		var keys []string
		for k, t := range s.targets {
			if t.Namespace == namespace && (dimension == "" || t.Dimension == dimension) && (ids == nil || slices.Contains(ids, t.ResourceID)) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		out := []any{}
		for _, k := range keys {
			out = append(out, s.targets[k].json())
		}
		return map[string]any{"ScalableTargets": out}, nil
	case "DeregisterScalableTarget":
		key := targetKey(namespace, resourceID, dimension)
		if s.targets[key] == nil {
			return nil, noTarget(namespace, resourceID, dimension)
		}
		delete(s.targets, key)
		// Deregistering a target deletes its scaling policies.
		for k, p := range s.policies {
			if p.Key == key {
				delete(s.policies, k)
			}
		}
		return nil, nil
	case "PutScalingPolicy":
		if aerr := checkTargetID(namespace, resourceID, dimension); aerr != nil {
			return nil, aerr
		}
		key := targetKey(namespace, resourceID, dimension)
		if s.targets[key] == nil {
			return nil, noTarget(namespace, resourceID, dimension)
		}
		name := sv(in, "PolicyName")
		if name == "" {
			return nil, scalingValidation("1 validation error detected: Value null at 'policyName' failed to satisfy constraint: Member must not be null")
		}
		if aerr := checkPolicy(in); aerr != nil {
			return nil, aerr
		}
		p := s.policies[key+"|"+name]
		if p == nil {
			uuid := s.id("")
			p = &scalingPolicy{Name: name, Key: key, Created: time.Now(),
				Arn: fmt.Sprintf("arn:aws:autoscaling:%s:%s:scalingPolicy:%s:resource/%s/%s:policyName/%s", Region, Account, uuid, namespace, resourceID, name)}
			if sv(in, "PolicyType") == "TargetTrackingScaling" {
				// Target tracking makes its own CloudWatch alarms.
				for _, kind := range []string{"AlarmHigh", "AlarmLow"} {
					alarm := fmt.Sprintf("TargetTracking-%s-%s-%s", resourceID, kind, uuid)
					p.Alarms = append(p.Alarms, map[string]any{"AlarmName": alarm, "AlarmARN": arn("cloudwatch", "alarm:"+alarm)})
				}
			}
			if p.Alarms == nil {
				p.Alarms = []any{}
			}
			s.policies[key+"|"+name] = p
		}
		p.Doc = in
		return map[string]any{"PolicyARN": p.Arn, "Alarms": p.Alarms}, nil
	case "DescribeScalingPolicies":
		if namespace == "" {
			return nil, scalingValidation("1 validation error detected: Value null at 'serviceNamespace' failed to satisfy constraint: Member must not be null")
		}
		var names []string
		for _, v := range list(in, "PolicyNames") {
			names = append(names, fmt.Sprint(v))
		}
		var keys []string
		for k, p := range s.policies {
			if sv(p.Doc, "ServiceNamespace") == namespace && (resourceID == "" || sv(p.Doc, "ResourceId") == resourceID) &&
				(dimension == "" || sv(p.Doc, "ScalableDimension") == dimension) && (names == nil || slices.Contains(names, p.Name)) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		out := []any{}
		for _, k := range keys {
			out = append(out, s.policies[k].json())
		}
		return map[string]any{"ScalingPolicies": out}, nil
	case "DeleteScalingPolicy":
		k := targetKey(namespace, resourceID, dimension) + "|" + sv(in, "PolicyName")
		if s.policies[k] == nil {
			return nil, errorf(400, "ObjectNotFoundException", "No scaling policy found for service namespace: %s, resource ID: %s, scalable dimension: %s, policy name: %s",
				namespace, resourceID, dimension, sv(in, "PolicyName"))
		}
		delete(s.policies, k)
		return nil, nil
	case "TagResource", "ListTagsForResource", "UntagResource":
		a := sv(in, "ResourceARN")
		for _, t := range s.targets {
			if t.Arn != a {
				continue
			}
			switch op {
			case "TagResource":
				for k, v := range strMapOf(obj(in, "Tags")) {
					t.Tags[k] = v
				}
				return nil, nil
			case "UntagResource":
				for _, k := range list(in, "TagKeys") {
					delete(t.Tags, fmt.Sprint(k))
				}
				return nil, nil
			}
			return map[string]any{"Tags": t.Tags}, nil
		}
		e := errorf(400, "ResourceNotFoundException", "Resource %s not found", a)
		return nil, e
	}
	return nil, errorf(400, "UnknownOperationException", "operation %s is not served by this stand-in", op)
}

// checkPolicy checks a target tracking policy's configuration the way the
// service does for the ecs namespace's predefined metrics.
func checkPolicy(in map[string]any) *apiError {
	switch sv(in, "PolicyType") {
	case "TargetTrackingScaling":
	case "StepScaling", "PredictiveScaling":
		return scalingValidation("policy type %s is not served by this stand-in", sv(in, "PolicyType"))
	default:
		return scalingValidation("Unsupported policy type '%s'", sv(in, "PolicyType"))
	}
	c := obj(in, "TargetTrackingScalingPolicyConfiguration")
	if c == nil {
		return scalingValidation("TargetTrackingScalingPolicyConfiguration is required for a policy of type TargetTrackingScaling")
	}
	if _, ok := c["TargetValue"].(float64); !ok {
		return scalingValidation("1 validation error detected: Value null at 'targetTrackingScalingPolicyConfiguration.targetValue' failed to satisfy constraint: Member must not be null")
	}
	m := obj(c, "PredefinedMetricSpecification")
	if m == nil && obj(c, "CustomizedMetricSpecification") == nil {
		return scalingValidation("Either PredefinedMetricSpecification or CustomizedMetricSpecification is required")
	}
	if m != nil {
		switch t := sv(m, "PredefinedMetricType"); t {
		case "ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization":
		case "ALBRequestCountPerTarget":
			if sv(m, "ResourceLabel") == "" {
				return scalingValidation("ResourceLabel is required for metric type ALBRequestCountPerTarget")
			}
		default:
			return scalingValidation("Unsupported metric type %s for service namespace ecs", t)
		}
	}
	for _, k := range []string{"ScaleInCooldown", "ScaleOutCooldown"} {
		if v, ok := nv(c, k); ok && v < 0 {
			return scalingValidation("%s cannot be negative", k)
		}
	}
	return nil
}

// SetDesiredCount sets the desired count of the ECS service
// <cluster>/<name>, as a scaling activity of Application Auto Scaling
// would; it reports whether the service exists.
func (s *Server) SetDesiredCount(cluster, name string, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.services[cluster+"/"+name]
	if x == nil || x.Status != "ACTIVE" {
		return false
	}
	x.Desired = n
	return true
}

// DesiredCount returns the desired count of the ECS service
// <cluster>/<name>, or -1 when it does not exist.
func (s *Server) DesiredCount(cluster, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.services[cluster+"/"+name]
	if x == nil || x.Status != "ACTIVE" {
		return -1
	}
	return x.Desired
}
