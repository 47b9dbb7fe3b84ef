package activities

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/bootstrap/yctest"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/runnerid"
	"github.com/gosling-ci/gosling/internal/testbin"
	"github.com/gosling-ci/gosling/internal/yandexauth"
	"github.com/gosling-ci/gosling/tofu"
	compute "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1"
	iam "github.com/yandex-cloud/go-genproto/yandex/cloud/iam/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

const (
	ycFolder = "b1gfolder0000000001"
	ycToken  = "t1.test-token"
)

// newYandexCloud is a YandexCloud of deployment "gosling-prod" on the
// Compute, IAM and Lockbox stand-in.
func newYandexCloud(t *testing.T) (*YandexCloud, *yctest.Server) {
	t.Helper()
	srv, err := yctest.New(ycToken)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	yc, err := NewYandexCloud(YandexOptions{
		Auth: yandexauth.Options{Endpoint: srv.Addr, Plaintext: true, IAMToken: ycToken}, Deployment: "gosling-prod",
		FolderID: ycFolder, PollInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = yc.Close(context.Background()) })
	return yc, srv
}

// ycCall calls the stand-in as a client of the test's own, for what the
// workers never do themselves (making a service account).
func ycCall(t *testing.T, srv *yctest.Server) (*grpc.ClientConn, context.Context) {
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+ycToken)
}

func makeServiceAccount(t *testing.T, srv *yctest.Server, name string) string {
	conn, ctx := ycCall(t, srv)
	op, err := iam.NewServiceAccountServiceClient(conn).Create(ctx, &iam.CreateServiceAccountRequest{FolderId: ycFolder, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := operation.NewOperationServiceClient(conn).Get(ctx, &operation.GetOperationRequest{OperationId: op.GetId()}); err != nil {
		t.Fatal(err)
	}
	var md iam.CreateServiceAccountMetadata
	_ = op.GetMetadata().UnmarshalTo(&md)
	return md.GetServiceAccountId()
}

// A Compute Cloud VM is stopped (Nadir) and started (Apex) through the
// Compute API, each operation awaited: the instance is STOPPING until its
// operation is polled and done, and SetPower returns only then. An
// instance already as asked is left alone.
func TestYandexPowerThroughComputeAPI(t *testing.T) {
	yc, srv := newYandexCloud(t)
	id := srv.AddInstance(&compute.Instance{FolderId: ycFolder, Name: "gosling-web-1", Status: compute.Instance_RUNNING})
	ctx := context.Background()
	if err := yc.SetPower(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	if st := srv.Instance(id).GetStatus(); st != compute.Instance_STOPPED {
		t.Fatalf("after stopping: %s, want STOPPED (the operation awaited)", st)
	}
	calls := srv.Calls()
	if calls["Stop"] != 1 || calls["Get"] < 2 {
		t.Errorf("calls %v: want one Stop and its operation polled", calls)
	}
	if err := yc.SetPower(ctx, id, false); err != nil || srv.Calls()["Stop"] != 1 {
		t.Errorf("stopping a stopped instance: %v, calls %v", err, srv.Calls())
	}
	if err := yc.SetPower(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if st := srv.Instance(id).GetStatus(); st != compute.Instance_RUNNING || srv.Calls()["Start"] != 1 {
		t.Errorf("after starting: %s, calls %v", st, srv.Calls())
	}
	if err := yc.SetPower(ctx, "fhmmissing", true); err == nil {
		t.Error("powering an instance that does not exist succeeded")
	}
}

// The Yandex inventory lists the deployment's machines by their labels,
// across pages, and deletes one, awaited; one already gone is no error.
func TestYandexInventory(t *testing.T) {
	yc, srv := newYandexCloud(t)
	labels := func(dep, runner string) map[string]string {
		return map[string]string{"gosling-deployment": dep, "gosling-egg": "web", "gosling-runner": runner}
	}
	var ours []string
	for i := range 1003 {
		if i%300 == 0 {
			ours = append(ours, srv.AddInstance(&compute.Instance{FolderId: ycFolder, Name: "r", Labels: labels("gosling-prod", "web-"+string(rune('a'+i/300))), Status: compute.Instance_RUNNING}))
			continue
		}
		srv.AddInstance(&compute.Instance{FolderId: ycFolder, Name: "other", Labels: labels("gosling-staging", "web-x"), Status: compute.Instance_RUNNING})
	}
	srv.AddInstance(&compute.Instance{FolderId: "b1gotherfolder", Labels: labels("gosling-prod", "web-z"), Status: compute.Instance_STOPPED})
	srv.AddInstance(&compute.Instance{FolderId: ycFolder, Name: "unlabelled", Status: compute.Instance_RUNNING})
	ms, err := yc.ListMachines(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != len(ours) {
		t.Fatalf("machines %+v, want %d", ms, len(ours))
	}
	for i, m := range ms {
		if m.Cloud != fly.CloudYandex || m.ID != ours[i] || m.Egg != "web" || m.RunnerID == "" {
			t.Errorf("machine %+v", m)
		}
	}
	if srv.Calls()["List"] < 2 {
		t.Errorf("calls %v: the second page was not read", srv.Calls())
	}
	if err := yc.TerminateMachine(context.Background(), contract.MachineRef{Cloud: fly.CloudYandex, ID: ours[0]}); err != nil {
		t.Fatal(err)
	}
	if srv.Instance(ours[0]) != nil {
		t.Error("instance left after its deletion was awaited")
	}
	if err := yc.TerminateMachine(context.Background(), contract.MachineRef{Cloud: fly.CloudYandex, ID: ours[0]}); err != nil {
		t.Errorf("terminating a deleted machine: %v", err)
	}
}

// An egg's runner identity is the service account (and Lockbox secret)
// named by internal/runnerid; without it the lookup says gosling deploy
// makes it.
func TestYandexRunnerIdentity(t *testing.T) {
	yc, srv := newYandexCloud(t)
	makeServiceAccount(t, srv, "gosling-prod-runner-api")
	_, err := yc.RunnerIdentity(context.Background(), "web")
	if !errors.Is(err, tofu.ErrNoIdentity) {
		t.Fatalf("no service account: %v", err)
	}
	sa := makeServiceAccount(t, srv, runnerid.YandexServiceAccount("gosling-prod", "web"))
	secret := "e6qrunnersweb0000001"
	srv.PutSecret(ycFolder, secret, runnerid.LockboxTokenSecret("gosling-prod", "web"), nil)
	id, err := yc.RunnerIdentity(context.Background(), "web")
	if err != nil || id.ServiceAccountID != sa {
		t.Fatalf("identity %+v, %v; want service account %s", id, err, sa)
	}
	if got, err := yc.TokenSecretID(context.Background(), "web"); err != nil || got != secret {
		t.Errorf("token secret %q, %v; want %s", got, err, secret)
	}
	if _, err := yc.TokenSecretID(context.Background(), "api"); !errors.Is(err, tofu.ErrNoIdentity) {
		t.Errorf("an egg without a token secret: %v", err)
	}
}

// ApplyMachine makes a Yandex VM as its egg's service account and puts it
// to sleep (Nadir) and wakes it (Apex) through the Compute API after
// OpenTofu's apply. yandex/vm's provider cannot run here: a module of
// built-in resources with its variables and outputs takes its place, and
// the instance it names lives in the Compute stand-in.
func TestApplyMachineYandexVMPower(t *testing.T) {
	yc, srv := newYandexCloud(t)
	sa := makeServiceAccount(t, srv, runnerid.YandexServiceAccount("gosling-prod", "web"))
	id := srv.AddInstance(&compute.Instance{Id: "fhm-web-1", FolderId: ycFolder, Name: "gosling-web-1", Status: compute.Instance_RUNNING})
	ex, err := tofu.New(testbin.Tofu(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	module, _ := filepath.Abs(filepath.Join("testdata", "yandexvm"))
	a := &Activities{
		Tofu: ex, Agent: AgentSettings{Deployment: "gosling-prod", Release: fly.AgentRelease{URL: "https://releases.example.com/gosling-agent"}},
		Identities: map[string]IdentitySource{fly.CloudYandex: yc}, Power: map[string]PowerControl{fly.CloudYandex: yc},
	}
	egg := fly.Egg{Name: "web", GitLab: fly.GitLab{Host: "gitlab.example.com"}, Runner: fly.Runner{CPU: 2, Memory: 4 * fly.GiB, Disk: 20 * fly.GiB, Image: "alpine:3.20", Module: module}}
	in := ApplyMachineInput{RunnerID: "web-1", Egg: egg, Cloud: fly.CloudYandex, Kind: fly.RunnerVM, Running: false,
		Provider: fly.Provider{FolderID: ycFolder, Zone: "ru-central1-a", SubnetID: "e9bsubnet"}, TokenRef: "yc-lockbox://e6qsecret/web-1"}
	res, err := a.ApplyMachine(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outputs["machine_id"] != id || res.Outputs["state"] != tofu.PowerStopped || srv.Instance(id).GetStatus() != compute.Instance_STOPPED {
		t.Fatalf("outputs %v, instance %s", res.Outputs, srv.Instance(id).GetStatus())
	}
	b, err := os.ReadFile(filepath.Join(ex.WorkspaceDir("web-1"), "terraform.tfvars.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vars map[string]any
	_ = json.Unmarshal(b, &vars)
	if vars["service_account_id"] != sa || vars["cores"] != 2.0 || vars["memory_gib"] != 4.0 || vars["core_fraction"] != 100.0 {
		t.Errorf("module variables %v: want the egg's service account and a standard-v3 shape", vars)
	}
	in.Running = true
	if _, err := a.ApplyMachine(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if st := srv.Instance(id).GetStatus(); st != compute.Instance_RUNNING {
		t.Errorf("after promotion: %s", st)
	}
	// An egg without its runner identity is refused before OpenTofu runs.
	in.RunnerID, in.Egg.Name = "api-1", "api"
	_, err = a.ApplyMachine(context.Background(), in)
	if !errors.Is(err, tofu.ErrNoIdentity) && (err == nil || !containsAll(err.Error(), "gosling deploy", "gosling-prod-runner-api")) {
		t.Errorf("without an identity: %v", err)
	}
	if _, statErr := os.Stat(ex.WorkspaceDir("api-1")); !os.IsNotExist(statErr) {
		t.Errorf("a workspace was made for a refused machine: %v", statErr)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
