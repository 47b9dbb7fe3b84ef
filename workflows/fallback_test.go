package workflows

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// Apply errors as the providers print them (see activities' capacity
// tests for where they come from).
var (
	errYandexQuota = errors.New("tofu apply yandex/vm in web-x: exit status 1: Error: Error while requesting API to create network: " +
		"server-request-id = 07abaedd-e376-4fed-af9c-a6dc6faa516d client-trace-id = 5aeaad0a-d47c-43a8-a7c0-2ffe644c8f52 " +
		"rpc error: code = ResourceExhausted desc = Quota limit vpc.networks.count exceeded | with yandex_vpc_network.app-network,")
	errAWSCapacity = errors.New("tofu apply aws/vm in web-x: exit status 1: Error: creating EC2 Instance: operation error EC2: RunInstances, " +
		"https response error StatusCode: 500, RequestID: 4b0b7a8d, api error InsufficientInstanceCapacity: We currently do not have " +
		"sufficient t3.large capacity in the Availability Zone you requested (us-west-2a). Our system will be working on provisioning additional capacity. | with aws_instance.runner,")
)

// fallbackEnv runs ProvisionRunner with every activity mocked; applies
// fail with refused[cloud] passed through activities.CapacityError, as
// ApplyMachine does.
func fallbackEnv(t *testing.T, refused map[string]error) (*testsuite.TestWorkflowEnvironment, *calls) {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	c := &calls{}
	e.RegisterWorkflow(ProvisionRunner)
	e.RegisterWorkflow(DeprovisionRunner)
	var a *activities.Activities
	e.RegisterActivity(a)
	e.OnActivity(a.RecordRunner, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.CreateGitLabRunner, mock.Anything, mock.Anything).Return(activities.CreateGitLabRunnerResult{GitLabRunnerID: 42, TokenRef: "aws-sm://gosling/runners/web-x/token"}, nil)
	e.OnActivity(a.EnsureEggRunner, mock.Anything, mock.Anything).Return(contract.EggRunner{GitLabRunnerID: 42, TokenRef: "aws-sm://gosling/runners/egg-runner.web.x/token"}, nil)
	e.OnActivity(a.ApplyMachine, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ApplyMachineInput) (activities.ApplyMachineResult, error) {
		at := in.Cloud
		if p := (fly.Placement{Cloud: in.Cloud, Capacity: in.Capacity, Zone: in.Zone}); p.CapacityType() != fly.CapacityOnDemand || p.Zone != "" {
			at = p.String()
		}
		c.add("apply:" + at + ":" + in.Provider.Name)
		if err := cmp.Or(refused[at], refused[in.Cloud]); err != nil {
			return activities.ApplyMachineResult{}, activities.CapacityError(in.Cloud, err)
		}
		if in.Running {
			e.RegisterDelayedCallback(func() {
				e.SignalWorkflow(contract.SignalRunnerReady, contract.RunnerReady{RunnerID: in.RunnerID})
			}, time.Second)
		}
		return activities.ApplyMachineResult{Workspace: in.RunnerID}, nil
	})
	e.OnActivity(a.DestroyMachine, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DestroyMachineInput) error {
		c.add("destroy")
		return nil
	})
	e.OnActivity(a.RecordCloudFallback, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CloudFallbackInput) error {
		c.add("fallback:" + in.From + ">" + in.To)
		if !strings.Contains(in.Reason, "refused") {
			t.Errorf("fallback reason %q", in.Reason)
		}
		return nil
	})
	e.OnActivity(a.TransitionRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.TransitionInput) (store.Runner, error) {
		c.add("to-" + string(in.To))
		return store.Runner{ID: in.RunnerID, State: in.To}, nil
	})
	e.OnActivity(a.DeleteGitLabRunner, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.DeleteRunnerToken, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.MintAgentCredential, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.AgentCredentialInput) (string, error) {
		return "local://runners/" + in.RunnerID + "/agent", nil
	})
	e.OnActivity(a.RevokeAgentCredential, mock.Anything, mock.Anything).Return(nil)
	e.SetStartWorkflowOptions(startOpts(wfID))
	return e, c
}

func cloudEgg(kind string, clouds ...string) fly.Egg {
	e := testEgg(kind)
	e.Runner.Clouds = clouds
	e.Runner.CPU, e.Runner.Memory = 2, 4*fly.GiB
	return e
}

var providers = map[string]fly.Provider{
	fly.CloudYandex: {Name: fly.CloudYandex, FolderID: "b1g"},
	fly.CloudAWS:    {Name: fly.CloudAWS, Region: "eu-west-1"},
	fly.CloudLocal:  {Name: fly.CloudLocal},
}

// A quota refusal on the first cloud destroys what the apply left there,
// records the move and makes the runner on the next cloud, with its
// provider; the result says which cloud refused and why.
func TestProvisionFallsBackOnCapacity(t *testing.T) {
	e, c := fallbackEnv(t, map[string]error{fly.CloudYandex: errYandexQuota})
	e.ExecuteWorkflow(ProvisionRunner, contract.ProvisionRunnerInput{
		RunnerID: "web-x", Egg: cloudEgg(fly.RunnerVM, fly.CloudYandex, fly.CloudAWS),
		Provider: providers[fly.CloudYandex], Providers: providers,
	})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if got, want := c.String(), "to-registering,apply:yandex:yandex,destroy,fallback:yandex>aws,apply:aws:aws,to-active"; got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
	if res.Cloud != fly.CloudAWS || res.State != "active" ||
		!strings.Contains(res.CloudReason, "yandex refused (quota): ") || !strings.Contains(res.CloudReason, "Quota limit vpc.networks.count exceeded") ||
		!strings.HasSuffix(res.CloudReason, "falling back to aws") {
		t.Errorf("result = %+v", res)
	}
}

// When every cloud refuses, the runner fails and is compensated; the
// error and the result name every refusal.
func TestProvisionFallbackRunsOut(t *testing.T) {
	e, c := fallbackEnv(t, map[string]error{fly.CloudYandex: errYandexQuota, fly.CloudAWS: errAWSCapacity})
	e.ExecuteWorkflow(ProvisionRunner, contract.ProvisionRunnerInput{
		RunnerID: "web-x", Egg: cloudEgg(fly.RunnerVM, fly.CloudYandex, fly.CloudAWS),
		Provider: providers[fly.CloudYandex], Providers: providers,
	})
	err := e.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "no other cloud of the egg fits") || !strings.Contains(err.Error(), "InsufficientInstanceCapacity") {
		t.Fatalf("error = %v", err)
	}
	if got, want := c.String(), "to-registering,apply:yandex:yandex,destroy,fallback:yandex>aws,apply:aws:aws,to-failed,destroy,to-terminated"; got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
}

// Errors that are not the cloud's refusal, and eggs without the Nest's
// providers, fail as before: no other cloud is tried.
func TestProvisionNoFallback(t *testing.T) {
	for name, tc := range map[string]struct {
		refused   map[string]error
		providers map[string]fly.Provider
	}{
		"other error":  {map[string]error{fly.CloudYandex: errors.New("tofu apply: Error: Unsupported argument")}, providers},
		"no providers": {map[string]error{fly.CloudYandex: errYandexQuota}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			e, c := fallbackEnv(t, tc.refused)
			e.ExecuteWorkflow(ProvisionRunner, contract.ProvisionRunnerInput{
				RunnerID: "web-x", Egg: cloudEgg(fly.RunnerVM, fly.CloudYandex, fly.CloudAWS),
				Provider: providers[fly.CloudYandex], Providers: tc.providers,
			})
			if e.GetWorkflowError() == nil {
				t.Fatal("want an error")
			}
			if strings.Contains(c.String(), "aws") {
				t.Errorf("calls = %s: aws tried", c)
			}
		})
	}
	var ae *temporal.ApplicationError
	if err := activities.CapacityError(fly.CloudYandex, errors.New("Error: Unsupported argument")); errors.As(err, &ae) {
		t.Errorf("not a refusal, classified %v", err)
	}
}

// The next cloud is the first untried one in the egg's order where the
// runner can be made as it is; the others are named with the reason.
func TestNextCloud(t *testing.T) {
	// 8 vCPU with 16GiB: a Fargate task, a VM on Yandex.
	auto := cloudEgg(fly.RunnerAuto, fly.CloudAWS, fly.CloudYandex)
	auto.Runner.CPU, auto.Runner.Memory = 8, 16*fly.GiB
	auto.Runner.ExpectedJobDuration = fly.Duration(30 * time.Minute)
	// 1 core with 1GiB: a Serverless Container, no Fargate task.
	small := cloudEgg(fly.RunnerServerless, fly.CloudYandex, fly.CloudAWS)
	small.Runner.CPU, small.Runner.Memory = 1, fly.GiB
	for _, tc := range []struct {
		name      string
		in        contract.ProvisionRunnerInput
		tried     []string
		kind      string
		want      string
		skipped   string
		wantFound bool
	}{
		{"next in order", contract.ProvisionRunnerInput{Egg: cloudEgg(fly.RunnerVM, fly.CloudYandex, fly.CloudAWS), Providers: providers},
			[]string{fly.CloudYandex}, fly.RunnerVM, fly.CloudAWS, "", true},
		{"no provider", contract.ProvisionRunnerInput{Egg: cloudEgg(fly.RunnerVM, fly.CloudYandex, fly.CloudAWS), Providers: map[string]fly.Provider{fly.CloudYandex: {}}},
			[]string{fly.CloudYandex}, fly.RunnerVM, "", "aws: no provider block in the Nest", false},
		{"token store differs", contract.ProvisionRunnerInput{Egg: cloudEgg(fly.RunnerVM, fly.CloudAWS, fly.CloudLocal, fly.CloudYandex), Providers: providers},
			[]string{fly.CloudAWS}, fly.RunnerVM, fly.CloudYandex, "local: its machines read runner tokens from another store", true},
		{"kind differs", contract.ProvisionRunnerInput{Egg: auto, Providers: providers},
			[]string{fly.CloudAWS}, fly.RunnerServerless, "", "yandex: its runners would be vm, not serverless", false},
		{"no serverless size", contract.ProvisionRunnerInput{Egg: small, Providers: providers},
			[]string{fly.CloudYandex}, fly.RunnerServerless, "", "aws: no serverless size there fits the egg's cpu and memory", false},
		{"all tried", contract.ProvisionRunnerInput{Egg: cloudEgg(fly.RunnerVM, fly.CloudYandex, fly.CloudAWS), Providers: providers},
			[]string{fly.CloudYandex, fly.CloudAWS}, fly.RunnerVM, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, skipped, ok := nextPlacementOf(tc.in, tc.tried, tc.kind)
			if ok != tc.wantFound || next.Cloud != tc.want || strings.Join(skipped, "; ") != tc.skipped {
				t.Errorf("next = %q %v, skipped %q; want %q %v, skipped %q", next.Cloud, ok, skipped, tc.want, tc.wantFound, tc.skipped)
			}
		})
	}
}

// nextPlacementOf is nextPlacement with the tried clouds bought as the egg
// buys them there.
func nextPlacementOf(in contract.ProvisionRunnerInput, tried []string, kind string) (fallbackPlacement, []string, bool) {
	var ps []fly.Placement
	for _, c := range tried {
		ps = append(ps, fly.Placement{Cloud: c, Capacity: in.Egg.Runner.CapacityOn(c)})
	}
	return nextPlacement(in, ps, kind)
}

// An egg whose runners are bought as preemptible VMs, with a fallback
// list: Yandex preemptible, Yandex on demand in another zone, AWS Spot,
// AWS on demand.
func spotEgg() fly.Egg {
	e := cloudEgg(fly.RunnerVM, fly.CloudYandex, fly.CloudAWS)
	e.Runner.Capacity = fly.CapacityPreemptible
	e.Runner.Fallback = []fly.Placement{
		{Cloud: fly.CloudYandex, Capacity: fly.CapacityOnDemand, Zone: "ru-central1-b"},
		{Cloud: fly.CloudAWS, Capacity: fly.CapacitySpot},
		{Cloud: fly.CloudAWS, Capacity: fly.CapacityOnDemand},
	}
	return e
}

var errYandexExhausted = errors.New("tofu apply yandex/vm in web-x: exit status 1: Error: Error while requesting API to create instance: " +
	"rpc error: code = ResourceExhausted desc = Not enough resources in zone ru-central1-a | with yandex_compute_instance.runner,")

// Refusals walk the fallback list in order, capacity type and zone
// included; the result lists every refusal and the placement that took.
func TestProvisionWalksFallbackList(t *testing.T) {
	e, c := fallbackEnv(t, map[string]error{
		"yandex/preemptible":             errYandexExhausted,
		"yandex/on_demand/ru-central1-b": errYandexQuota,
	})
	e.ExecuteWorkflow(ProvisionRunner, contract.ProvisionRunnerInput{
		RunnerID: "web-x", Egg: spotEgg(), Provider: providers[fly.CloudYandex], Providers: providers,
	})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	want := "to-registering,apply:yandex/preemptible:yandex,destroy,fallback:yandex>yandex,apply:yandex/on_demand/ru-central1-b:yandex," +
		"destroy,fallback:yandex>aws,apply:aws/spot:aws,to-active"
	if got := c.String(); got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
	if res.Cloud != fly.CloudAWS || res.Capacity != fly.CapacitySpot || len(res.Refusals) != 2 ||
		res.Refusals[0].Placement.String() != "yandex/preemptible" || res.Refusals[0].Class != "capacity" ||
		res.Refusals[1].Placement.String() != "yandex/on_demand/ru-central1-b" || res.Refusals[1].Class != "quota" ||
		!strings.HasSuffix(res.CloudReason, "falling back to aws/spot") {
		t.Errorf("result = %+v", res)
	}
}

// Placements the pool avoids after a recent refusal are not asked: the
// machine is asked for at the first one that is not avoided, and the walk
// passes the avoided ones by. When every placement is avoided the order
// is followed as it is.
func TestProvisionAvoidsRefusedPlacements(t *testing.T) {
	for name, tc := range map[string]struct {
		avoid   []fly.Placement
		refused map[string]error
		want    string
	}{
		"first avoided": {
			avoid: []fly.Placement{{Cloud: fly.CloudYandex, Capacity: fly.CapacityPreemptible}},
			want:  "to-registering,apply:yandex/on_demand/ru-central1-b:yandex,to-active",
		},
		"avoided one passed by in the walk": {
			avoid:   []fly.Placement{{Cloud: fly.CloudAWS, Capacity: fly.CapacitySpot}},
			refused: map[string]error{"yandex/preemptible": errYandexExhausted, "yandex/on_demand/ru-central1-b": errYandexQuota},
			want: "to-registering,apply:yandex/preemptible:yandex,destroy,fallback:yandex>yandex,apply:yandex/on_demand/ru-central1-b:yandex," +
				"destroy,fallback:yandex>aws,apply:aws:aws,to-active",
		},
		"all avoided": {
			avoid: []fly.Placement{
				{Cloud: fly.CloudYandex, Capacity: fly.CapacityPreemptible}, {Cloud: fly.CloudYandex, Capacity: fly.CapacityOnDemand, Zone: "ru-central1-b"},
				{Cloud: fly.CloudAWS, Capacity: fly.CapacitySpot}, {Cloud: fly.CloudAWS, Capacity: fly.CapacityOnDemand},
			},
			want: "to-registering,apply:yandex/preemptible:yandex,to-active",
		},
	} {
		t.Run(name, func(t *testing.T) {
			e, c := fallbackEnv(t, tc.refused)
			e.ExecuteWorkflow(ProvisionRunner, contract.ProvisionRunnerInput{
				RunnerID: "web-x", Egg: spotEgg(), Provider: providers[fly.CloudYandex], Providers: providers, Avoid: tc.avoid,
			})
			var res contract.ProvisionRunnerResult
			if err := e.GetWorkflowResult(&res); err != nil {
				t.Fatal(err)
			}
			if got := c.String(); got != tc.want {
				t.Errorf("calls = %s, want %s", got, tc.want)
			}
		})
	}
}
