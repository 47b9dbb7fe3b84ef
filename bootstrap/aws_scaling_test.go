package bootstrap

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/gosling-ci/gosling/fly"
)

// planFields lists a plan's changes as "action address field...".
func planFields(p *Plan) []string {
	var out []string
	for _, c := range p.Changes {
		line := string(c.Action) + " " + c.Address
		for _, f := range c.Fields {
			line += " " + f.Path
		}
		out = append(out, line)
	}
	return out
}

func emptyPlan(t *testing.T, e *Engine, desired []Resource, when string) {
	t.Helper()
	p, _, err := e.Plan(context.Background(), desired)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		var text bytes.Buffer
		_ = p.WriteText(&text)
		t.Fatalf("plan %s is not empty:\n%s", when, text.String())
	}
}

func deploy(t *testing.T, e *Engine, desired []Resource, want []string) {
	t.Helper()
	ctx := context.Background()
	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if got := planFields(p); !slices.Equal(got, want) {
		t.Fatalf("plan %q, want %q", got, want)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func rollback(t *testing.T, e *Engine, want []string) {
	t.Helper()
	ctx := context.Background()
	entries, _ := e.Journal.Entries(ctx)
	to, err := PreviousEntry(entries)
	if err != nil {
		t.Fatal(err)
	}
	rp, actual, err := e.RollbackPlan(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if got := planFields(rp); !slices.Equal(got, want) {
		t.Fatalf("rollback plan %q, want %q", got, want)
	}
	if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// scaling reads the deployment's scalable targets and policies by
// address.
func scaling(t *testing.T, e *Engine, desired []Resource) map[string]Resource {
	t.Helper()
	got, err := e.Read(context.Background(), desired)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Resource{}
	for _, r := range got {
		if r.Type == AWSScalingTarget || r.Type == AWSScalingPolicy {
			out[r.Address()] = r
		}
	}
	return out
}

func TestAWSServiceAutoscaling(t *testing.T) {
	ctx := context.Background()
	st := newAWSStack(t)
	n := st.nest(t, "testdata/aws-nest")
	e, desired := awsEngine(t, st, n)
	dep := DeploymentName(n)

	// The API (1..10) and the MotherGoose worker (1..5) scale; UglyFox
	// (1..1) does not.
	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	_ = p.WriteText(&text)
	for _, want := range []string{
		`+ resource "aws_appautoscaling_target" "api"`, `max_capacity       = 10`, `resource_id        = "service/gosling-test/gosling-test-api"`,
		`scalable_dimension = "ecs:service:DesiredCount"`, `+ resource "aws_appautoscaling_target" "mothergoose-worker"`,
		`+ resource "aws_appautoscaling_policy" "api"`, `name               = "gosling-test-api-cpu"`, `policy_type        = "TargetTrackingScaling"`,
		`predefined_metric  = "ECSServiceAverageCPUUtilization"`, `scale_in_cooldown  = 300`, `scale_out_cooldown = 60`, `target_value       = 60`,
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	if strings.Contains(text.String(), `"aws_appautoscaling_target" "uglyfox-worker"`) {
		t.Error("the UglyFox worker (min_instances = max_instances) got a scalable target")
	}
	if t.Failed() {
		t.Fatalf("plan:\n%s", text.String())
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	got := scaling(t, e, desired)
	if len(got) != 4 {
		t.Fatalf("read %d targets and policies, want 4: %v", len(got), slices.Sorted(maps.Keys(got)))
	}
	for addr, bounds := range map[string][2]float64{"aws_appautoscaling_target.api": {1, 10}, "aws_appautoscaling_target.mothergoose-worker": {1, 5}} {
		r := got[addr]
		if Comparable(r.Props)["min_capacity"] != bounds[0] || Comparable(r.Props)["max_capacity"] != bounds[1] || mapOf(Comparable(r.Props), "tags")[TagDeployment] != dep ||
			!strings.HasPrefix(r.ID, "arn:aws:application-autoscaling:") {
			t.Errorf("%s: %v (%s)", addr, Comparable(r.Props), r.ID)
		}
	}
	if tt := mapOf(Comparable(got["aws_appautoscaling_policy.api"].Props), "target_tracking"); tt["target_value"] != 60.0 || tt["predefined_metric"] != "ECSServiceAverageCPUUtilization" {
		t.Errorf("API policy: %v", Comparable(got["aws_appautoscaling_policy.api"].Props))
	}
	emptyPlan(t, e, desired, "after the first deploy")

	// The scaler moves the API to 4 tasks: deploy leaves them be, even
	// when it updates the service for another reason.
	st.setDesiredCount(t, dep, dep+"-api", 4)
	emptyPlan(t, e, desired, "after the scaler moved the count")
	n.MotherGoose.Containers.API.Memory = 2 * fly.GiB
	e, desired = awsEngine(t, st, n)
	deploy(t, e, desired, []string{"update aws_ecs_service.api task.memory"})
	if c := st.desiredCount(t, dep, dep+"-api"); c != 4 {
		t.Fatalf("API tasks after a memory change: %d, want the scaler's 4", c)
	}
	// Rolling the memory back leaves the count too: the service was read
	// with its target.
	rollback(t, e, []string{"update aws_ecs_service.api task.memory"})
	if c := st.desiredCount(t, dep, dep+"-api"); c != 4 {
		t.Fatalf("API tasks after rolling the memory back: %d, want the scaler's 4", c)
	}
	n.MotherGoose.Containers.API.Memory = 1 * fly.GiB
	e, desired = awsEngine(t, st, n)
	emptyPlan(t, e, desired, "after the rollback")

	// max_instances: one update of the target and none of the service: a
	// new maximum below the count is Application Auto Scaling's to bring
	// the service under (moto does not scale).
	n.MotherGoose.Containers.API.MaxInstances = 3
	e, desired = awsEngine(t, st, n)
	st.moto.ResetCalls()
	deploy(t, e, desired, []string{"update aws_appautoscaling_target.api max_capacity"})
	if m := Comparable(scaling(t, e, desired)["aws_appautoscaling_target.api"].Props)["max_capacity"]; m != 3.0 {
		t.Fatalf("API maximum after deploy: %v", m)
	}
	if n := st.moto.Calls()["ecs:UpdateService"]; n != 0 {
		t.Fatalf("%d ECS service updates for a new maximum", n)
	}
	emptyPlan(t, e, desired, "after the maximum changed")
	rollback(t, e, []string{"update aws_appautoscaling_target.api max_capacity"})
	if m := Comparable(scaling(t, e, desired)["aws_appautoscaling_target.api"].Props)["max_capacity"]; m != 10.0 {
		t.Fatalf("API maximum after rollback: %v", m)
	}
	n.MotherGoose.Containers.API.MaxInstances = 10
	e, desired = awsEngine(t, st, n)
	emptyPlan(t, e, desired, "after rolling the maximum back")

	// min_instances = max_instances: no scaler; deploy owns the count again.
	n.MotherGoose.Containers.API.MinInstances, n.MotherGoose.Containers.API.MaxInstances = 2, 2
	e, desired = awsEngine(t, st, n)
	deploy(t, e, desired, []string{
		"update aws_ecs_service.api desired_count", "delete aws_appautoscaling_policy.api", "delete aws_appautoscaling_target.api",
	})
	if c := st.desiredCount(t, dep, dep+"-api"); c != 2 {
		t.Fatalf("API tasks without a scaler: %d, want 2", c)
	}
	if _, ok := scaling(t, e, desired)["aws_appautoscaling_target.api"]; ok {
		t.Fatal("the API's scalable target is still there")
	}
	emptyPlan(t, e, desired, "after the scaler was removed")
	// The rollback makes the target and policy again and leaves the count
	// to them: the service was read with its target before.
	rollback(t, e, []string{"create aws_appautoscaling_target.api", "create aws_appautoscaling_policy.api"})
	if c := st.desiredCount(t, dep, dep+"-api"); c != 2 {
		t.Fatalf("API tasks after the rollback: %d, want 2", c)
	}
	if got := scaling(t, e, desired); got["aws_appautoscaling_policy.api"].ID == "" || Comparable(got["aws_appautoscaling_target.api"].Props)["max_capacity"] != 10.0 {
		t.Fatalf("after rollback: %v", got)
	}
}

// setDesiredCount sets an ECS service's desired count, as Application
// Auto Scaling does.
func (st *awsStack) setDesiredCount(t *testing.T, cluster, service string, n int32) {
	t.Helper()
	_, err := ecs.NewFromConfig(st.moto.Config()).UpdateService(context.Background(), &ecs.UpdateServiceInput{
		Cluster: aws.String(cluster), Service: aws.String(service), DesiredCount: aws.Int32(n),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// desiredCount is an ECS service's desired count.
func (st *awsStack) desiredCount(t *testing.T, cluster, service string) int32 {
	t.Helper()
	out, err := ecs.NewFromConfig(st.moto.Config()).DescribeServices(context.Background(), &ecs.DescribeServicesInput{
		Cluster: aws.String(cluster), Services: []string{service},
	})
	if err != nil || len(out.Services) != 1 {
		t.Fatalf("describe ECS service %s/%s: %v, %v", cluster, service, out, err)
	}
	return out.Services[0].DesiredCount
}
