package mototest_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/gosling-ci/gosling/internal/mototest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Runner(m).Run()) }

// Every proxy is an account of its own: STS names it, and a queue made in
// one is not in another.
func TestProxyAccounts(t *testing.T) {
	ctx := context.Background()
	a, b := mototest.NewProxy(t), mototest.NewProxy(t)
	if a.Account == b.Account {
		t.Fatalf("two proxies share account %s", a.Account)
	}
	id, err := sts.NewFromConfig(a.Config()).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil || aws.ToString(id.Account) != a.Account {
		t.Fatalf("caller identity %v, %v; want account %s", id, err, a.Account)
	}
	if _, err := sqs.NewFromConfig(a.Config()).CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("mine")}); err != nil {
		t.Fatal(err)
	}
	_, err = sqs.NewFromConfig(b.Config()).GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("mine")})
	if err == nil {
		t.Error("another account sees the queue")
	}
	if n := a.Calls()["sqs:CreateQueue"]; n != 1 {
		t.Errorf("%d CreateQueue calls counted", n)
	}
}

// Injected faults reach the SDK as the service's own errors, in each of
// its protocols.
func TestProxyFaults(t *testing.T) {
	ctx := context.Background()
	p := mototest.NewProxy(t)
	cfg := p.Config()
	code := func(err error) string {
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		return ""
	}

	// REST-JSON, with Lambda's error type.
	p.Inject("lambda:GetFunction", mototest.Fault{Status: 409, Code: "ResourceConflictException", Type: "User", Message: "An update is in progress"})
	_, err := lambda.NewFromConfig(cfg).GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("f")})
	var conflict *lambdatypes.ResourceConflictException
	if !errors.As(err, &conflict) || conflict.ErrorMessage() != "An update is in progress" {
		t.Errorf("Lambda: %v", err)
	}
	// Once: the next call reaches moto, which has no such function.
	_, err = lambda.NewFromConfig(cfg).GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("f")})
	if code(err) != "ResourceNotFoundException" {
		t.Errorf("Lambda after the fault: %v", err)
	}

	// The query protocol.
	p.Inject("iam:GetRole", mototest.Fault{Status: 403, Code: "AccessDenied", Message: "not allowed"})
	if _, err := iam.NewFromConfig(cfg).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("r")}); code(err) != "AccessDenied" {
		t.Errorf("IAM: %v", err)
	}
	// EC2's, and Fail's retried 500s, which the SDK counts as calls.
	p.Fail("ec2:DescribeVpcs", 3)
	if _, err := ec2.NewFromConfig(cfg).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); code(err) != "InternalError" {
		t.Errorf("EC2: %v", err)
	}
	if n := p.Calls()["ec2:DescribeVpcs"]; n != 3 {
		t.Errorf("%d DescribeVpcs calls, want the SDK's 3 attempts", n)
	}
	// JSON.
	p.Intercept(func(op string, _ []byte) *mototest.Fault {
		if op == "sqs:ListQueues" {
			return &mototest.Fault{Status: 400, Code: "AccessDenied", Message: "not allowed"}
		}
		return nil
	})
	if _, err := sqs.NewFromConfig(cfg).ListQueues(ctx, &sqs.ListQueuesInput{}); code(err) != "AccessDenied" {
		t.Errorf("SQS: %v", err)
	}
}
