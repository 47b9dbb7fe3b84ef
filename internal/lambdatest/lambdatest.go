// Package lambdatest is a STAND-IN for AWS Lambda as both of its sides see
// one function, for tests: the Runtime API the function's runtime polls
// (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html: GET
// /2018-06-01/runtime/invocation/next long-polls for the next event,
// answered with the Lambda-Runtime-Aws-Request-Id, -Deadline-Ms and
// -Invoked-Function-Arn headers; the function posts
// .../invocation/{id}/response or .../invocation/{id}/error) and the Invoke
// API an invoker calls (POST /2015-03-31/functions/{name}/invocations,
// SigV4-signed, X-Amz-Invocation-Type RequestResponse), joined as Lambda
// joins them: an Invoke hands its payload to the function's next poll, and
// its answer is what the function posts (an error as X-Amz-Function-Error:
// Unhandled), or a timeout once the function's deadline passes. One
// listener serves both; the Runtime API's address is Addr (host:port, for
// $AWS_LAMBDA_RUNTIME_API), the Invoke API's base URL is URL.
package lambdatest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Server is the stand-in for one function.
type Server struct {
	*httptest.Server
	// Function is the function's name, Timeout its configured timeout.
	Function string
	Timeout  time.Duration

	events chan *invocation
	mu     sync.Mutex
	seq    int
	open   map[string]*invocation
	// polling counts the long polls in flight.
	polling int
	invokes int
}

type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
	result   chan Result
}

// finish ends the invocation once: by the function's answer or its
// deadline, whichever comes first.
func (inv *invocation) finish(r Result) {
	select {
	case inv.result <- r:
	default:
	}
}

// Result is how an invocation ended: the function's response, or an error
// it posted (Kind "error"), or "timeout".
type Result struct {
	Kind string // response, error or timeout
	Body []byte
}

// New starts the stand-in of a function with a timeout (Lambda's at most 15
// minutes).
func New(function string, timeout time.Duration) *Server {
	s := &Server{Function: function, Timeout: timeout, events: make(chan *invocation, 64), open: map[string]*invocation{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Addr is the Runtime API's host:port ($AWS_LAMBDA_RUNTIME_API).
func (s *Server) Addr() string { return strings.TrimPrefix(s.URL, "http://") }

// Invoke queues one event, as the Invoke API does, and waits for how it
// ends.
func (s *Server) Invoke(ctx context.Context, payload []byte) Result {
	inv := s.queue(payload)
	select {
	case r := <-inv.result:
		return r
	case <-ctx.Done():
		return Result{Kind: "timeout", Body: []byte(ctx.Err().Error())}
	}
}

func (s *Server) queue(payload []byte) *invocation {
	s.mu.Lock()
	s.seq++
	s.invokes++
	inv := &invocation{id: fmt.Sprintf("8476a536-e9f4-11e8-9739-%012d", s.seq), payload: payload, result: make(chan Result, 1)}
	s.mu.Unlock()
	s.events <- inv
	return inv
}

// Polling is how many long polls are in flight: a function waiting for an
// event polls.
func (s *Server) Polling() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polling
}

// Invocations counts the Invoke calls.
func (s *Server) Invocations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.invokes
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if fn, ok := strings.CutPrefix(r.URL.Path, "/2015-03-31/functions/"); ok {
		s.invokeAPI(w, r, strings.TrimSuffix(fn, "/invocations"))
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/2018-06-01/runtime/")
	switch {
	case r.Method == http.MethodGet && path == "invocation/next":
		s.mu.Lock()
		s.polling++
		s.mu.Unlock()
		defer func() { s.mu.Lock(); s.polling--; s.mu.Unlock() }()
		select {
		case inv := <-s.events:
			inv.deadline = time.Now().Add(s.Timeout)
			s.mu.Lock()
			s.open[inv.id] = inv
			s.mu.Unlock()
			// Lambda ends an invocation its function does not answer by
			// its deadline.
			time.AfterFunc(s.Timeout, func() {
				inv.finish(Result{Kind: "timeout", Body: []byte(fmt.Sprintf(`{"errorMessage":"%s Task timed out after %.2f seconds"}`, inv.id, s.Timeout.Seconds()))})
			})
			w.Header().Set("Lambda-Runtime-Aws-Request-Id", inv.id)
			w.Header().Set("Lambda-Runtime-Deadline-Ms", fmt.Sprint(inv.deadline.UnixMilli()))
			w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-central-1:123456789012:function:"+s.Function)
			w.Header().Set("Lambda-Runtime-Trace-Id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1")
			_, _ = w.Write(inv.payload)
		case <-r.Context().Done():
		}
	case r.Method == http.MethodPost && strings.HasPrefix(path, "invocation/"):
		id, kind, _ := strings.Cut(strings.TrimPrefix(path, "invocation/"), "/")
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		inv := s.open[id]
		delete(s.open, id)
		s.mu.Unlock()
		if inv == nil || (kind != "response" && kind != "error") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}`)
			return
		}
		inv.finish(Result{Kind: kind, Body: body})
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPost && path == "init/error":
		w.WriteHeader(http.StatusAccepted)
	default:
		http.Error(w, "not a Runtime API call", http.StatusNotFound)
	}
}

// invokeAPI serves Lambda's Invoke (RequestResponse only, as InvokeRunner
// calls it).
func (s *Server) invokeAPI(w http.ResponseWriter, r *http.Request, fn string) {
	apiError := func(status int, typ, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-ErrorType", typ)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"Type": "User", "message": msg})
	}
	switch {
	case r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 "):
		apiError(http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token")
		return
	case fn != s.Function && !strings.HasSuffix(fn, ":function:"+s.Function):
		apiError(http.StatusNotFound, "ResourceNotFoundException", "Function not found: arn:aws:lambda:eu-central-1:123456789012:function:"+fn)
		return
	case r.Header.Get("X-Amz-Invocation-Type") != "" && r.Header.Get("X-Amz-Invocation-Type") != "RequestResponse":
		apiError(http.StatusBadRequest, "InvalidParameterValueException", "this stand-in takes RequestResponse invocations only")
		return
	}
	payload, _ := io.ReadAll(r.Body)
	inv := s.queue(payload)
	var res Result
	select {
	case res = <-inv.result:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	if res.Kind != "response" {
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
	}
	_, _ = w.Write(res.Body)
}

// WaitNoPolls waits until no long poll is in flight: a stopped function's
// poll ends once the server sees its connection close, and until then it
// could take the next event.
func (s *Server) WaitNoPolls(within time.Duration) error {
	deadline := time.Now().Add(within)
	for s.Polling() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d long polls still in flight", s.Polling())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
