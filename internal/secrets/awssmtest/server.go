// Package awssmtest is AWS Secrets Manager for tests: moto's, in an AWS
// account of its own behind mototest's proxy, with the faults the secrets
// contract asks for (a secret the caller may not read, throttling), which
// moto does not make.
package awssmtest

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/gosling-ci/gosling/internal/mototest"
)

// Server is Secrets Manager on moto. URL is its endpoint.
type Server struct {
	*mototest.Proxy

	mu       sync.Mutex
	denied   map[string]bool
	throttle int
}

// New starts a server for the test; it stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{Proxy: mototest.NewProxy(t), denied: map[string]bool{}}
	s.Intercept(s.fault)
	return s
}

// Deny makes every request about the named secret fail with
// AccessDeniedException, as IAM refuses a caller without permission.
func (s *Server) Deny(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[name] = true
}

// Throttle makes the next n requests fail with ThrottlingException.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = n
}

// Calls is the number of requests of one operation (such as
// "GetSecretValue") that reached the server, refused ones included.
func (s *Server) Calls(op string) int { return s.Proxy.Calls()["secretsmanager:"+op] }

// SetSecretString writes a raw SecretString as the secret's new current
// version, making the secret if it has none, and returns the version's ID.
func (s *Server) SetSecretString(t testing.TB, name, value string) string {
	t.Helper()
	ctx := context.Background()
	sm := secretsmanager.NewFromConfig(s.Direct())
	put, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: &name, SecretString: &value})
	if err == nil {
		return aws.ToString(put.VersionId)
	}
	made, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &name, SecretString: &value})
	if err != nil {
		t.Fatalf("set secret %s: %v", name, err)
	}
	return aws.ToString(made.VersionId)
}

func (s *Server) fault(op string, body []byte) *mototest.Fault {
	if !strings.HasPrefix(op, "secretsmanager:") {
		return nil
	}
	var in struct{ SecretId, Name string }
	_ = json.Unmarshal(body, &in)
	name := in.SecretId
	if name == "" {
		name = in.Name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.throttle > 0 {
		s.throttle--
		return &mototest.Fault{Status: 400, Code: "ThrottlingException", Message: "Rate exceeded"}
	}
	if s.denied[name] {
		return &mototest.Fault{Status: 400, Code: "AccessDeniedException", Message: "User: arn:aws:iam::" + s.Account +
			":user/test is not authorized to perform: " + op + " on resource: " + name}
	}
	return nil
}
