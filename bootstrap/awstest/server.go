// Package awstest is a stand-in for the AWS services `gosling deploy`
// calls, for tests: one in-memory HTTP server that speaks each service's
// real wire protocol to the real aws-sdk-go-v2 clients pointed at it
// through BaseEndpoint. moto, the usual AWS emulator, is a Python package
// and the Python package index cannot be reached here, so these servers
// take its place for exactly the calls deploy makes:
//
//   - IAM and STS: the AWS query protocol (form-encoded Action=..., XML
//     answers and <ErrorResponse> errors, URL-encoded policy documents);
//   - SQS: JSON 1.0 (X-Amz-Target: AmazonSQS.Op) with the
//     X-Amzn-Query-Error header SQS adds for its query-era error codes;
//   - ECS, CloudWatch Logs, Secrets Manager: JSON 1.1;
//   - EventBridge Scheduler, API Gateway v2 (HTTP APIs) and Lambda:
//     REST-JSON;
//   - Cloud Map: JSON 1.1 (X-Amz-Target: Route53AutoNaming_v20170314.Op),
//     its operations done at once (GetOperation answers SUCCESS);
//   - Application Auto Scaling: JSON 1.1 (X-Amz-Target:
//     AnyScaleFrontendService.Op), scalable targets on this stand-in's ECS
//     services and their policies, which nothing evaluates;
//   - EC2 security groups and their rules: the EC2 query protocol
//     (form-encoded Action=..., XML answers in the 2016-11-15 namespace,
//     <Response><Errors> errors); a group cannot be deleted while a rule
//     of another group, a VPC link or an ECS service names it.
//
// The service is told by the request's SigV4 credential scope, as AWS's
// own front ends route. DynamoDB is served by dynalite
// (internal/store/dynamotest), not here. FaultProxy fails one named call.
package awstest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Account and Region are what the server answers for.
const (
	Account = "123456789012"
	Region  = "eu-central-1"
)

// Server is the stand-in. Its zero state has no resources.
type Server struct {
	*httptest.Server

	mu    sync.Mutex
	calls map[string]int
	seq   int

	roles     map[string]*role
	profiles  map[string]*profile
	logGroups map[string]*logGroup
	secrets   map[string]*secret
	queues    map[string]*queue // by name
	clusters  map[string]*cluster
	taskDefs  map[string]*taskDef // by family:revision
	revisions map[string]int
	services  map[string]*service // by cluster/name
	groups    map[string]*schedGroup
	schedules map[string]*schedule // by group/name

	apis       map[string]*gwAPI         // by ID
	vpcLinks   map[string]map[string]any // by ID
	functions  map[string]*function      // by name
	namespaces map[string]*namespace     // by ID
	sdServices map[string]*sdService     // by ID
	operations map[string]*sdOperation   // by ID
	domains    map[string]*gwDomain      // by domain name

	targets  map[string]*scalableTarget // by namespace|resource ID|dimension
	policies map[string]*scalingPolicy  // by target key|policy name

	secGroups map[string]*secGroup // by ID
}

// New starts a server; Close it when done.
func New() *Server {
	s := &Server{
		calls: map[string]int{}, roles: map[string]*role{}, profiles: map[string]*profile{}, logGroups: map[string]*logGroup{},
		secrets: map[string]*secret{}, queues: map[string]*queue{}, clusters: map[string]*cluster{}, taskDefs: map[string]*taskDef{},
		revisions: map[string]int{}, services: map[string]*service{}, groups: map[string]*schedGroup{}, schedules: map[string]*schedule{},
		targets: map[string]*scalableTarget{}, policies: map[string]*scalingPolicy{}, secGroups: map[string]*secGroup{},
	}
	s.initGateway()
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Config returns an AWS configuration pointing at url (the server's, or a
// FaultProxy's) with static test credentials and quick retries.
func Config(url string) aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "test-secret-key", ""),
		BaseEndpoint: aws.String(url),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.RateLimiter = ratelimit.None
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			})
		},
	}
}

// Calls returns how many requests of each operation ("iam:CreateRole")
// reached the server.
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// ResetCalls zeroes the counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
}

func (s *Server) id(prefix string) string {
	s.seq++
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s%06d%s", prefix, s.seq, hex.EncodeToString(b))
}

func arn(service, resource string) string {
	region := Region
	if service == "iam" {
		region = ""
	}
	return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, region, Account, resource)
}

var scopeRE = regexp.MustCompile(`Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request`)

// Operation names a request as "service:Operation", the way FaultProxy and
// Calls count it; ok is false for a request no AWS SDK would send.
func Operation(r *http.Request, body []byte) (service, op string, ok bool) {
	m := scopeRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return "", "", false
	}
	service = m[1]
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		_, op, _ = strings.Cut(t, ".")
		return service, op, op != ""
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return service, "", false
		}
		return service, v.Get("Action"), v.Get("Action") != ""
	}
	switch service {
	case "scheduler":
		op = schedulerOp(r.Method, r.URL.Path)
		return service, op, op != ""
	case "apigateway", "lambda":
		op = restOp(service, r.Method, r.URL.Path)
		return service, op, op != ""
	}
	return service, "", false
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	service, op, ok := Operation(r, body)
	if !ok {
		writeJSONError(w, 403, "MissingAuthenticationTokenException", "Missing Authentication Token", "1.1")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[service+":"+op]++
	switch service {
	case "iam", "sts":
		form, _ := url.ParseQuery(string(body))
		s.serveQuery(w, service, op, form)
	case "ec2":
		form, _ := url.ParseQuery(string(body))
		s.serveEC2(w, op, form)
	case "sqs":
		s.serveJSON(w, "1.0", body, func(in map[string]any) (any, *apiError) { return s.sqs(op, in) })
	case "ecs":
		s.serveJSON(w, "1.1", body, func(in map[string]any) (any, *apiError) { return s.ecs(op, in) })
	case "logs":
		s.serveJSON(w, "1.1", body, func(in map[string]any) (any, *apiError) { return s.logs(op, in) })
	case "secretsmanager":
		s.serveJSON(w, "1.1", body, func(in map[string]any) (any, *apiError) { return s.secretsManager(op, in) })
	case "scheduler":
		s.serveScheduler(w, r, op, body)
	case "apigateway":
		s.serveREST(w, r, body, func(seg []string, _ url.Values, in map[string]any) (int, any, *apiError) {
			return s.apiGateway(op, seg, in)
		})
	case "lambda":
		s.serveREST(w, r, body, func(seg []string, _ url.Values, in map[string]any) (int, any, *apiError) {
			return s.lambda(op, seg, in)
		})
	case "servicediscovery":
		s.serveJSON(w, "1.1", body, func(in map[string]any) (any, *apiError) { return s.serviceDiscovery(op, in) })
	case "application-autoscaling":
		s.serveJSON(w, "1.1", body, func(in map[string]any) (any, *apiError) { return s.applicationAutoScaling(op, in) })
	default:
		writeJSONError(w, 400, "UnknownServiceException", "service "+service+" is not served by this stand-in", "1.1")
	}
}

// apiError is an AWS error: HTTP status, code, message; query is SQS's
// X-Amzn-Query-Error code.
type apiError struct {
	status int
	code   string
	msg    string
	query  string
}

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) serveJSON(w http.ResponseWriter, version string, body []byte, h func(map[string]any) (any, *apiError)) {
	in := map[string]any{}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			writeJSONError(w, 400, "SerializationException", "body is not JSON", version)
			return
		}
	}
	out, aerr := h(in)
	if aerr != nil {
		if aerr.query != "" {
			w.Header().Set("X-Amzn-Query-Error", aerr.query)
		}
		writeJSONError(w, aerr.status, aerr.code, aerr.msg, version)
		return
	}
	if out == nil {
		out = map[string]any{}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-"+version)
	_ = json.NewEncoder(w).Encode(out)
}

func writeJSONError(w http.ResponseWriter, status int, code, msg, version string) {
	w.Header().Set("Content-Type", "application/x-amz-json-"+version)
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

// JSON helpers over decoded request bodies.
func sv(in map[string]any, k string) string { s, _ := in[k].(string); return s }

func nv(in map[string]any, k string) (int, bool) {
	f, ok := in[k].(float64)
	return int(f), ok
}

func list(in map[string]any, k string) []any { l, _ := in[k].([]any); return l }

func obj(in map[string]any, k string) map[string]any { m, _ := in[k].(map[string]any); return m }

func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }
