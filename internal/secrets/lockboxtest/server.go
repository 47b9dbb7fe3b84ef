// Package lockboxtest is an in-memory Yandex Cloud Lockbox served over
// real gRPC on a local listener with the services of go-genproto: endpoint
// discovery, IAM tokens, Lockbox secrets and payloads. Point the Yandex
// Cloud SDK at Addr with plaintext. Its Lockbox (lockbox.go) is the one
// Lockbox stand-in: bootstrap/yctest serves the same one beside the other
// Yandex Cloud services.
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

	"github.com/yandex-cloud/go-genproto/yandex/cloud/access"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/endpoint"
	iam "github.com/yandex-cloud/go-genproto/yandex/cloud/iam/v1"
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
	lb       *Lockbox
	tokens   map[string]bool
	denied   map[string]bool
	throttle int
	calls    map[string]int
	seq      int
}

// testFolder is the folder of the secrets CreateSecret makes.
const testFolder = "b1gtestfolder"

// New starts a server on 127.0.0.1 that accepts the IAM token iamToken
// and hands out tokens for service-account keys.
func New(iamToken string) (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr: lis.Addr().String(), tokens: map[string]bool{iamToken: true},
		denied: map[string]bool{}, calls: map[string]int{},
	}
	s.lb = NewLockbox(s)
	s.grpc = grpc.NewServer()
	endpoint.RegisterApiEndpointServiceServer(s.grpc, endpoints{s: s})
	iam.RegisterIamTokenServiceServer(s.grpc, tokens{s: s})
	s.lb.RegisterServices(s.grpc)
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
	s.lb.Put(testFolder, id, id, nil)
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

// Enter authenticates a Lockbox call and applies throttling and denial
// (Host); it takes s.mu, which release gives back.
func (s *Server) Enter(ctx context.Context, method, secretID string) (release func(), err error) {
	s.mu.Lock()
	s.calls[method]++
	md, _ := metadata.FromIncomingContext(ctx)
	auth := ""
	if v := md.Get("authorization"); len(v) > 0 {
		auth = v[0]
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	switch {
	case !ok || !s.tokens[tok]:
		err = status.Error(codes.Unauthenticated, "The token is invalid")
	case s.throttle > 0:
		s.throttle--
		err = status.Error(codes.ResourceExhausted, "Quota limit lockbox.payloadRequests.rate exceeded")
	case s.denied[secretID]:
		err = status.Errorf(codes.PermissionDenied, "Permission denied to secret %s", secretID)
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	return s.mu.Unlock, nil
}

// NewID makes an ID with prefix (Host).
func (s *Server) NewID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%016d", prefix, s.seq)
}

// Operation answers an operation that is done (Host).
func (s *Server) Operation(desc string, md, resp proto.Message) *operation.Operation {
	m, _ := anypb.New(md)
	r, _ := anypb.New(resp)
	return &operation.Operation{
		Id: s.NewID("e6qop"), Description: desc, CreatedAt: timestamppb.Now(), Done: true,
		Metadata: m, Result: &operation.Operation_Response{Response: r},
	}
}

// ListAccessBindings answers no bindings: this server checks IAM tokens
// only (Host).
func (s *Server) ListAccessBindings(string) *access.ListAccessBindingsResponse {
	return &access.ListAccessBindingsResponse{}
}

// UpdateAccessBindings is refused: this server keeps no bindings (Host).
func (s *Server) UpdateAccessBindings(*access.UpdateAccessBindingsRequest) (*operation.Operation, error) {
	return nil, status.Error(codes.Unimplemented, "access bindings are not served by this stand-in")
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
