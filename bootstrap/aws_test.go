package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/bootstrap/awstest"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store/dynamotest"
)

// awsStack is the AWS stand-in, a fault proxy in front of it and dynalite
// for DynamoDB.
type awsStack struct {
	srv   *awstest.Server
	proxy *awstest.FaultProxy
	ddb   string
}

func newAWSStack(t testing.TB) *awsStack {
	t.Helper()
	st := &awsStack{srv: awstest.New(), ddb: dynamotest.Start(t)}
	st.proxy = awstest.NewFaultProxy(st.srv.URL)
	t.Cleanup(func() { st.proxy.Close(); st.srv.Close() })
	return st
}

func (st *awsStack) provider(deployment string) *AWSProvider {
	return NewAWSProvider(awstest.Config(st.proxy.URL), deployment, AWSEndpoints{"dynamodb": st.ddb})
}

func loadNest(t testing.TB, dir string) *fly.Nest {
	t.Helper()
	n, diags := fly.LoadNest(dir, fly.Options{Getenv: func(string) (string, bool) { return "", false }})
	if diags.HasErrors() {
		t.Fatalf("load %s: %v", dir, diags.Diagnostics)
	}
	return n
}

func awsEngine(t testing.TB, st *awsStack, n *fly.Nest) (*Engine, []Resource) {
	t.Helper()
	ctx := context.Background()
	p := st.provider(DeploymentName(n))
	acct, err := p.Account(ctx, n.MotherGoose.Region)
	if err != nil {
		t.Fatal(err)
	}
	desired, err := AWSDesired(n, acct)
	if err != nil {
		t.Fatal(err)
	}
	return &Engine{Deployment: DeploymentName(n), Cloud: "aws", Providers: []Provider{p}, Journal: p.NewAWSJournal()}, desired
}

func TestAWSDeploySequence(t *testing.T) {
	ctx := context.Background()
	st := newAWSStack(t)
	n := loadNest(t, "testdata/aws-nest")
	e, desired := awsEngine(t, st, n)

	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if p.Count(Create) != len(desired) || p.Count(Update)+p.Count(Delete) != 0 {
		t.Fatalf("first plan: %d creates of %d", p.Count(Create), len(desired))
	}
	var text bytes.Buffer
	_ = p.WriteText(&text)
	for _, want := range []string{
		`+ resource "aws_iam_role" "api"`, `"sqs:SendMessage"`, `+ resource "aws_ecs_service" "mothergoose-worker"`,
		`+ resource "aws_scheduler_schedule" "uglyfox"`, `cron(*/5 * * * ? *)`, `task_role_arn      = (known after apply)`,
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("plan:\n%s", text.String())
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	// Deploying again changes nothing.
	p, _, err = e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		text.Reset()
		_ = p.WriteText(&text)
		t.Fatalf("second plan is not empty:\n%s", text.String())
	}

	// A container's memory: one update.
	n.MotherGoose.Containers.API.Memory = 2 * fly.GiB
	e, desired = awsEngine(t, st, n)
	p, actual, _ = e.Plan(ctx, desired)
	if len(p.Changes) != 1 || p.Changes[0].Address != "aws_ecs_service.api" || len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != "task.memory" {
		t.Fatalf("memory change plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := serviceMemory(t, e); m != 2048 {
		t.Fatalf("memory after deploy: %v", m)
	}

	// Rollback: the old value is back.
	entries, _ := e.Journal.Entries(ctx)
	to, _ := PreviousEntry(entries)
	rp, actual, err := e.RollbackPlan(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(rp.Changes) != 1 {
		t.Fatalf("rollback plan: %+v", rp.Changes)
	}
	if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := serviceMemory(t, e); m != 1024 {
		t.Fatalf("memory after rollback: %v", m)
	}
}

func serviceMemory(t *testing.T, e *Engine) float64 {
	t.Helper()
	got, err := e.Read(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Address() == "aws_ecs_service.api" {
			return mapOf(r.Props, "task")["memory"].(float64)
		}
	}
	t.Fatal("no api service")
	return 0
}

func TestAWSFailedDeployIsUndone(t *testing.T) {
	ctx := context.Background()
	st := newAWSStack(t)
	n := loadNest(t, "testdata/aws-nest")
	e, desired := awsEngine(t, st, n)
	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	st.proxy.Fail("ecs:CreateService", 100) // the SDK retries a 500
	_, err = e.Apply(ctx, p, actual, ApplyOptions{})
	var ae *ApplyError
	if !errors.As(err, &ae) || !ae.Undone || !strings.HasPrefix(ae.Address, "aws_ecs_service.") {
		t.Fatalf("apply: %v", err)
	}
	st.proxy.Fail("ecs:CreateService", 0)
	left, err := e.Read(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range left {
		if !r.Retain {
			t.Errorf("%s was left behind by the failed deploy", r.Address())
		}
	}
	if calls := st.srv.Calls(); calls["iam:DeleteRole"] == 0 || calls["sqs:DeleteQueue"] != 2 {
		t.Errorf("undo calls: %v", calls)
	}
	entries, _ := e.Journal.Entries(ctx)
	if len(entries) != 1 || entries[0].Status != StatusUndone {
		t.Errorf("journal: %+v", entries)
	}
	// The next deploy makes everything.
	p, actual, _ = e.Plan(ctx, desired)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
}
