// Package awssmtest is an in-memory AWS Secrets Manager speaking the
// service's JSON 1.1 protocol (POST /, X-Amz-Target: secretsmanager.Op),
// for tests that point the real SDK at it through BaseEndpoint.
package awssmtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Server is a Secrets Manager test server.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	secrets  map[string]*secret
	denied   map[string]bool
	throttle int
	calls    map[string]int
}

type secret struct {
	arn      string
	versions []*version // oldest first
}

type version struct {
	id      string
	value   string
	stages  []string
	created time.Time
}

// New starts a server; it stops when the test ends via t.Cleanup by the
// caller, or with Close.
func New() *Server {
	s := &Server{secrets: map[string]*secret{}, denied: map[string]bool{}, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Config returns an AWS configuration pointing at the server with static
// test credentials and quick retries (3 attempts, 1 ms apart).
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:       "eu-west-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "test-secret-key", ""),
		BaseEndpoint: aws.String(s.URL),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.RateLimiter = ratelimit.None
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			})
		},
	}
}

// Deny makes every request about the named secret fail with AccessDeniedException.
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
// "GetSecretValue") that reached the server, throttled ones included.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// ResetCalls zeroes the counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
}

// SetSecretString writes a raw SecretString as a new current version.
func (s *Server) SetSecretString(name, value string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.put(name, value, "")
}

type apiError struct {
	status int
	code   string
	msg    string
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "secretsmanager.")
	if r.Method != http.MethodPost || !ok || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.1") {
		writeError(w, &apiError{http.StatusBadRequest, "UnknownOperationException", "not a Secrets Manager JSON 1.1 request"})
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=") {
		writeError(w, &apiError{http.StatusBadRequest, "MissingAuthenticationTokenException", "Request is missing Authentication Token"})
		return
	}
	var in map[string]any
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, &apiError{http.StatusBadRequest, "SerializationException", "body is not JSON"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	if s.throttle > 0 {
		s.throttle--
		writeError(w, &apiError{http.StatusBadRequest, "ThrottlingException", "Rate exceeded"})
		return
	}
	str := func(k string) string { v, _ := in[k].(string); return v }
	name := str("SecretId")
	if op == "CreateSecret" {
		name = str("Name")
	}
	if s.denied[name] {
		writeError(w, &apiError{http.StatusBadRequest, "AccessDeniedException",
			fmt.Sprintf("User: arn:aws:iam::123456789012:user/test is not authorized to perform: secretsmanager:%s on resource: %s", op, name)})
		return
	}
	var out any
	var aerr *apiError
	switch op {
	case "GetSecretValue":
		out, aerr = s.get(name, str("VersionId"), str("VersionStage"))
	case "PutSecretValue":
		if s.secrets[name] == nil {
			aerr = notFound()
			break
		}
		id := s.put(name, str("SecretString"), str("ClientRequestToken"))
		out = map[string]any{"ARN": s.secrets[name].arn, "Name": name, "VersionId": id, "VersionStages": []string{"AWSCURRENT"}}
	case "CreateSecret":
		if s.secrets[name] != nil {
			aerr = &apiError{http.StatusBadRequest, "ResourceExistsException", "The operation failed because the secret " + name + " already exists."}
			break
		}
		if _, ok := in["SecretString"]; !ok {
			// Without a value Secrets Manager makes the secret with no
			// version at all: reads fail until a value is put.
			s.secrets[name] = &secret{arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:" + name + "-" + randHex(3)}
			out = map[string]any{"ARN": s.secrets[name].arn, "Name": name}
			break
		}
		id := s.put(name, str("SecretString"), str("ClientRequestToken"))
		out = map[string]any{"ARN": s.secrets[name].arn, "Name": name, "VersionId": id}
	case "ListSecretVersionIds":
		sec := s.secrets[name]
		if sec == nil {
			aerr = notFound()
			break
		}
		var vs []map[string]any
		for _, v := range sec.versions {
			if len(v.stages) > 0 || in["IncludeDeprecated"] == true {
				vs = append(vs, map[string]any{"VersionId": v.id, "VersionStages": v.stages, "CreatedDate": epoch(v.created)})
			}
		}
		out = map[string]any{"ARN": sec.arn, "Name": name, "Versions": vs}
	default:
		aerr = &apiError{http.StatusBadRequest, "UnknownOperationException", "operation " + op + " is not served by this test server"}
	}
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

func epoch(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func notFound() *apiError {
	return &apiError{http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret."}
}

func (s *Server) get(name, id, stage string) (any, *apiError) {
	sec := s.secrets[name]
	if sec == nil {
		return nil, notFound()
	}
	if id == "" && stage == "" {
		stage = "AWSCURRENT"
	}
	for _, v := range slices.Backward(sec.versions) {
		if (id != "" && v.id == id) || (id == "" && slices.Contains(v.stages, stage)) {
			return map[string]any{
				"ARN": sec.arn, "Name": name, "VersionId": v.id, "SecretString": v.value,
				"VersionStages": v.stages, "CreatedDate": epoch(v.created),
			}, nil
		}
	}
	return nil, &apiError{http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for VersionId or VersionStage."}
}

// put adds a version, moving AWSCURRENT to it and AWSPREVIOUS to the old
// current one, as Secrets Manager does.
func (s *Server) put(name, value, token string) string {
	sec := s.secrets[name]
	if sec == nil {
		sec = &secret{arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:" + name + "-" + randHex(3)}
		s.secrets[name] = sec
	}
	if token == "" {
		token = randHex(16)
	}
	for _, v := range sec.versions {
		if v.id == token {
			return token // an idempotent retry
		}
	}
	for _, v := range sec.versions {
		v.stages = slices.DeleteFunc(v.stages, func(st string) bool { return st == "AWSPREVIOUS" })
		if slices.Contains(v.stages, "AWSCURRENT") {
			v.stages = []string{"AWSPREVIOUS"}
		}
	}
	sec.versions = append(sec.versions, &version{id: token, value: value, stages: []string{"AWSCURRENT"}, created: time.Now()})
	return token
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.code)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.code, "message": e.msg})
}
