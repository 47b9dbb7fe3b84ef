package secrets

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/yandex-cloud/go-genproto/yandex/cloud/endpoint"
	iam "github.com/yandex-cloud/go-genproto/yandex/cloud/iam/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/lockbox/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gosling-ci/gosling/fly"
)

// Lockbox talks gRPC through go-genproto's clients directly: the Yandex
// Cloud Go SDK (github.com/yandex-cloud/go-sdk v0.45 and v0.46, the only
// ones served) does not compile against any go-genproto release served,
// for its dataproc package lacks a generated client. Endpoint discovery
// and the three kinds of credentials follow the SDK's behaviour.

// DefaultYandexEndpoint is the API endpoint services are discovered from.
const DefaultYandexEndpoint = "api.cloud.yandex.net:443"

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
	opts LockboxOptions
	key  *yandexKey

	mu        sync.Mutex
	endpoints map[string]string
	conns     map[string]*grpc.ClientConn
	token     string
	tokenExp  time.Time
}

type yandexKey struct {
	ID               string `json:"id"`
	ServiceAccountID string `json:"service_account_id"`
	PrivateKey       string `json:"private_key"`
	rsa              *rsa.PrivateKey
}

// NewLockbox builds the backend; it connects on first use.
func NewLockbox(_ context.Context, o LockboxOptions) (*Lockbox, error) {
	l := &Lockbox{opts: o, endpoints: map[string]string{}, conns: map[string]*grpc.ClientConn{}}
	if o.KeyFile != "" {
		k, err := readYandexKey(o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("yc-lockbox: %w: service-account key %s: %v", ErrAuth, o.KeyFile, err)
		}
		l.key = k
	}
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

func readYandexKey(path string) (*yandexKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k yandexKey
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, errors.New("not an authorized key JSON file")
	}
	block, _ := pem.Decode([]byte(k.PrivateKey))
	if k.ID == "" || k.ServiceAccountID == "" || block == nil {
		return nil, errors.New("the file lacks id, service_account_id or a PEM private_key")
	}
	pk, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if pk, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			return nil, errors.New("private_key is not an RSA key")
		}
	}
	rk, ok := pk.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("private_key is not an RSA key")
	}
	k.rsa = rk
	return &k, nil
}

// jwt is the PS256-signed request for an IAM token of the key's account.
func (k *yandexKey) jwt(now time.Time) (string, error) {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "PS256", "kid": k.ID})
	c, _ := json.Marshal(map[string]any{
		"iss": k.ServiceAccountID, "aud": "https://iam.api.cloud.yandex.net/iam/v1/tokens",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPSS(rand.Reader, k.rsa, crypto.SHA256, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		return "", err
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

// Close closes the connections.
func (l *Lockbox) Close(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, c := range l.conns {
		errs = append(errs, c.Close())
	}
	clear(l.conns)
	return errors.Join(errs...)
}

// dial returns the connection to addr; l.mu is held.
func (l *Lockbox) dial(addr string) (*grpc.ClientConn, error) {
	if c := l.conns[addr]; c != nil {
		return c, nil
	}
	tc := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	if l.opts.Plaintext {
		tc = insecure.NewCredentials()
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tc), grpc.WithUserAgent("gosling"))
	if err != nil {
		return nil, err
	}
	l.conns[addr] = c
	return c, nil
}

// conn returns the connection to a service, discovering the endpoints on
// first use.
func (l *Lockbox) conn(ctx context.Context, service string) (*grpc.ClientConn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.endpoints) == 0 {
		c, err := l.dial(l.opts.Endpoint)
		if err != nil {
			return nil, err
		}
		resp, err := endpoint.NewApiEndpointServiceClient(c).List(ctx, &endpoint.ListApiEndpointsRequest{})
		if err != nil {
			return nil, fmt.Errorf("discover Yandex Cloud endpoints at %s: %w", l.opts.Endpoint, err)
		}
		for _, e := range resp.GetEndpoints() {
			l.endpoints[e.GetId()] = e.GetAddress()
		}
	}
	addr, ok := l.endpoints[service]
	if !ok {
		return nil, fmt.Errorf("service %q is not available at %s", service, l.opts.Endpoint)
	}
	return l.dial(addr)
}

// authed adds an IAM token to ctx, getting a new one when it is near
// its expiry.
func (l *Lockbox) authed(ctx context.Context) (context.Context, error) {
	if l.opts.IAMToken != "" && l.key == nil {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+l.opts.IAMToken), nil
	}
	l.mu.Lock()
	tok, exp := l.token, l.tokenExp
	l.mu.Unlock()
	if tok == "" || time.Until(exp) < 5*time.Minute {
		var err error
		if l.key != nil {
			tok, exp, err = l.exchangeKey(ctx)
		} else {
			tok, exp, err = instanceToken(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrAuth, err)
		}
		l.mu.Lock()
		l.token, l.tokenExp = tok, exp
		l.mu.Unlock()
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), nil
}

func (l *Lockbox) exchangeKey(ctx context.Context) (string, time.Time, error) {
	j, err := l.key.jwt(time.Now())
	if err != nil {
		return "", time.Time{}, err
	}
	c, err := l.conn(ctx, "iam")
	if err != nil {
		return "", time.Time{}, err
	}
	resp, err := iam.NewIamTokenServiceClient(c).Create(ctx, &iam.CreateIamTokenRequest{Identity: &iam.CreateIamTokenRequest_Jwt{Jwt: j}})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("exchange the service-account key for an IAM token: %s", status.Convert(err).Message())
	}
	exp := time.Now().Add(time.Hour)
	if resp.GetExpiresAt() != nil && resp.GetExpiresAt().AsTime().After(time.Now()) {
		exp = resp.GetExpiresAt().AsTime()
	}
	return resp.GetIamToken(), exp, nil
}

// instanceToken asks the metadata service for the instance's
// service-account token.
func instanceToken(ctx context.Context) (string, time.Time, error) {
	addr := os.Getenv(YandexMetadataEnv)
	if addr == "" {
		addr = "169.254.169.254"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/computeMetadata/v1/instance/service-accounts/default/token", nil)
	if err != nil {
		return "", time.Time{}, err
	}
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("no instance metadata service (not on a Yandex Cloud VM?): %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", time.Time{}, fmt.Errorf("instance metadata service answered %s: is a service account attached to the VM?", resp.Status)
	}
	var t struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&t); err != nil || t.AccessToken == "" {
		return "", time.Time{}, errors.New("instance metadata service gave no token")
	}
	return t.AccessToken, time.Now().Add(time.Duration(t.ExpiresIn) * time.Second), nil
}

// Scheme implements Backend.
func (l *Lockbox) Scheme() string { return fly.SchemeLockbox }

// call runs fn with a connection to service and an IAM token, again after
// a throttled or unavailable answer, and once with a new token after an
// unauthenticated one.
func (l *Lockbox) call(ctx context.Context, service string, fn func(context.Context, *grpc.ClientConn) error) error {
	wait := l.opts.RetryWait
	renewed := false
	var err error
	for i := 0; i < l.opts.Attempts; i++ {
		var c *grpc.ClientConn
		if c, err = l.conn(ctx, service); err != nil {
			return err
		}
		var actx context.Context
		if actx, err = l.authed(ctx); err != nil {
			return err
		}
		if err = fn(actx, c); err == nil {
			return nil
		}
		code := status.Code(err)
		if code == codes.Unauthenticated && !renewed && (l.key != nil || l.opts.IAMToken == "") {
			l.mu.Lock()
			l.token = ""
			l.mu.Unlock()
			renewed = true
			i--
			continue
		}
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
	err := l.call(ctx, "lockbox-payload", func(ctx context.Context, c *grpc.ClientConn) (err error) {
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
			return "", fmt.Errorf("%w (deleted in version %s)", ErrKeyNotFound, p.GetVersionId())
		}
		return v, nil
	}
	return "", ErrKeyNotFound
}

func (l *Lockbox) addVersion(ctx context.Context, u fly.SecretURI, value string) (string, error) {
	req := &lockbox.AddVersionRequest{
		SecretId:       u.Path,
		Description:    "gosling: " + u.Key,
		PayloadEntries: []*lockbox.PayloadEntryChange{{Key: u.Key, Value: &lockbox.PayloadEntryChange_TextValue{TextValue: value}}},
	}
	var op *operation.Operation
	err := l.call(ctx, "lockbox", func(ctx context.Context, c *grpc.ClientConn) (err error) {
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
		err = l.call(ctx, "operation", func(ctx context.Context, c *grpc.ClientConn) (err error) {
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
		return "", fmt.Errorf("%w: a write cannot name a version", ErrReadOnlyPath)
	}
	if value == "" {
		return "", errors.New("lockbox cannot store an empty value: it marks a deleted entry")
	}
	return l.addVersion(ctx, u, value)
}

// Delete implements Backend: a version with the entry empty.
func (l *Lockbox) Delete(ctx context.Context, u fly.SecretURI) error {
	_, err := l.Get(ctx, u)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = l.addVersion(ctx, u, "")
	return err
}

// ListVersions implements Versioner.
func (l *Lockbox) ListVersions(ctx context.Context, u fly.SecretURI) ([]Version, error) {
	var sec *lockbox.Secret
	err := l.call(ctx, "lockbox", func(ctx context.Context, c *grpc.ClientConn) (err error) {
		sec, err = lockbox.NewSecretServiceClient(c).Get(ctx, &lockbox.GetSecretRequest{SecretId: u.Path})
		return err
	})
	if err != nil {
		return nil, lockboxError(err, false)
	}
	var out []Version
	token := ""
	for {
		var page *lockbox.ListVersionsResponse
		err := l.call(ctx, "lockbox", func(ctx context.Context, c *grpc.ClientConn) (err error) {
			page, err = lockbox.NewSecretServiceClient(c).ListVersions(ctx, &lockbox.ListVersionsRequest{SecretId: u.Path, PageSize: 100, PageToken: token})
			return err
		})
		if err != nil {
			return nil, lockboxError(err, false)
		}
		for _, v := range page.GetVersions() {
			x := Version{ID: v.GetId(), Created: v.GetCreatedAt().AsTime(), Current: v.GetId() == sec.GetCurrentVersion().GetId()}
			if s := v.GetStatus(); s != lockbox.Version_ACTIVE {
				x.Labels = []string{s.String()}
			}
			out = append(out, x)
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	slices.SortStableFunc(out, func(a, b Version) int { return a.Created.Compare(b.Created) })
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
		kind = ErrNotFound
		if pinned {
			kind = fmt.Errorf("%w (or the secret does not exist)", ErrVersion)
		}
	case codes.PermissionDenied:
		kind = ErrPermission
	case codes.Unauthenticated:
		kind = ErrAuth
	case codes.ResourceExhausted:
		kind = ErrThrottled
	case codes.FailedPrecondition:
		return fmt.Errorf("lockbox refused: %s", st.Message())
	default:
		return fmt.Errorf("lockbox answered %s: %s", st.Code(), st.Message())
	}
	return fmt.Errorf("%w: %s", kind, st.Message())
}
