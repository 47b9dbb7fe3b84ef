package bootstrap

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gosling-ci/gosling/bootstrap/awstest"
	"github.com/gosling-ci/gosling/bootstrap/yctest"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

const ycToken = "t1.test-deployer"

// ycStack is the Yandex stand-in and, for Message Queue, the SQS one.
type ycStack struct {
	*yctest.Server
	ymq *awstest.Server
}

func yandexEngine(t testing.TB, srv *ycStack, n *fly.Nest) (*Engine, []Resource) {
	t.Helper()
	ymq := awstest.Config(srv.ymq.URL)
	ymq.Region = "ru-central1"
	p, err := NewYandexProvider(context.Background(), DeploymentName(n), n, YandexOptions{
		Auth: yandexauth.Options{Endpoint: srv.Addr, Plaintext: true, IAMToken: ycToken}, PollInterval: time.Millisecond,
		MessageQueue: &ymq,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	desired, err := YandexDesired(n, p.FolderID)
	if err != nil {
		t.Fatal(err)
	}
	return &Engine{Deployment: DeploymentName(n), Cloud: "yandex", Providers: []Provider{p}, Journal: p.NewYandexJournal()}, desired
}

func newYC(t testing.TB) *ycStack {
	t.Helper()
	srv, err := yctest.New(ycToken)
	if err != nil {
		t.Fatal(err)
	}
	ymq := awstest.New()
	t.Cleanup(func() { srv.Close(); ymq.Close() })
	// The secret the example Nest's URIs name, made by hand before any
	// deploy; the auth function reads its two API tokens.
	srv.PutSecret(exampleFolder, exampleLockbox, "gosling-by-hand", map[string]string{"api_token_ops": "ops-token", "api_token_ci": "ci-token"})
	return &ycStack{Server: srv, ymq: ymq}
}

// The folder and the Lockbox secret of examples/nest.
const (
	exampleFolder  = "b1gexamplefolder0001"
	exampleLockbox = "e6qexamplelockbox0001"
)

func apiRevision(t *testing.T, srv *ycStack, e *Engine) map[string]any {
	t.Helper()
	got, err := e.Read(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Address() == YCContainer+".api" {
			if revs := srv.Revisions(r.ID); len(revs) == 0 {
				t.Fatal("the api container has no revision")
			}
			return mapOf(r.Props, "revision")
		}
	}
	t.Fatal("no api container")
	return nil
}

func TestYandexDeploySequence(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	n := loadNest(t, "../examples/nest")
	e, desired := yandexEngine(t, srv, n)

	p, actual, err := e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if p.Count(Create) != len(desired) {
		t.Fatalf("first plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if calls := srv.Calls(); calls["Get"] == 0 {
		t.Errorf("no operation was polled: %v", calls)
	}
	roles := 0
	for _, b := range srv.Bindings(YandexFolder(n)) {
		if b.GetSubject().GetType() == "serviceAccount" {
			roles++
		}
	}
	want := 0
	for _, rs := range ycRoles {
		want += len(rs)
	}
	if roles != want {
		t.Errorf("%d folder roles bound, want %d", roles, want)
	}
	if ts := srv.Triggers(); len(ts) != 1+len(n.Jobs) || ts[0].GetRule().GetTimer().GetInvokeContainerWithRetry().GetContainerId() == "" {
		t.Errorf("triggers: %v", ts)
	}
	for _, tr := range srv.Triggers() {
		if tr.GetName() == "gosling-prod-uglyfox" && tr.GetRule().GetTimer().GetCronExpression() != "*/5 * * * ? *" {
			t.Errorf("uglyfox trigger cron: %q", tr.GetRule().GetTimer().GetCronExpression())
		}
	}
	made, err := e.Read(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	secrets := 0
	for _, r := range made {
		if r.Type == YCSecret && r.Retain && r.Outputs["id"] != "" {
			secrets++
		}
	}
	if secrets != 2 {
		t.Errorf("%d Lockbox secrets made, want 2", secrets)
	}
	if sec := srv.Secret("gosling-prod-runner-tokens"); sec == nil || sec.GetCurrentVersion() != nil {
		t.Errorf("the runner tokens' secret is not empty: %v", sec)
	}
	if calls := srv.ymq.Calls(); calls["sqs:CreateQueue"] != 2 {
		t.Errorf("Message Queue calls: %v", calls)
	}
	if spec := srv.Gateways()["gosling-prod"]; !strings.Contains(spec, `"type":"serverless_containers"`) || strings.Contains(spec, "${") {
		t.Errorf("API gateway spec: %s", spec)
	}

	p, _, err = e.Plan(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Fatalf("second plan: %+v", p.Changes)
	}

	n.MotherGoose.Containers.API.Memory = 1 * fly.GiB
	e, desired = yandexEngine(t, srv, n)
	p, actual, _ = e.Plan(ctx, desired)
	if len(p.Changes) != 1 || p.Changes[0].Address != YCContainer+".api" || len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != "revision.memory" {
		t.Fatalf("memory change plan: %+v", p.Changes)
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := apiRevision(t, srv, e)["memory"]; m != float64(fly.GiB) {
		t.Fatalf("memory after deploy: %v", m)
	}

	entries, _ := e.Journal.Entries(ctx)
	to, _ := PreviousEntry(entries)
	rp, actual, err := e.RollbackPlan(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := apiRevision(t, srv, e)["memory"]; m != float64(512*fly.MiB) {
		t.Fatalf("memory after rollback: %v", m)
	}
}

func TestYandexFailedDeployIsUndone(t *testing.T) {
	ctx := context.Background()
	n := loadNest(t, "../examples/nest")
	for _, tc := range []struct {
		name   string
		break_ func(*ycStack)
		code   codes.Code
	}{
		{"internal error in the middle", func(s *ycStack) { s.Fail("DeployRevision", 1) }, codes.Internal},
		{"permission denied", func(s *ycStack) { s.Deny("DeployRevision") }, codes.PermissionDenied},
		{"quota exceeded", func(s *ycStack) { s.SetQuota(yctest.QuotaContainers, 2) }, codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newYC(t)
			e, desired := yandexEngine(t, srv, n)
			p, actual, err := e.Plan(ctx, desired)
			if err != nil {
				t.Fatal(err)
			}
			tc.break_(srv)
			_, err = e.Apply(ctx, p, actual, ApplyOptions{})
			var ae *ApplyError
			if !errors.As(err, &ae) || !ae.Undone || status.Code(errors.Unwrap(ae.Err)) != tc.code {
				t.Fatalf("apply: %v (code %v)", err, status.Code(errors.Unwrap(errorsUnwrapAll(err))))
			}
			if sas, cts, dbs := srv.Counts(); sas != 0 || cts != 0 || dbs != 1 {
				t.Errorf("left behind: %d service accounts, %d containers, %d databases (the database is retained)", sas, cts, dbs)
			}
			if len(srv.Bindings(YandexFolder(n))) != 0 {
				t.Error("folder roles left behind")
			}
			if c := srv.ymq.Calls(); c["sqs:CreateQueue"] != c["sqs:DeleteQueue"] {
				t.Errorf("queues left behind: %v", c)
			}
		})
	}
}

// errorsUnwrapAll returns the innermost error.
func errorsUnwrapAll(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

func TestYandexNameTaken(t *testing.T) {
	ctx := context.Background()
	srv := newYC(t)
	n := loadNest(t, "../examples/nest")
	e, desired := yandexEngine(t, srv, n)
	// Someone made a container of that name by hand: it carries no label,
	// so deploy does not adopt it and Yandex refuses the name.
	p, actual, _ := e.Plan(ctx, desired)
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	e2, desired2 := yandexEngine(t, srv, n)
	e2.Deployment = "another"
	for _, pr := range e2.Providers {
		pr.(*YandexProvider).Deployment = "another"
	}
	p, actual, _ = e2.Plan(ctx, desired2)
	_, err := e2.Apply(ctx, p, actual, ApplyOptions{})
	if status.Code(errorsUnwrapAll(err)) != codes.AlreadyExists || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("apply over taken names: %v", err)
	}
}
