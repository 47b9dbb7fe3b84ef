package activities

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
)

// Error texts as OpenTofu printed them for the AWS and Yandex providers,
// from public bug reports (hashicorp/terraform-provider-aws #1496, #15183,
// #23928; terraform-aws-modules/terraform-aws-ec2-instance #68;
// aws/amazon-cloudwatch-agent-test #256; Getting-Started-Terraform #44;
// sil-org/ecs-deploy #277; Yandex Cloud course write-ups quoting the
// yandex provider), wrapped the way tofu.Executor.Apply wraps them: the
// tfexec error, then OpenTofu's last lines joined with " | ". The cases
// named "shape:" found no public report to quote: they are built from the
// gRPC status the yandex provider passes through (code name or
// RESOURCE_EXHAUSTED) and Yandex's "Not enough resources" wording.
func TestClassifyCapacity(t *testing.T) {
	for _, tc := range []struct {
		name, cloud, text, class, message string
	}{
		{"ec2 capacity, provider v3", fly.CloudAWS,
			"tofu apply aws/vm in web-p1: exit status 1: │ Error: Error launching source instance: InsufficientInstanceCapacity: We currently do not have sufficient t3.large capacity in the Availability Zone you requested (us-west-2a). Our system will be working on provisioning additional capacity. | │ with aws_instance.runner,",
			"capacity", "Error launching source instance: InsufficientInstanceCapacity: We currently do not have sufficient t3.large capacity"},
		{"ec2 capacity, xml answer", fly.CloudAWS,
			"exit status 1\n<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We currently do not have sufficient m4.4xlarge capacity in the Availability Zone you requested (ap-northeast-1d).</Message></Error></Errors></Response>",
			"capacity", "<Code>InsufficientInstanceCapacity</Code>"},
		{"vcpu quota, provider v4", fly.CloudAWS,
			"tofu apply aws/vm in web-p2: exit status 1: Error: creating EC2 Instance: VcpuLimitExceeded: You have requested more vCPU capacity than your current vCPU limit of 32 allows for the instance bucket that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit. | with aws_instance.runner,",
			"quota", "creating EC2 Instance: VcpuLimitExceeded: You have requested more vCPU capacity"},
		{"type not in zone, provider v5", fly.CloudAWS,
			"tofu apply aws/vm in web-p3: exit status 1: │ Error: creating EC2 Instance: operation error EC2: RunInstances, https response error StatusCode: 400, RequestID: f5620d69-168d-41c0-ac2b-070fa64e0707, api error Unsupported: Your requested instance type (t3.micro) is not supported in your requested Availability Zone (us-east-1e). Please retry your request by not specifying an Availability Zone or choosing us-east-1a, us-east-1b. | │   with aws_instance.runner,",
			"zone", "api error Unsupported: Your requested instance type (t3.micro)"},
		{"type not in zone, old wording", fly.CloudAWS,
			"Error launching source instance: Your requested instance type (t2.micro) not supported in your requested Availability Zone (us-west-2d).\nerror launching: Unsupported: Your requested instance type (m3.large) is not supported in your requested Availability Zone (us-east-1a).",
			"zone", "Unsupported: Your requested instance type (m3.large)"},
		{"fargate placement", fly.CloudAWS,
			"tofu apply aws/serverless in web-x: exit status 1: Error: waiting for ECS Service (gosling-web-x) create: service gosling-web-x was unable to place a task. Reason: Capacity is unavailable at this time. Please try again later or in a different availability zone.",
			"capacity", "Capacity is unavailable at this time"},
		{"shape: ecs task failure reason", fly.CloudAWS,
			"tofu apply aws/serverless in web-y: exit status 1: Error: running ECS task: failures: [{Arn: arn:aws:ecs:eu-west-1:1:container-instance/abc, Reason: RESOURCE:MEMORY}]",
			"capacity", "RESOURCE:MEMORY"},
		{"shape: throttled", fly.CloudAWS,
			"tofu apply aws/serverless in web-z: exit status 1: Error: creating ECS Service (gosling-web-z): operation error ECS: CreateService, https response error StatusCode: 400, RequestID: 9a1, api error ThrottlingException: Rate exceeded",
			"rate", "api error ThrottlingException: Rate exceeded"},
		{"yandex network quota", fly.CloudYandex,
			"tofu apply yandex/vm in web-p4: exit status 1: │ Error: Error while requesting API to create network: server-request-id = 07abaedd-e376-4fed-af9c-a6dc6faa516d server-trace-id = 419901aaa5573822:425cf19c23a9a602:419901aaa5573822:1 client-request-id = 835daa41-b381-4807-a778-35c25bdfb433 client-trace-id = 5aeaad0a-d47c-43a8-a7c0-2ffe644c8f52 rpc error: code = ResourceExhausted desc = Quota limit vpc.networks.count exceeded | │   with yandex_vpc_network.app-network,",
			"quota", "Quota limit vpc.networks.count exceeded"},
		{"shape: yandex cores, status name", fly.CloudYandex,
			"tofu apply yandex/vm in web-p5: exit status 1: Error: Error while waiting operation to create instance: RESOURCE_EXHAUSTED: The limit on the total number of cores for all VMs in the cloud has been exceeded",
			"capacity", "RESOURCE_EXHAUSTED: The limit on the total number of cores"},
		{"shape: yandex zone full", fly.CloudYandex,
			"tofu apply yandex/serverless in web-q: exit status 1: Error: Error while requesting API to create container revision: rpc error: code = ResourceExhausted desc = Not enough resources in zone ru-central1-a",
			"capacity", "Not enough resources in zone ru-central1-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := ClassifyCapacity(tc.cloud, tc.text)
			if !ok || r.Class != tc.class || r.Cloud != tc.cloud || !strings.Contains(r.Message, tc.message) || len(r.Message) > 403 {
				t.Fatalf("ClassifyCapacity = %+v, %v; want class %s with %q", r, ok, tc.class, tc.message)
			}
			if strings.ContainsAny(r.Message, "│|\n") {
				t.Errorf("message keeps OpenTofu's framing: %q", r.Message)
			}
			// Through the activity's error: a non-retryable CloudCapacity
			// error whose details survive the round trip.
			err := CapacityError(tc.cloud, errors.New(tc.text))
			var ae *temporal.ApplicationError
			if !errors.As(err, &ae) || ae.Type() != ErrTypeCloudCapacity || !ae.NonRetryable() {
				t.Fatalf("CapacityError = %v", err)
			}
			if back, ok := CloudRefusalOf(err); !ok || back != r {
				t.Errorf("CloudRefusalOf = %+v, %v; want %+v", back, ok, r)
			}
		})
	}
}

// Failures that are not the cloud's refusal stay as they are: the apply is
// retried on the same cloud, or the runner fails.
func TestClassifyCapacityLeavesOtherErrors(t *testing.T) {
	for _, tc := range []struct{ name, cloud, text string }{
		{"module mismatch", fly.CloudAWS, "tofu apply aws/vm in web-p1: exit status 1: │ Error: Unsupported argument | │ An argument named \"cores\" is not expected here."},
		{"bad credentials", fly.CloudAWS, "Error: configuring Terraform AWS Provider: no valid credential sources for Terraform AWS Provider found."},
		{"unsupported configuration", fly.CloudAWS, "Error launching source instance: Unsupported: The requested configuration is currently not supported. Please check the documentation for supported configurations."},
		{"yandex permission", fly.CloudYandex, "Error while requesting API to create instance: rpc error: code = PermissionDenied desc = Permission denied"},
		{"aws text on yandex", fly.CloudYandex, "api error InsufficientInstanceCapacity: We currently do not have sufficient t3.large capacity"},
		{"yandex text on aws", fly.CloudAWS, "rpc error: code = ResourceExhausted desc = Quota limit vpc.networks.count exceeded"},
		{"yandex text on local", fly.CloudLocal, "Quota limit x exceeded; ResourceExhausted"},
		{"timeout", fly.CloudAWS, "tofu apply aws/vm in web-p1: context deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r, ok := ClassifyCapacity(tc.cloud, tc.text); ok {
				t.Errorf("classified as %+v", r)
			}
			orig := errors.New(tc.text)
			if err := CapacityError(tc.cloud, orig); err != orig {
				t.Errorf("CapacityError = %v, want the error unchanged", err)
			}
		})
	}
	if err := CapacityError(fly.CloudAWS, nil); err != nil {
		t.Errorf("CapacityError(nil) = %v", err)
	}
}

// A fallback is recorded on the runner (its cloud and why) and in the
// audit log once, however often the activity runs.
func TestRecordCloudFallback(t *testing.T) {
	ctx := context.Background()
	st := openSQLiteStore(t)
	if err := st.CreateRunner(ctx, &store.Runner{ID: "web-x", Egg: "web", Cloud: fly.CloudYandex, Kind: fly.RunnerServerless, State: store.StateProvisioning}); err != nil {
		t.Fatal(err)
	}
	a := &Activities{Store: st}
	in := CloudFallbackInput{RunnerID: "web-x", Egg: "web", From: fly.CloudYandex, To: fly.CloudAWS, Reason: "yandex refused (quota): Quota limit serverless.containers.count exceeded; falling back to aws"}
	for range 2 {
		if err := a.RecordCloudFallback(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	r, err := st.GetRunner(ctx, "web-x")
	if err != nil || r.Cloud != fly.CloudAWS || r.Reason != in.Reason || r.State != store.StateProvisioning {
		t.Errorf("runner = %+v, %v", r, err)
	}
	recs, err := st.ListAudit(ctx, store.AuditFilter{RunnerID: "web-x"})
	if err != nil || len(recs) != 1 || recs[0].Action != "cloud-fallback" || string(recs[0].Before) != `{"cloud":"yandex"}` || string(recs[0].After) != `{"cloud":"aws"}` {
		t.Errorf("audit = %+v, %v", recs, err)
	}
	if err := a.RecordCloudFallback(ctx, CloudFallbackInput{RunnerID: "gone", To: fly.CloudAWS}); err == nil {
		t.Error("a runner with no record was moved")
	}
}
