package awstest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
)

// FaultProxy forwards requests to an AWS stand-in and fails the calls it is
// told to, with the error the service itself would send for an internal
// failure (500 InternalFailure / ServiceUnavailable), so a deploy stops in
// the middle.
type FaultProxy struct {
	*httptest.Server

	mu    sync.Mutex
	fail  map[string]int // "service:Operation" -> how many more to fail
	Fails int
}

// NewFaultProxy starts a proxy in front of target.
func NewFaultProxy(target string) *FaultProxy {
	u, err := url.Parse(target)
	if err != nil {
		panic(err)
	}
	p := &FaultProxy{fail: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		service, op, _ := Operation(r, body)
		if p.take(service + ":" + op) {
			e := &apiError{status: 500, code: "InternalFailure", msg: "injected failure of " + service + ":" + op}
			switch {
			case service == "iam" || service == "sts":
				writeQueryError(w, e)
			case service == "ec2":
				e.code = "InternalError"
				writeEC2Error(w, e)
			case service == "scheduler" || service == "lambda":
				e.code = map[string]string{"scheduler": "InternalServerException", "lambda": "ServiceException"}[service]
				writeRESTError(w, e)
			case service == "apigateway":
				e.code = "InternalServerError"
				writeRESTError(w, e)
			default:
				writeJSONError(w, 500, e.code, e.msg, "1.1")
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	return p
}

// Fail makes the next n calls of op ("ecs:CreateService") fail; the SDK's
// retries count as calls.
func (p *FaultProxy) Fail(op string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail[op] = n
}

func (p *FaultProxy) take(op string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail[op] > 0 {
		p.fail[op]--
		p.Fails++
		return true
	}
	return false
}
