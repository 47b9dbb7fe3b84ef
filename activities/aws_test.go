package activities

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/gosling-ci/gosling/activities/awsmachinetest"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/runnerid"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/tofu"
)

// The EC2 and IAM here are awsmachinetest's stand-in: moto is not
// installed in this worktree's bin/.
func newAWSCloud(t *testing.T) (*AWSCloud, *awsmachinetest.Server) {
	t.Helper()
	srv := awsmachinetest.New()
	t.Cleanup(srv.Close)
	cfg := aws.Config{Region: "eu-central-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")}
	return NewAWSCloudFromConfig("gosling-prod", cfg), srv
}

// The AWS inventory finds the deployment's instances by their tags, across
// pages, leaves out terminated ones and other deployments', and
// terminates one; an instance already gone is no error.
func TestAWSInventory(t *testing.T) {
	c, srv := newAWSCloud(t)
	tags := func(dep, runner string) map[string]string {
		return map[string]string{"gosling:deployment": dep, "gosling:egg": "web", "gosling:runner": runner, "Name": "gosling-" + runner}
	}
	var ours []string
	for i := range 1030 {
		switch {
		case i%100 == 2:
			srv.AddInstance("terminated", tags("gosling-prod", "web-c"))
		case i%100 == 3:
			srv.AddInstance("running", tags("gosling-staging", "web-x"))
		case i%2 == 0:
			ours = append(ours, srv.AddInstance("running", tags("gosling-prod", "web-a")))
		default:
			ours = append(ours, srv.AddInstance("stopped", tags("gosling-prod", "web-b")))
		}
	}
	srv.AddInstance("running", map[string]string{"gosling:deployment": "gosling-prod"})
	ms, err := c.ListMachines(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != len(ours) {
		t.Fatalf("machines %+v, want %d", ms, len(ours))
	}
	for i, m := range ms {
		if m.Cloud != fly.CloudAWS || m.ID != ours[i] || m.Egg != "web" || m.RunnerID == "" {
			t.Errorf("machine %+v, want %s", m, ours[i])
		}
	}
	if srv.Calls("DescribeInstances") < 2 {
		t.Errorf("%d DescribeInstances: the second page was not read", srv.Calls("DescribeInstances"))
	}
	if err := c.TerminateMachine(context.Background(), contract.MachineRef{Cloud: fly.CloudAWS, ID: ours[0]}); err != nil {
		t.Fatal(err)
	}
	if st := srv.State(ours[0]); st != "terminated" {
		t.Errorf("after TerminateInstances: %s", st)
	}
	if err := c.TerminateMachine(context.Background(), contract.MachineRef{Cloud: fly.CloudAWS, ID: "i-0000000000000dead"}); err != nil {
		t.Errorf("terminating an instance that is gone: %v", err)
	}
}

// An egg's runner identity is its runner role with the instance profile of
// the same name and its execution role, under the deployment's IAM path;
// a missing one, or a role of that name elsewhere, is no identity.
func TestAWSRunnerIdentity(t *testing.T) {
	c, srv := newAWSCloud(t)
	path := runnerid.AWSPath("gosling-prod")
	srv.AddRole(runnerid.AWSRole("gosling-prod", "api"), "/", true)
	srv.AddRole(runnerid.AWSExecutionRole("gosling-prod", "api"), path, false)
	if _, err := c.RunnerIdentity(context.Background(), "api"); !errors.Is(err, tofu.ErrNoIdentity) {
		t.Errorf("a role outside the deployment's path: %v", err)
	}
	role := srv.AddRole(runnerid.AWSRole("gosling-prod", "web"), path, false)
	exec := srv.AddRole(runnerid.AWSExecutionRole("gosling-prod", "web"), path, false)
	if _, err := c.RunnerIdentity(context.Background(), "web"); !errors.Is(err, tofu.ErrNoIdentity) {
		t.Errorf("no instance profile: %v", err)
	}
	srv.AddRole(runnerid.AWSRole("gosling-prod", "web"), path, true)
	id, err := c.RunnerIdentity(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if id.RoleARN != role.Arn || id.ExecutionRoleARN != exec.Arn || id.InstanceProfile != "gosling-prod-runner-web" {
		t.Errorf("identity %+v", id)
	}
	n := srv.Calls("GetRole")
	if _, err := c.RunnerIdentity(context.Background(), "web"); err != nil || srv.Calls("GetRole") != n {
		t.Errorf("a second lookup asked IAM again (%v)", err)
	}
}

// failingInventory is a cloud whose API answers nothing.
type failingInventory struct{ cloud string }

func (f failingInventory) Cloud() string { return f.cloud }

func (f failingInventory) ListMachines(context.Context) ([]LabeledMachine, error) {
	return nil, errors.New("the cloud's API is down")
}

func (f failingInventory) TerminateMachine(context.Context, contract.MachineRef) error {
	return errors.New("the cloud's API is down")
}

// A runner's teardown asks only its own cloud for what its labels still
// show: another cloud's API being down holds up nothing; a runner with no
// record asks every cloud.
func TestMachinesOfAsksTheRunnersCloud(t *testing.T) {
	c, srv := newAWSCloud(t)
	id := srv.AddInstance("running", map[string]string{"gosling:deployment": "gosling-prod", "gosling:egg": "web", "gosling:runner": "web-1"})
	st := openSQLiteStore(t)
	if err := st.CreateRunner(context.Background(), &store.Runner{ID: "web-1", Egg: "web", Cloud: fly.CloudAWS, Kind: fly.RunnerVM, State: store.StateProvisioning}); err != nil {
		t.Fatal(err)
	}
	a := &Activities{Store: st, Inventories: []Inventory{failingInventory{fly.CloudYandex}, c}}
	got, err := a.machinesOf(context.Background(), "web-1")
	if err != nil || len(got) != 1 || got[0].ID != id {
		t.Errorf("machines of web-1: %v, %v", got, err)
	}
	if _, err := a.machinesOf(context.Background(), "web-unknown"); err == nil {
		t.Error("a runner without a record skipped a cloud")
	}
}
