package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/lambdatest"
	"github.com/gosling-ci/gosling/internal/mototest"
	"github.com/gosling-ci/gosling/internal/secrets/awssmtest"
	"github.com/gosling-ci/gosling/internal/testbin"
)

// invoke sends one event through the Lambda stand-in and waits at most 30
// seconds for the function's answer.
func invoke(t *testing.T, rt *lambdatest.Server, event string) lambdatest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := rt.Invoke(ctx, []byte(event))
	if res.Kind == "timeout" {
		t.Fatalf("no answer to the event: %s", res.Body)
	}
	return res
}

func authorizerEvent(header string) string {
	ev := map[string]any{
		"version": "2.0", "type": "REQUEST",
		"routeArn":       "arn:aws:execute-api:eu-west-1:123456789012:abcdef123/$default/GET/api/v1/runners",
		"identitySource": []string{header},
		"routeKey":       "ANY /api/{proxy+}", "rawPath": "/api/v1/runners",
		"headers":        map[string]string{"authorization": header, "user-agent": "curl/8"},
		"requestContext": map[string]any{"http": map[string]any{"method": "GET", "path": "/api/v1/runners"}},
	}
	if header == "" {
		delete(ev, "identitySource")
		delete(ev["headers"].(map[string]string), "authorization")
	}
	b, _ := json.Marshal(ev)
	return string(b)
}

// The gosling binary, run as Lambda runs it, answers REQUEST authorizer
// events through the Runtime API: the right token is authorized, a wrong
// or missing one is not, tokens are read from Secrets Manager once per
// cache TTL, and an unreadable token store fails the invocation (the
// gateway's 500) without a token value in any output.
func TestAuthorizerUnderLambdaRuntimeAPI(t *testing.T) {
	const token = "gat-9f1c-authorizer-e2e"
	sm := awssmtest.New(t)
	sm.SetSecretString(t, "gosling/api", `{"token":"`+token+`"}`)
	sm.SetSecretString(t, "gosling/ci", `{"token":"gat-second-token"}`)
	rt := lambdatest.New("prod-gosling-auth", 5*time.Second)
	t.Cleanup(rt.Close)

	start := func(tokens string) (stop func(), out *bytes.Buffer) {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, testbin.Gosling(t), "authorizer")
		out = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(),
			"AWS_LAMBDA_RUNTIME_API="+rt.Addr(),
			"GOSLING_AUTH_TOKENS="+tokens, "GOSLING_AUTH_CACHE_TTL=1h",
			"AWS_ENDPOINT_URL_SECRETS_MANAGER="+sm.URL, "AWS_REGION="+mototest.Region,
			"AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=test-secret-key", "AWS_EC2_METADATA_DISABLED=true",
		)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); _ = cmd.Wait() }) }
		t.Cleanup(stop)
		return stop, out
	}
	stop, out := start("aws-sm://gosling/api/token, aws-sm://gosling/ci/token")

	answer := func(header string) (bool, map[string]any) {
		t.Helper()
		res := invoke(t, rt, authorizerEvent(header))
		if res.Kind != "response" {
			t.Fatalf("%q: the invocation failed: %s", header, res.Body)
		}
		var got struct {
			IsAuthorized bool           `json:"isAuthorized"`
			Context      map[string]any `json:"context"`
		}
		if err := json.Unmarshal(res.Body, &got); err != nil {
			t.Fatalf("%q: answer %s: %v", header, res.Body, err)
		}
		return got.IsAuthorized, got.Context
	}
	if ok, c := answer("Bearer " + token); !ok || c["authorizer"] != "gosling" {
		t.Errorf("the API token: authorized %v, context %v", ok, c)
	}
	if ok, _ := answer("bearer gat-second-token"); !ok {
		t.Error("the second token is refused")
	}
	for _, h := range []string{"Bearer wrong-token", "", "Basic " + token, "Bearer"} {
		if ok, _ := answer(h); ok {
			t.Errorf("%q is authorized", h)
		}
	}
	sm.ResetCalls()
	for range 5 {
		answer("Bearer " + token)
	}
	if n := sm.Calls("GetSecretValue"); n != 0 {
		t.Errorf("%d Secrets Manager reads within the cache TTL", n)
	}

	// A second function whose only token it may not read (the first one
	// stops, or it would take the event).
	stop()
	if err := rt.WaitNoPolls(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	sm.SetSecretString(t, "gosling/locked", `{"token":"`+token+`"}`)
	sm.Deny("gosling/locked")
	stop2, out2 := start("aws-sm://gosling/locked/token")
	res := invoke(t, rt, authorizerEvent("Bearer "+token))
	stop2()
	if res.Kind != "error" || !strings.Contains(string(res.Body), "no token could be resolved") {
		t.Errorf("an unreadable token store: %s %s", res.Kind, res.Body)
	}
	for _, o := range []*bytes.Buffer{out, out2} {
		if strings.Contains(o.String(), token) {
			t.Errorf("a token value in the function's output:\n%s", o)
		}
	}
}

func TestAuthorizerNeedsTokensAndLambda(t *testing.T) {
	f := newTestIO("", false).f
	cmd := NewCmdAuthorizer(f, nil)
	cmd.SetArgs([]string{"--tokens", ""})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "names no secret URI") {
		t.Errorf("no tokens: %v", err)
	}
	cmd = NewCmdAuthorizer(f, nil)
	cmd.SetArgs([]string{"--tokens", "plain-token"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--tokens") {
		t.Errorf("a token that is not a URI: %v", err)
	}
	opts := &AuthorizerOptions{Tokens: nil, Getenv: func(string) (string, bool) { return "", false }}
	if err := authorizerRun(context.Background(), opts); err != errNotInLambda {
		t.Errorf("outside Lambda: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	opts.Getenv = func(k string) (string, bool) { return gone, k == "AWS_LAMBDA_RUNTIME_API" }
	if err := authorizerRun(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "cannot be reached") {
		t.Errorf("Runtime API gone: %v", err)
	}
}

// A bad --tokens entry is quoted with the schemes that would do; a bad
// $GOSLING_AUTH_CACHE_TTL is an error, not a silent five minutes.
func TestAuthorizerFlagErrors(t *testing.T) {
	tio := newTestIO("", false)
	if code := run(t, tio, "authorizer", "--tokens", "aws-sm://gosling/api/token,plain"); code != ExitError {
		t.Fatalf("exit %d", code)
	}
	if e := tio.err.String(); !strings.Contains(e, `"plain"`) || !strings.Contains(e, "aws-sm://") {
		t.Errorf("stderr = %q", e)
	}
	t.Setenv("GOSLING_AUTH_CACHE_TTL", "300")
	tio = newTestIO("", false)
	if code := run(t, tio, "authorizer", "--tokens", "aws-sm://gosling/api/token"); code != ExitError {
		t.Fatalf("exit %d", code)
	}
	if e := tio.err.String(); !strings.Contains(e, `GOSLING_AUTH_CACHE_TTL="300" is not a duration`) {
		t.Errorf("stderr = %q", e)
	}
	var got *AuthorizerOptions
	cmd := NewCmdAuthorizer(newTestIO("", false).f, func(o *AuthorizerOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--tokens", "aws-sm://gosling/api/token", "--cache-ttl", "1m"})
	if err := cmd.Execute(); err != nil || got.CacheTTL != time.Minute {
		t.Errorf("the flag wins over a bad variable: %+v, %v", got, err)
	}
}
