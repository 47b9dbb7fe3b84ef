package bootstrap

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// countingTransport counts the HTTP requests it carries.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// BenchmarkPlan200Eggs plans a deployed Nest of 200 eggs (one project
// each) against the AWS stand-in, dynalite and the GitLab test server:
// what `gosling plan` costs when nothing changed. It reports the API calls
// one plan makes.
func BenchmarkPlan200Eggs(b *testing.B) {
	ctx := context.Background()
	st := newAWSStack(b)
	gl := gitlabtest.New()
	b.Cleanup(gl.Close)
	n := st.nest(b, "testdata/aws-nest")
	n.MotherGoose.Database.TablePrefix = fmt.Sprintf("bench-%d", time.Now().UnixNano())
	host := strings.TrimPrefix(gl.URL(), "http://")
	base := n.Eggs[0]
	n.Eggs = nil
	for i := range 200 {
		e := base
		e.Name = fmt.Sprintf("egg-%03d", i)
		e.GitLab = fly.GitLab{Host: host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: "local://gitlab/hook"}
		path := fmt.Sprintf("acme/project-%03d", i)
		gl.AddProject(path, 0)
		e.Projects = []fly.ProjectRef{{Path: path}}
		n.Eggs = append(n.Eggs, e)
	}
	resolve := mapResolver(map[fly.SecretRef]string{"local://gitlab/token": gl.Token(), "local://gitlab/hook": "hook-secret"})
	glCalls := &countingTransport{}
	clients := NewGitLabClients(resolve, gitlab.WithHTTPClient(&http.Client{Transport: glCalls}))
	e, desired := awsEngine(b, st, n)
	hooks, err := GitLabDesired(ctx, n, clients)
	if err != nil {
		b.Fatal(err)
	}
	desired = append(desired, hooks...)
	e.Providers = append(e.Providers, &GitLabProvider{Deployment: e.Deployment, Clients: clients, Resolve: resolve})
	deployAll(b, e, desired)
	st.moto.ResetCalls()
	glCalls.n.Store(0)
	b.ResetTimer()
	planEmpty(b, e, desired)
	b.StopTimer()
	aws := 0
	for _, c := range st.moto.Calls() {
		aws += c
	}
	b.ReportMetric(float64(aws)/float64(b.N), "aws-calls/op")
	b.ReportMetric(float64(glCalls.n.Load())/float64(b.N), "gitlab-calls/op")
	b.ReportMetric(float64(len(desired)), "resources")
}

// BenchmarkDeployExampleNest deploys examples/nest (the Yandex variant,
// without its GitLab hooks, whose hosts are real) from nothing to the
// Yandex stand-in, operations polled every millisecond. With Serverless
// Containers for the workers, timer triggers and Message Queue's queues
// on moto it took 186 ms/op; with instance groups and neither 54 ms/op
// (same machine, -benchtime 3x).
func BenchmarkDeployExampleNest(b *testing.B) {
	ctx := context.Background()
	n := loadNest(b, "../examples/nest")
	for b.Loop() {
		b.StopTimer()
		srv := newYC(b)
		e, desired := yandexEngine(b, srv, n)
		b.StartTimer()
		p, actual, err := e.Plan(ctx, desired)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeployAWSNest deploys the AWS variant (testdata/aws-nest) from
// nothing to moto (through the proxy of awstest), and reports the AWS
// calls the deploy makes. Before moto it ran against an in-process
// stand-in and dynalite: 1.13 s/op on the same machine, against moto
// 11.7 s/op. When every change read the whole deployment back it made
// 2,238 calls (10.2 s/op; 1,817 calls, 11.9 s/op, without the queues and
// schedules); reading back only the changed resource's family, 242
// calls, 3.3 s/op.
func BenchmarkDeployAWSNest(b *testing.B) {
	ctx := context.Background()
	calls := 0
	for b.Loop() {
		b.StopTimer()
		st := newAWSStack(b) // an account of its own on the shared moto
		n := st.nest(b, "testdata/aws-nest")
		e, desired := awsEngine(b, st, n)
		st.moto.ResetCalls()
		b.StartTimer()
		p, actual, err := e.Plan(ctx, desired)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		for _, c := range st.moto.Calls() {
			calls += c
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(calls)/float64(b.N), "aws-calls/op")
}

// BenchmarkAWSDeploySequence is TestAWSDeploySequence's path without its
// checks: a first deploy of testdata/aws-nest, a deploy that changes
// nothing, a change of the API's memory and its rollback, against moto.
// Against the in-process stand-in moto replaced it took 3.2 s/op on the
// same machine (dynalite for DynamoDB), against moto 15.5 s/op (16.4 s/op
// measured again): moto answers a call in about 5 ms, and a deploy made
// some 2,200 calls, since every change read the deployment back. Reading
// back only the changed resource's family: 3.0 s/op.
func BenchmarkAWSDeploySequence(b *testing.B) {
	ctx := context.Background()
	apply := func(e *Engine, desired []Resource) {
		p, actual, err := e.Plan(ctx, desired)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		b.StopTimer()
		st := newAWSStack(b)
		n := st.nest(b, "testdata/aws-nest")
		b.StartTimer()
		e, desired := awsEngine(b, st, n)
		apply(e, desired)
		apply(e, desired)
		n.MotherGoose.Containers.API.Memory = 2 * fly.GiB
		e, desired = awsEngine(b, st, n)
		apply(e, desired)
		entries, err := e.Journal.Entries(ctx)
		if err != nil {
			b.Fatal(err)
		}
		to, err := PreviousEntry(entries)
		if err != nil {
			b.Fatal(err)
		}
		rp, actual, err := e.RollbackPlan(ctx, to)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
		n.MotherGoose.Containers.API.Memory = 1 * fly.GiB
	}
}

// planEmpty plans desired b.N times, each plan changing nothing.
func planEmpty(b *testing.B, e *Engine, desired []Resource) {
	for b.Loop() {
		p, _, err := e.Plan(context.Background(), desired)
		if err != nil {
			b.Fatal(err)
		}
		if !p.Empty() {
			b.Fatalf("plan of a deployed Nest: %d changes", len(p.Changes))
		}
	}
}

// BenchmarkPlanExampleNest plans examples/nest (the Yandex variant,
// without its GitLab hooks) against the Yandex stand-in: from nothing
// (what the first `gosling plan` costs) and once deployed (what a plan
// that changes nothing costs), operations polled every millisecond.
// With the queues (read from moto) and triggers: 13.8 and 41.2 ms/op;
// with instance groups and neither: 1.7 and 3.7 ms/op.
func BenchmarkPlanExampleNest(b *testing.B) {
	ctx := context.Background()
	n := loadNest(b, "../examples/nest")
	srv := newYC(b)
	e, desired := yandexEngine(b, srv, n)
	b.Run("empty", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := e.Plan(ctx, desired); err != nil {
				b.Fatal(err)
			}
		}
	})
	deployAll(b, e, desired)
	b.Run("deployed", func(b *testing.B) { planEmpty(b, e, desired) })
}

// BenchmarkPlanAWSNest plans the AWS variant (testdata/aws-nest) against
// moto, from nothing and once deployed, and reports the AWS calls of one
// plan: with the queues and schedules 20 and 71 calls (98 and 314 ms/op),
// without 18 and 58 (84 and 260 ms/op).
func BenchmarkPlanAWSNest(b *testing.B) {
	ctx := context.Background()
	st := newAWSStack(b)
	n := st.nest(b, "testdata/aws-nest")
	e, desired := awsEngine(b, st, n)
	calls := func(b *testing.B) {
		total := 0
		for _, c := range st.moto.Calls() {
			total += c
		}
		b.ReportMetric(float64(total)/float64(b.N), "aws-calls/op")
	}
	b.Run("empty", func(b *testing.B) {
		st.moto.ResetCalls()
		for b.Loop() {
			if _, _, err := e.Plan(ctx, desired); err != nil {
				b.Fatal(err)
			}
		}
		calls(b)
	})
	deployAll(b, e, desired)
	b.Run("deployed", func(b *testing.B) {
		st.moto.ResetCalls()
		planEmpty(b, e, desired)
		calls(b)
	})
}
