package api_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/mothergoose"
)

// The Lambda authorizer decides as the server does, from the lower-case
// header names HTTP APIs send.
func TestAuthorizeHTTPAPI(t *testing.T) {
	ctx := context.Background()
	local, err := secretstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res := secretstore.NewResolver(local)
	if _, err := res.Put(ctx, "local://api/token", "gat-lambda-test"); err != nil {
		t.Fatal(err)
	}
	auth := func(tokens ...fly.SecretRef) *api.Authorizer {
		return api.NewAuthorizer(mothergoose.NewSecretCache(res, time.Minute), tokens)
	}
	req := func(h map[string]string) events.APIGatewayV2CustomAuthorizerV2Request {
		return events.APIGatewayV2CustomAuthorizerV2Request{Version: "2.0", Type: "REQUEST", Headers: h}
	}
	for _, c := range []struct {
		name    string
		a       *api.Authorizer
		headers map[string]string
		want    bool
	}{
		{"right token", auth("local://api/token"), map[string]string{"authorization": "Bearer gat-lambda-test"}, true},
		{"header in any case", auth("local://api/token"), map[string]string{"Authorization": "bearer gat-lambda-test"}, true},
		{"wrong token", auth("local://api/token"), map[string]string{"authorization": "Bearer nope"}, false},
		{"no header", auth("local://api/token"), nil, false},
		{"no token configured", auth(), map[string]string{"authorization": "Bearer gat-lambda-test"}, false},
	} {
		got, err := c.a.AuthorizeHTTPAPI(ctx, req(c.headers))
		if err != nil || got.IsAuthorized != c.want {
			t.Errorf("%s: %+v, %v", c.name, got, err)
		}
	}
	if _, err := auth("local://missing/token").AuthorizeHTTPAPI(ctx, req(map[string]string{"authorization": "Bearer x"})); err == nil || errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("an unreadable token is not an invocation error: %v", err)
	}
}
