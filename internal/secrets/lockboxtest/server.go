// Package lockboxtest is an in-memory Yandex Cloud Lockbox served over
// real gRPC on a local listener with the services of go-genproto: endpoint
// discovery, IAM tokens, Lockbox secrets and payloads. Point the Yandex
// Cloud SDK at Addr with plaintext.
package lockboxtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/yandex-cloud/go-genproto/yandex/cloud/endpoint"
	iam "github.com/yandex-cloud/go-genproto/yandex/cloud/iam/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/lockbox/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Server is a Lockbox test server.
type Server struct {
	// Addr is the gRPC address (host:port) to use as the SDK's endpoint.
	Addr string

	grpc *grpc.Server

	mu       sync.Mutex
	tokens   map[string]bool
	secrets  map[string]*secret
	denied   map[string]bool
	throttle int
	calls    map[string]int
	seq      int
}

type secret struct {
	current  string
	versions []*lockbox.Version
	payloads map[string][]*lockbox.Payload_Entry
}

// New starts a server on 127.0.0.1 that accepts the IAM token iamToken
// and hands out tokens for service-account keys.
func New(iamToken string) (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr: lis.Addr().String(), tokens: map[string]bool{iamToken: true},
		secrets: map[string]*secret{}, denied: map[string]bool{}, calls: map[string]int{},
	}
	s.grpc = grpc.NewServer()
	endpoint.RegisterApiEndpointServiceServer(s.grpc, endpoints{s: s})
	iam.RegisterIamTokenServiceServer(s.grpc, tokens{s: s})
	lockbox.RegisterSecretServiceServer(s.grpc, secrets{s: s})
	lockbox.RegisterPayloadServiceServer(s.grpc, payloads{s: s})
	operation.RegisterOperationServiceServer(s.grpc, operations{})
	go func() { _ = s.grpc.Serve(lis) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.grpc.Stop() }

// CreateSecret makes an empty secret with this ID (Lockbox makes IDs; tests
// choose them).
func (s *Server) CreateSecret(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets[id] = &secret{payloads: map[string][]*lockbox.Payload_Entry{}}
}

// Deny answers PermissionDenied for the secret.
func (s *Server) Deny(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[id] = true
}

// Throttle answers ResourceExhausted to the next n Lockbox calls.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = n
}

// Calls counts calls by method name ("Get" of the payload service is
// "PayloadGet").
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// ResetCalls zeroes the counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
}

// MetadataServer serves a compute instance's metadata token endpoint
// handing out a token this server accepts; set YC_METADATA_ADDR to its
// host:port. Close it when done.
func (s *Server) MetadataServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/computeMetadata/v1/instance/service-accounts/default/token" || r.Header.Get("Metadata-Flavor") != "Google" {
			http.NotFound(w, r)
			return
		}
		tok := s.issue()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"expires_in":3600,"token_type":"Bearer"}`, tok)
	}))
}

// Accepts tells whether token is an IAM token this server handed out or
// was started with, as a service checking IAM tokens would.
func (s *Server) Accepts(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[token]
}

func (s *Server) issue() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	tok := "t1.test-" + hex.EncodeToString(b)
	s.mu.Lock()
	s.tokens[tok] = true
	s.mu.Unlock()
	return tok
}

// check authenticates a Lockbox call and applies throttling and denial;
// it is called with s.mu held.
func (s *Server) check(ctx context.Context, method, secretID string) error {
	s.calls[method]++
	md, _ := metadata.FromIncomingContext(ctx)
	auth := ""
	if v := md.Get("authorization"); len(v) > 0 {
		auth = v[0]
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || !s.tokens[tok] {
		return status.Error(codes.Unauthenticated, "The token is invalid")
	}
	if s.throttle > 0 {
		s.throttle--
		return status.Error(codes.ResourceExhausted, "Quota limit lockbox.payloadRequests.rate exceeded")
	}
	if s.denied[secretID] {
		return status.Errorf(codes.PermissionDenied, "Permission denied to secret %s", secretID)
	}
	if s.secrets[secretID] == nil {
		return status.Errorf(codes.NotFound, "Secret %s not found", secretID)
	}
	return nil
}

type endpoints struct {
	endpoint.UnimplementedApiEndpointServiceServer
	s *Server
}

func (e endpoints) Get(_ context.Context, r *endpoint.GetApiEndpointRequest) (*endpoint.ApiEndpoint, error) {
	return &endpoint.ApiEndpoint{Id: r.GetApiEndpointId(), Address: e.s.Addr}, nil
}

func (e endpoints) List(context.Context, *endpoint.ListApiEndpointsRequest) (*endpoint.ListApiEndpointsResponse, error) {
	var out []*endpoint.ApiEndpoint
	for _, id := range []string{"endpoint", "iam", "lockbox", "lockbox-payload", "operation"} {
		out = append(out, &endpoint.ApiEndpoint{Id: id, Address: e.s.Addr})
	}
	return &endpoint.ListApiEndpointsResponse{Endpoints: out}, nil
}

type tokens struct {
	iam.UnimplementedIamTokenServiceServer
	s *Server
}

func (t tokens) Create(_ context.Context, r *iam.CreateIamTokenRequest) (*iam.CreateIamTokenResponse, error) {
	if r.GetJwt() == "" {
		return nil, status.Error(codes.InvalidArgument, "jwt is required")
	}
	// The JWT's PS256 signature is not checked: the key is the test's own.
	if strings.Count(r.GetJwt(), ".") != 2 {
		return nil, status.Error(codes.Unauthenticated, "invalid JWT")
	}
	return &iam.CreateIamTokenResponse{IamToken: t.s.issue(), ExpiresAt: timestamppb.Now()}, nil
}

type operations struct {
	operation.UnimplementedOperationServiceServer
}

type payloads struct {
	lockbox.UnimplementedPayloadServiceServer
	s *Server
}

func (p payloads) Get(ctx context.Context, r *lockbox.GetPayloadRequest) (*lockbox.Payload, error) {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "PayloadGet", r.GetSecretId()); err != nil {
		return nil, err
	}
	sec := s.secrets[r.GetSecretId()]
	v := r.GetVersionId()
	if v == "" {
		v = sec.current
	}
	entries, ok := sec.payloads[v]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Version %q of secret %s not found", v, r.GetSecretId())
	}
	out := make([]*lockbox.Payload_Entry, len(entries))
	for i, e := range entries {
		out[i] = proto.Clone(e).(*lockbox.Payload_Entry)
	}
	return &lockbox.Payload{VersionId: v, Entries: out}, nil
}

type secrets struct {
	lockbox.UnimplementedSecretServiceServer
	s *Server
}

func (x secrets) Get(ctx context.Context, r *lockbox.GetSecretRequest) (*lockbox.Secret, error) {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "Get", r.GetSecretId()); err != nil {
		return nil, err
	}
	sec := s.secrets[r.GetSecretId()]
	out := &lockbox.Secret{Id: r.GetSecretId(), FolderId: "b1gtestfolder", Name: r.GetSecretId(), Status: lockbox.Secret_ACTIVE}
	for _, v := range sec.versions {
		if v.GetId() == sec.current {
			out.CurrentVersion = proto.Clone(v).(*lockbox.Version)
		}
	}
	return out, nil
}

func (x secrets) ListVersions(ctx context.Context, r *lockbox.ListVersionsRequest) (*lockbox.ListVersionsResponse, error) {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "ListVersions", r.GetSecretId()); err != nil {
		return nil, err
	}
	out := &lockbox.ListVersionsResponse{}
	for _, v := range s.secrets[r.GetSecretId()].versions {
		out.Versions = append(out.Versions, proto.Clone(v).(*lockbox.Version))
	}
	return out, nil
}

// AddVersion applies the entry changes to the base version (the current
// one unless named), as Lockbox does, and answers a finished operation.
func (x secrets) AddVersion(ctx context.Context, r *lockbox.AddVersionRequest) (*operation.Operation, error) {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "AddVersion", r.GetSecretId()); err != nil {
		return nil, err
	}
	sec := s.secrets[r.GetSecretId()]
	base := r.GetBaseVersionId()
	if base == "" {
		base = sec.current
	} else if _, ok := sec.payloads[base]; !ok {
		return nil, status.Errorf(codes.NotFound, "Version %q of secret %s not found", base, r.GetSecretId())
	}
	var entries []*lockbox.Payload_Entry
	for _, e := range sec.payloads[base] {
		entries = append(entries, proto.Clone(e).(*lockbox.Payload_Entry))
	}
	var keys []string
	for _, c := range r.GetPayloadEntries() {
		e := &lockbox.Payload_Entry{Key: c.GetKey()}
		if b := c.GetBinaryValue(); b != nil {
			e.Value = &lockbox.Payload_Entry_BinaryValue{BinaryValue: b}
		} else {
			e.Value = &lockbox.Payload_Entry_TextValue{TextValue: c.GetTextValue()}
		}
		replaced := false
		for i, old := range entries {
			if old.GetKey() == e.GetKey() {
				entries[i], replaced = e, true
			}
		}
		if !replaced {
			entries = append(entries, e)
		}
	}
	for _, e := range entries {
		keys = append(keys, e.GetKey())
	}
	s.seq++
	id := fmt.Sprintf("e6qv%016d", s.seq)
	v := &lockbox.Version{
		Id: id, SecretId: r.GetSecretId(), CreatedAt: timestamppb.Now(), Description: r.GetDescription(),
		Status: lockbox.Version_ACTIVE, PayloadEntryKeys: keys,
	}
	sec.versions = append(sec.versions, v)
	sec.payloads[id] = entries
	sec.current = id
	md, _ := anypb.New(&lockbox.AddVersionMetadata{SecretId: r.GetSecretId(), VersionId: id})
	resp, _ := anypb.New(v)
	return &operation.Operation{
		Id: "e6qop" + id, Description: "Add version", CreatedAt: timestamppb.Now(), Done: true,
		Metadata: md, Result: &operation.Operation_Response{Response: resp},
	}, nil
}
