package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	compute "github.com/yandex-cloud/go-genproto/yandex/cloud/compute/v1"
	iam "github.com/yandex-cloud/go-genproto/yandex/cloud/iam/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/lockbox/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	ycsdk "github.com/yandex-cloud/go-sdk/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/runnerid"
	"github.com/gosling-ci/gosling/internal/yandexauth"
	"github.com/gosling-ci/gosling/tofu"
)

// Machine labels every module puts on a cloud machine (its OpenTofu
// module's labels or tags: gosling-deployment, gosling-egg,
// gosling-runner on Yandex Cloud; gosling:deployment, gosling:egg,
// gosling:runner on AWS).
const (
	ycLabelDeployment = "gosling-deployment"
	ycLabelEgg        = "gosling-egg"
	ycLabelRunner     = "gosling-runner"
)

// YandexOptions say how a worker reaches Yandex Cloud about its runners.
type YandexOptions struct {
	// Auth is the worker's own identity (internal/yandexauth: a key file
	// or key, an IAM token, else the instance's service account).
	Auth yandexauth.Options
	// Deployment names the deployment on the machines' labels and in the
	// runner identities' names (internal/runnerid).
	Deployment string
	// FolderID is the runners' folder (provider "yandex" folder_id).
	FolderID string
	// LockboxFolderID is the folder of the eggs' runner-token secrets
	// (secrets.lockbox.folder_id; FolderID when empty).
	LockboxFolderID string
	// PollInterval is how often an operation is looked at (one second
	// when zero).
	PollInterval time.Duration
	// IdentityTTL is how long a found identity is reused (five minutes
	// when zero).
	IdentityTTL time.Duration
	// Key, when set and Auth names no key file or token, returns a
	// service account's key (provider "yandex" service_account_key,
	// resolved when the client is first used).
	Key func(ctx context.Context) (string, error)
}

// YandexCloud is what a worker does on Yandex Cloud beside OpenTofu,
// through the Yandex Cloud Go SDK: it finds the machines of the deployment
// by their labels and deletes them (Inventory), starts and stops VMs
// (PowerControl: the yandex provider has no power state), and finds each
// egg's runner service account and runner-token secret (IdentitySource),
// by the names internal/runnerid gives them.
type YandexCloud struct {
	o YandexOptions

	mu     sync.Mutex
	sdk    *ycsdk.SDK
	cached map[string]cachedIdentity
}

type cachedIdentity struct {
	id  tofu.Identity
	ref string
	at  time.Time
}

var (
	_ Inventory      = (*YandexCloud)(nil)
	_ PowerControl   = (*YandexCloud)(nil)
	_ IdentitySource = (*YandexCloud)(nil)
)

// NewYandexCloud checks o; it contacts nothing and reads no key until the
// first call.
func NewYandexCloud(o YandexOptions) (*YandexCloud, error) {
	if o.FolderID == "" {
		return nil, errors.New("yandex runners: provider \"yandex\" names no folder_id")
	}
	if o.Deployment == "" {
		return nil, errors.New("yandex runners: no deployment name")
	}
	if o.LockboxFolderID == "" {
		o.LockboxFolderID = o.FolderID
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.IdentityTTL <= 0 {
		o.IdentityTTL = 5 * time.Minute
	}
	return &YandexCloud{o: o, cached: map[string]cachedIdentity{}}, nil
}

// Close releases the SDK's connections.
func (y *YandexCloud) Close(ctx context.Context) error {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.sdk == nil {
		return nil
	}
	return y.sdk.Shutdown(ctx)
}

// conn is the SDK's connection to a service, the SDK built on first use
// (a failure is tried again next call).
func (y *YandexCloud) conn(ctx context.Context, service protoreflect.FullName) (grpc.ClientConnInterface, error) {
	y.mu.Lock()
	sdk := y.sdk
	y.mu.Unlock()
	if sdk == nil {
		auth := y.o.Auth
		if y.o.Key != nil && auth.KeyFile == "" && auth.Key == "" && auth.IAMToken == "" {
			key, err := y.o.Key(ctx)
			if err != nil {
				return nil, fmt.Errorf("the Yandex Cloud service account key: %w", err)
			}
			auth.Key = key
		}
		creds, err := yandexauth.Credentials(auth)
		if err != nil {
			return nil, err
		}
		if sdk, err = yandexauth.BuildSDK(ctx, auth, creds); err != nil {
			return nil, err
		}
		y.mu.Lock()
		if y.sdk == nil {
			y.sdk = sdk
		} else {
			_ = sdk.Shutdown(ctx)
			sdk = y.sdk
		}
		y.mu.Unlock()
	}
	return sdk.GetConnection(ctx, service)
}

const (
	ycInstanceService  = protoreflect.FullName("yandex.cloud.compute.v1.InstanceService")
	ycSAService        = protoreflect.FullName("yandex.cloud.iam.v1.ServiceAccountService")
	ycSecretService    = protoreflect.FullName("yandex.cloud.lockbox.v1.SecretService")
	ycOperationService = protoreflect.FullName("yandex.cloud.operation.OperationService")
)

func (y *YandexCloud) instances(ctx context.Context) (compute.InstanceServiceClient, error) {
	c, err := y.conn(ctx, ycInstanceService)
	if err != nil {
		return nil, err
	}
	return compute.NewInstanceServiceClient(c), nil
}

// await follows a long-running operation, as a call returns it, to its end
// and returns its error.
func (y *YandexCloud) await(ctx context.Context, op *operation.Operation, err error) error {
	if err != nil {
		return err
	}
	for !op.GetDone() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(y.o.PollInterval):
		}
		var c grpc.ClientConnInterface
		if c, err = y.conn(ctx, ycOperationService); err != nil {
			return err
		}
		if op, err = operation.NewOperationServiceClient(c).Get(ctx, &operation.GetOperationRequest{OperationId: op.GetId()}); err != nil {
			return err
		}
	}
	if e := op.GetError(); e != nil {
		return status.ErrorProto(e)
	}
	return nil
}

// Cloud implements Inventory.
func (y *YandexCloud) Cloud() string { return fly.CloudYandex }

// ListMachines implements Inventory: the folder's instances (Compute
// filters instances by name only) whose labels name the deployment.
func (y *YandexCloud) ListMachines(ctx context.Context) ([]LabeledMachine, error) {
	cl, err := y.instances(ctx)
	if err != nil {
		return nil, err
	}
	var out []LabeledMachine
	req := &compute.ListInstancesRequest{FolderId: y.o.FolderID, PageSize: 1000}
	for {
		resp, err := cl.List(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("list the instances of folder %s: %w", y.o.FolderID, err)
		}
		for _, in := range resp.GetInstances() {
			l := in.GetLabels()
			if l[ycLabelDeployment] != y.o.Deployment || l[ycLabelRunner] == "" || in.GetStatus() == compute.Instance_DELETING {
				continue
			}
			out = append(out, LabeledMachine{MachineRef: contract.MachineRef{Cloud: fly.CloudYandex, ID: in.GetId()}, Egg: l[ycLabelEgg], RunnerID: l[ycLabelRunner]})
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			return out, nil
		}
	}
}

// TerminateMachine implements Inventory: Compute's Delete, awaited; an
// instance already gone is no error.
func (y *YandexCloud) TerminateMachine(ctx context.Context, m contract.MachineRef) error {
	cl, err := y.instances(ctx)
	if err != nil {
		return err
	}
	op, err := cl.Delete(ctx, &compute.DeleteInstanceRequest{InstanceId: m.ID})
	if err = y.await(ctx, op, err); status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}

// SetPower implements PowerControl through Compute's Start and Stop, the
// operation awaited. An instance on its way (STARTING, STOPPING) is
// waited for first; one already as asked is left alone.
func (y *YandexCloud) SetPower(ctx context.Context, instanceID string, running bool) error {
	cl, err := y.instances(ctx)
	if err != nil {
		return err
	}
	for {
		in, err := cl.Get(ctx, &compute.GetInstanceRequest{InstanceId: instanceID})
		if err != nil {
			return fmt.Errorf("get instance %s: %w", instanceID, err)
		}
		switch st := in.GetStatus(); {
		case running && st == compute.Instance_RUNNING, !running && st == compute.Instance_STOPPED:
			return nil
		case running && st == compute.Instance_STOPPED:
			op, err := cl.Start(ctx, &compute.StartInstanceRequest{InstanceId: instanceID})
			return y.await(ctx, op, err)
		case !running && st == compute.Instance_RUNNING:
			op, err := cl.Stop(ctx, &compute.StopInstanceRequest{InstanceId: instanceID})
			return y.await(ctx, op, err)
		case st == compute.Instance_ERROR || st == compute.Instance_CRASHED || st == compute.Instance_DELETING:
			return fmt.Errorf("instance %s is %s", instanceID, st)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(y.o.PollInterval):
		}
	}
}

// RunnerIdentity implements IdentitySource: the egg's runner service
// account in the runners' folder (runnerid.YandexServiceAccount).
func (y *YandexCloud) RunnerIdentity(ctx context.Context, egg string) (tofu.Identity, error) {
	c, err := y.lookup(ctx, egg)
	return c.id, err
}

// TokenSecretID is the ID of the egg's Lockbox secret of runner tokens
// (runnerid.LockboxTokenSecret) in the Lockbox folder; none is an error
// wrapping tofu.ErrNoIdentity.
func (y *YandexCloud) TokenSecretID(ctx context.Context, egg string) (string, error) {
	c, err := y.lookup(ctx, egg)
	if err != nil {
		return "", err
	}
	if c.ref == "" {
		return "", fmt.Errorf("%w: no Lockbox secret %s in folder %s for the egg's runner tokens; gosling deploy makes it",
			tofu.ErrNoIdentity, runnerid.LockboxTokenSecret(y.o.Deployment, egg), y.o.LockboxFolderID)
	}
	return c.ref, nil
}

// lookup finds the egg's service account and token secret, reusing what
// it found for IdentityTTL.
func (y *YandexCloud) lookup(ctx context.Context, egg string) (cachedIdentity, error) {
	y.mu.Lock()
	c, ok := y.cached[egg]
	y.mu.Unlock()
	if ok && time.Since(c.at) < y.o.IdentityTTL {
		return c, nil
	}
	saName := runnerid.YandexServiceAccount(y.o.Deployment, egg)
	conn, err := y.conn(ctx, ycSAService)
	if err != nil {
		return c, err
	}
	saID := ""
	req := &iam.ListServiceAccountsRequest{FolderId: y.o.FolderID, PageSize: 1000, Filter: fmt.Sprintf("name=%q", saName)}
	for saID == "" {
		resp, err := iam.NewServiceAccountServiceClient(conn).List(ctx, req)
		if err != nil {
			return c, fmt.Errorf("list the service accounts of folder %s: %w", y.o.FolderID, err)
		}
		for _, sa := range resp.GetServiceAccounts() {
			if sa.GetName() == saName {
				saID = sa.GetId()
			}
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if saID == "" {
		return c, fmt.Errorf("%w: no service account %s in folder %s; gosling deploy makes the egg's runner identity", tofu.ErrNoIdentity, saName, y.o.FolderID)
	}
	secretName := runnerid.LockboxTokenSecret(y.o.Deployment, egg)
	if conn, err = y.conn(ctx, ycSecretService); err != nil {
		return c, err
	}
	secretID := ""
	sreq := &lockbox.ListSecretsRequest{FolderId: y.o.LockboxFolderID, PageSize: 1000}
	for secretID == "" {
		resp, err := lockbox.NewSecretServiceClient(conn).List(ctx, sreq)
		if err != nil {
			return c, fmt.Errorf("list the Lockbox secrets of folder %s: %w", y.o.LockboxFolderID, err)
		}
		for _, s := range resp.GetSecrets() {
			if s.GetName() == secretName {
				secretID = s.GetId()
			}
		}
		if sreq.PageToken = resp.GetNextPageToken(); sreq.PageToken == "" {
			break
		}
	}
	c = cachedIdentity{id: tofu.Identity{ServiceAccountID: saID}, ref: secretID, at: time.Now()}
	y.mu.Lock()
	y.cached[egg] = c
	y.mu.Unlock()
	return c, nil
}
