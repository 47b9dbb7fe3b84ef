package secrets

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/yandex-cloud/go-genproto/yandex/cloud/lockbox/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	ycsdk "github.com/yandex-cloud/go-sdk/v2"
	yccreds "github.com/yandex-cloud/go-sdk/v2/credentials"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

// Lockbox talks to Yandex Cloud through its Go SDK
// (github.com/yandex-cloud/go-sdk/v2), built by internal/yandexauth:
// credentials, IAM tokens, endpoint discovery and connections are the SDK's; the calls are go-genproto's
// Lockbox clients over the SDK's connections. (The SDK's v0 line, v0.45 and
// v0.46, does not compile against any go-genproto release served.)

// DefaultYandexEndpoint is the API endpoint services are discovered from.
const DefaultYandexEndpoint = yandexauth.DefaultEndpoint

// YandexMetadataEnv overrides the instance metadata service's address,
// as in the SDK.
const YandexMetadataEnv = "YC_METADATA_ADDR"

// LockboxOptions configure the Lockbox backend. Credentials, first set
// wins: KeyFile (a service-account authorized key, exchanged for IAM
// tokens), IAMToken, else the service account of the instance, from its
// metadata service ($YC_METADATA_ADDR overrides the address).
type LockboxOptions struct {
	// Endpoint is the API endpoint (default DefaultYandexEndpoint); the
	// Lockbox and IAM endpoints are discovered from it.
	Endpoint string
	// Plaintext dials without TLS, for test servers.
	Plaintext bool
	KeyFile   string
	IAMToken  string
	// Attempts is how many times a throttled or unavailable call is made
	// (default 3), RetryWait the first wait between them (default 200 ms,
	// doubling).
	Attempts  int
	RetryWait time.Duration
}

// Lockbox is the yc-lockbox://{secret-id}/{key} backend. A write adds a
// version that changes one entry of the current one; ?version= takes a
// Lockbox version ID. Lockbox versions cannot drop an entry, so Delete
// writes the entry empty, and an empty entry reads as a missing key.
type Lockbox struct {
	opts  LockboxOptions
	creds yccreds.Credentials

	mu  sync.Mutex
	sdk *ycsdk.SDK
}

// NewLockbox builds the backend; it connects on first use.
func NewLockbox(_ context.Context, o LockboxOptions) (*Lockbox, error) {
	l := &Lockbox{opts: o}
	creds, err := yandexauth.Credentials(l.authOptions())
	if err != nil {
		return nil, fmt.Errorf("yc-lockbox: %w: %v", secretstore.ErrAuth, err)
	}
	l.creds = creds
	if l.opts.Endpoint == "" {
		l.opts.Endpoint = DefaultYandexEndpoint
	}
	if l.opts.Attempts <= 0 {
		l.opts.Attempts = 3
	}
	if l.opts.RetryWait <= 0 {
		l.opts.RetryWait = 200 * time.Millisecond
	}
	return l, nil
}

// authOptions are the credentials and endpoint in yandexauth's terms.
func (l *Lockbox) authOptions() yandexauth.Options {
	return yandexauth.Options{Endpoint: l.opts.Endpoint, Plaintext: l.opts.Plaintext, KeyFile: l.opts.KeyFile, IAMToken: l.opts.IAMToken}
}

// Close closes the SDK's connections.
func (l *Lockbox) Close(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sdk == nil {
		return nil
	}
	err := l.sdk.Shutdown(ctx)
	l.sdk = nil
	return err
}

// client builds the SDK on first use (it discovers the endpoints then).
func (l *Lockbox) client(ctx context.Context) (*ycsdk.SDK, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sdk != nil {
		return l.sdk, nil
	}
	sdk, err := yandexauth.BuildSDK(ctx, l.authOptions(), l.creds)
	if err != nil {
		return nil, err
	}
	l.sdk = sdk
	return sdk, nil
}

// Scheme implements Backend.
func (l *Lockbox) Scheme() string { return fly.SchemeLockbox }

// Lockbox's gRPC services, as the SDK routes them.
const (
	lockboxPayloadService = protoreflect.FullName("yandex.cloud.lockbox.v1.PayloadService")
	lockboxSecretService  = protoreflect.FullName("yandex.cloud.lockbox.v1.SecretService")
	operationService      = protoreflect.FullName("yandex.cloud.operation.OperationService")
)

// call runs fn over the SDK's connection to service (which adds a fresh IAM
// token), again after a throttled or unavailable answer.
func (l *Lockbox) call(ctx context.Context, service protoreflect.FullName, fn func(context.Context, grpc.ClientConnInterface) error) error {
	sdk, err := l.client(ctx)
	if err != nil {
		return err
	}
	wait := l.opts.RetryWait
	for i := 0; i < l.opts.Attempts; i++ {
		var c grpc.ClientConnInterface
		if c, err = sdk.GetConnection(ctx, service); err != nil {
			return err
		}
		if err = fn(ctx, c); err == nil {
			return nil
		}
		code := status.Code(err)
		if code != codes.ResourceExhausted && code != codes.Unavailable || i == l.opts.Attempts-1 {
			return err
		}
		select {
		case <-time.After(wait):
			wait *= 2
		case <-ctx.Done():
			return err
		}
	}
	return err
}

func (l *Lockbox) payload(ctx context.Context, u fly.SecretURI) (*lockbox.Payload, error) {
	var p *lockbox.Payload
	err := l.call(ctx, lockboxPayloadService, func(ctx context.Context, c grpc.ClientConnInterface) (err error) {
		p, err = lockbox.NewPayloadServiceClient(c).Get(ctx, &lockbox.GetPayloadRequest{SecretId: u.Path, VersionId: u.Version})
		return err
	})
	if err != nil {
		return nil, lockboxError(err, u.Version != "")
	}
	return p, nil
}

// Get implements Backend.
func (l *Lockbox) Get(ctx context.Context, u fly.SecretURI) (string, error) {
	p, err := l.payload(ctx, u)
	if err != nil {
		return "", err
	}
	for _, e := range p.GetEntries() {
		if e.GetKey() != u.Key {
			continue
		}
		v := e.GetTextValue()
		if b := e.GetBinaryValue(); b != nil {
			v = string(b)
		}
		if v == "" {
			return "", fmt.Errorf("%w (deleted in version %s)", secretstore.ErrKeyNotFound, p.GetVersionId())
		}
		return v, nil
	}
	return "", secretstore.ErrKeyNotFound
}

func (l *Lockbox) addVersion(ctx context.Context, u fly.SecretURI, value string) (string, error) {
	req := &lockbox.AddVersionRequest{
		SecretId:       u.Path,
		Description:    "gosling: " + u.Key,
		PayloadEntries: []*lockbox.PayloadEntryChange{{Key: u.Key, Value: &lockbox.PayloadEntryChange_TextValue{TextValue: value}}},
	}
	var op *operation.Operation
	err := l.call(ctx, lockboxSecretService, func(ctx context.Context, c grpc.ClientConnInterface) (err error) {
		op, err = lockbox.NewSecretServiceClient(c).AddVersion(ctx, req)
		return err
	})
	if err != nil {
		return "", lockboxError(err, false)
	}
	for !op.GetDone() {
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		id := op.GetId()
		err = l.call(ctx, operationService, func(ctx context.Context, c grpc.ClientConnInterface) (err error) {
			op, err = operation.NewOperationServiceClient(c).Get(ctx, &operation.GetOperationRequest{OperationId: id})
			return err
		})
		if err != nil {
			return "", lockboxError(err, false)
		}
	}
	if e := op.GetError(); e != nil {
		err = status.ErrorProto(e)
	}
	var md lockbox.AddVersionMetadata
	if err == nil {
		if uerr := op.GetMetadata().UnmarshalTo(&md); uerr != nil {
			err = fmt.Errorf("unexpected operation metadata: %w", uerr)
		}
	}
	id := md.GetVersionId()
	if err != nil {
		return "", lockboxError(err, false)
	}
	return id, nil
}

// Put implements Backend. The secret must exist: Lockbox names secrets by
// IDs it makes itself.
func (l *Lockbox) Put(ctx context.Context, u fly.SecretURI, value string) (string, error) {
	if u.Version != "" {
		return "", fmt.Errorf("%w: a write cannot name a version", secretstore.ErrReadOnlyPath)
	}
	if value == "" {
		return "", errors.New("lockbox cannot store an empty value: it marks a deleted entry")
	}
	return l.addVersion(ctx, u, value)
}

// Delete implements Backend: a version with the entry empty.
func (l *Lockbox) Delete(ctx context.Context, u fly.SecretURI) error {
	_, err := l.Get(ctx, u)
	if errors.Is(err, secretstore.ErrNotFound) || errors.Is(err, secretstore.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = l.addVersion(ctx, u, "")
	return err
}

// ListVersions implements Versioner.
func (l *Lockbox) ListVersions(ctx context.Context, u fly.SecretURI) ([]secretstore.Version, error) {
	var sec *lockbox.Secret
	err := l.call(ctx, lockboxSecretService, func(ctx context.Context, c grpc.ClientConnInterface) (err error) {
		sec, err = lockbox.NewSecretServiceClient(c).Get(ctx, &lockbox.GetSecretRequest{SecretId: u.Path})
		return err
	})
	if err != nil {
		return nil, lockboxError(err, false)
	}
	var out []secretstore.Version
	token := ""
	for {
		var page *lockbox.ListVersionsResponse
		err := l.call(ctx, lockboxSecretService, func(ctx context.Context, c grpc.ClientConnInterface) (err error) {
			page, err = lockbox.NewSecretServiceClient(c).ListVersions(ctx, &lockbox.ListVersionsRequest{SecretId: u.Path, PageSize: 100, PageToken: token})
			return err
		})
		if err != nil {
			return nil, lockboxError(err, false)
		}
		for _, v := range page.GetVersions() {
			x := secretstore.Version{ID: v.GetId(), Created: v.GetCreatedAt().AsTime(), Current: v.GetId() == sec.GetCurrentVersion().GetId()}
			if s := v.GetStatus(); s != lockbox.Version_ACTIVE {
				x.Labels = []string{s.String()}
			}
			out = append(out, x)
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	slices.SortStableFunc(out, func(a, b secretstore.Version) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// lockboxError maps gRPC codes onto this package's errors; Lockbox's
// messages name secrets and versions, never payloads.
func lockboxError(err error, pinned bool) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var kind error
	switch st.Code() {
	case codes.NotFound:
		kind = secretstore.ErrNotFound
		if pinned {
			kind = fmt.Errorf("%w (or the secret does not exist)", secretstore.ErrVersion)
		}
	case codes.PermissionDenied:
		kind = secretstore.ErrPermission
	case codes.Unauthenticated:
		kind = secretstore.ErrAuth
	case codes.ResourceExhausted:
		kind = secretstore.ErrThrottled
	case codes.FailedPrecondition:
		return fmt.Errorf("lockbox refused: %s", st.Message())
	default:
		return &lockboxStatusError{st: st}
	}
	return fmt.Errorf("%w: %s", kind, st.Message())
}

// lockboxStatusError is a Lockbox answer with no error of this package's:
// it keeps its gRPC status (status.Code finds it), so a caller can tell an
// unreachable Lockbox (Unavailable) from others.
type lockboxStatusError struct{ st *status.Status }

func (e *lockboxStatusError) Error() string {
	return fmt.Sprintf("lockbox answered %s: %s", e.st.Code(), e.st.Message())
}

// GRPCStatus is the answer's status.
func (e *lockboxStatusError) GRPCStatus() *status.Status { return e.st }
