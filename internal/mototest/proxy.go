package mototest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Region is the region Config names.
const Region = "eu-central-1"

// operationHeader carries the SDK's operation name from Config's clients
// to the proxy, which removes it before moto sees the request: REST
// protocols (Lambda, API Gateway, EventBridge Scheduler) name the
// operation only by method and path.
const operationHeader = "X-Mototest-Operation"

// accounts numbers the AWS accounts NewProxy hands out.
var accounts atomic.Int64

// Proxy is an HTTP proxy in front of moto with an AWS account of its own
// (moto keeps every account's resources apart; the proxy names its account
// in moto's x-moto-account-id header). It counts calls, fails the ones it
// is told to with the error the service itself would send, and hands
// operations moto does not serve to the handlers given to Handle.
//
// It sends moto one DynamoDB request at a time: moto checks a write's
// condition and writes without a lock, so two concurrent conditional
// writes of one item could both succeed, which DynamoDB never allows.
type Proxy struct {
	*httptest.Server
	// Account is the 12-digit AWS account every request is made in.
	Account string

	target  *url.URL
	forward *httputil.ReverseProxy

	dynamo sync.Mutex // held while moto serves a DynamoDB request

	mu        sync.Mutex
	calls     map[string]int
	faults    map[string][]Fault // "service:Operation" -> the next responses
	handlers  map[string]Handler
	intercept func(op string, body []byte) *Fault
}

// Fault is an AWS error response: its HTTP status, error code and
// message. Type is Lambda's "User" or "Service", sent when set.
type Fault struct {
	Status  int
	Code    string
	Message string
	Type    string
}

// Handler serves one operation moto does not: body is the request's body,
// already read.
type Handler func(w http.ResponseWriter, r *http.Request, body []byte)

// NewProxy starts a proxy with a fresh account in front of the shared
// moto_server (Start); it stops when the test ends.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	p := newProxy(Start(t), fmt.Sprintf("%012d", 100000000000+accounts.Add(1)))
	t.Cleanup(p.Close)
	return p
}

func newProxy(endpoint, account string) *Proxy {
	u, err := url.Parse(endpoint)
	if err != nil {
		panic(err)
	}
	p := &Proxy{Account: account, target: u, forward: httputil.NewSingleHostReverseProxy(u),
		calls: map[string]int{}, faults: map[string][]Fault{}, handlers: map[string]Handler{}}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	return p
}

// Config returns an AWS configuration whose clients reach moto through the
// proxy, with static credentials and quick retries (3 attempts, 1 ms
// apart).
func (p *Proxy) Config() aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDMOTOTEST", "mototest-secret-key", ""),
		BaseEndpoint: aws.String(p.URL),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.RateLimiter = ratelimit.None
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			})
		},
		APIOptions: []func(*middleware.Stack) error{nameOperation},
	}
}

// Direct returns an AWS configuration whose clients reach moto itself in
// the proxy's account, neither counted nor failed: for handlers that
// compose an operation moto lacks from ones it serves.
func (p *Proxy) Direct() aws.Config {
	cfg := p.Config()
	cfg.BaseEndpoint = aws.String(p.target.String())
	cfg.APIOptions = []func(*middleware.Stack) error{func(st *middleware.Stack) error {
		return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("mototestAccount",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if req, ok := in.Request.(*smithyhttp.Request); ok {
					req.Header.Set("X-Moto-Account-Id", p.Account)
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	}}
	return cfg
}

// nameOperation puts the operation's name in operationHeader after the
// request is signed.
func nameOperation(st *middleware.Stack) error {
	return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("mototestOperation",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if req, ok := in.Request.(*smithyhttp.Request); ok {
				req.Header.Set(operationHeader, awsmiddleware.GetOperationName(ctx))
			}
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

// Calls returns how many requests of each operation ("iam:CreateRole")
// reached the proxy, failed ones included.
func (p *Proxy) Calls() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.calls))
	for k, v := range p.calls {
		out[k] = v
	}
	return out
}

// ResetCalls zeroes the counters.
func (p *Proxy) ResetCalls() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.calls)
}

// Fail makes the next n calls of op ("ecs:CreateService") fail with the
// service's internal error (HTTP 500), which the SDK retries: its retries
// count as calls. n = 0 stops failing op.
func (p *Proxy) Fail(op string, n int) {
	service, _, _ := strings.Cut(op, ":")
	f := Fault{Status: http.StatusInternalServerError, Code: internalError[service], Message: "injected failure of " + op}
	if f.Code == "" {
		f.Code = "InternalFailure"
	}
	faults := make([]Fault, n)
	for i := range faults {
		faults[i] = f
	}
	p.Inject(op, faults...)
}

// Inject answers the next calls of op with faults, one each, in order;
// calls after them reach moto. No faults stops answering op.
func (p *Proxy) Inject(op string, faults ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[op] = faults
}

// Intercept has f look at every call before anything else: a fault it
// returns answers the call. nil removes it.
func (p *Proxy) Intercept(f func(op string, body []byte) *Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.intercept = f
}

// Handle serves op ("apigateway:GetAuthorizers") with h instead of moto.
func (p *Proxy) Handle(op string, h Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handlers[op] = h
}

// internalError is each service's code for an internal failure.
var internalError = map[string]string{
	"ec2": "InternalError", "scheduler": "InternalServerException", "lambda": "ServiceException", "apigateway": "InternalServerError",
}

var scopeRE = regexp.MustCompile(`Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request`)

// Operation names a request as "service:Operation": the service from its
// SigV4 credential scope, as AWS's own front ends route, the operation
// from X-Amz-Target, a query protocol's Action or the name Config's
// clients send; "" when it has none of them.
func Operation(r *http.Request, body []byte) string {
	m := scopeRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return ""
	}
	op := r.Header.Get(operationHeader)
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		_, op, _ = strings.Cut(t, ".")
	} else if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if v, err := url.ParseQuery(string(body)); err == nil && v.Get("Action") != "" {
			op = v.Get("Action")
		}
	}
	if op == "" {
		return ""
	}
	return m[1] + ":" + op
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	op := Operation(r, body)
	p.mu.Lock()
	p.calls[op]++
	var fault *Fault
	if fs := p.faults[op]; len(fs) > 0 {
		fault, p.faults[op] = &fs[0], fs[1:]
	}
	h, intercept := p.handlers[op], p.intercept
	p.mu.Unlock()
	if intercept != nil && fault == nil {
		fault = intercept(op, body)
	}
	r.Header.Del(operationHeader)
	r.Header.Set("X-Moto-Account-Id", p.Account)
	r.Body = io.NopCloser(bytes.NewReader(body))
	switch {
	case fault != nil:
		WriteError(w, r, *fault)
	case h != nil:
		h(w, r, body)
	case strings.HasPrefix(op, "dynamodb:"):
		p.dynamo.Lock()
		defer p.dynamo.Unlock()
		p.forward.ServeHTTP(w, r)
	default:
		p.forward.ServeHTTP(w, r)
	}
}

// WriteError writes f in the protocol of the request r: JSON (X-Amz-Target),
// the query protocols of IAM, STS and EC2 (form-encoded Action=...), or
// REST-JSON (Lambda, API Gateway, EventBridge Scheduler).
func WriteError(w http.ResponseWriter, r *http.Request, f Fault) {
	service := ""
	if m := scopeRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		service = m[1]
	}
	switch {
	case r.Header.Get("X-Amz-Target") != "":
		version := strings.TrimPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-")
		w.Header().Set("Content-Type", "application/x-amz-json-"+version)
		w.Header().Set("X-Amzn-ErrorType", f.Code)
		w.WriteHeader(f.Status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": f.Code, "message": f.Message})
	case service == "ec2":
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>59dbff89-35bd-4eac-99ed-be587EXAMPLE</RequestID></Response>`,
			f.Code, xmlEscape(f.Message))
	case strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
		typ := "Sender"
		if f.Status >= 500 {
			typ = "Receiver"
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, `<ErrorResponse xmlns="https://%s.amazonaws.com/doc/"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId></ErrorResponse>`,
			service, typ, f.Code, xmlEscape(f.Message))
	default:
		out := map[string]string{"message": f.Message}
		if f.Type != "" {
			out["Type"] = f.Type
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-ErrorType", f.Code)
		w.WriteHeader(f.Status)
		_ = json.NewEncoder(w).Encode(out)
	}
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Call sends one request straight to moto in the proxy's account, signed
// with SigV4 for service (its signing name: "apigateway", "lambda", ...),
// and returns moto's answer (its body already read and closed) and body.
// Handlers compose the operations moto lacks from ones it serves with it;
// its calls are not counted.
func (p *Proxy) Call(ctx context.Context, service, method, path string, header http.Header, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.target.String()+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" && len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	sum := sha256.Sum256(body)
	creds, err := p.Config().Credentials.Retrieve(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), service, Region, time.Now()); err != nil {
		return nil, nil, err
	}
	req.Header.Set("X-Moto-Account-Id", p.Account)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp, out, err
}
