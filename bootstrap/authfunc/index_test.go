package main

import (
	"context"
	"encoding/json"
	"testing"
)

func TestAuthorize(t *testing.T) {
	tokens := []string{"ops-token", "ci-token"}
	for _, tc := range []struct {
		name    string
		headers map[string]string
		tokens  []string
		want    int // matching token number, 0 for refused
	}{
		{"good token", map[string]string{"Authorization": "Bearer ops-token"}, tokens, 1},
		{"second of several tokens", map[string]string{"Authorization": "Bearer ci-token"}, tokens, 2},
		{"header name in lower case", map[string]string{"authorization": "bearer ci-token"}, tokens, 2},
		{"bad token", map[string]string{"Authorization": "Bearer ops-tokenX"}, tokens, 0},
		{"prefix of a token", map[string]string{"Authorization": "Bearer ops"}, tokens, 0},
		{"missing header", map[string]string{"Content-Type": "application/json"}, tokens, 0},
		{"no headers", nil, tokens, 0},
		{"basic scheme", map[string]string{"Authorization": "Basic ops-token"}, tokens, 0},
		{"bearer without token", map[string]string{"Authorization": "Bearer "}, tokens, 0},
		{"no tokens configured", map[string]string{"Authorization": "Bearer ops-token"}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Authorize(tc.headers, tc.tokens)
			if got.IsAuthorized != (tc.want > 0) {
				t.Fatalf("isAuthorized = %v, want %v", got.IsAuthorized, tc.want > 0)
			}
			if tc.want > 0 && got.Context["token"] != tc.want {
				t.Errorf("context = %v, want token %d", got.Context, tc.want)
			}
		})
	}
}

func TestTokensFromEnvironment(t *testing.T) {
	env := map[string]string{"GOSLING_AUTH_TOKEN_1": "a", "GOSLING_AUTH_TOKEN_2": "b", "GOSLING_AUTH_TOKEN_4": "after a gap"}
	got := Tokens(func(k string) string { return env[k] })
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("tokens = %q", got)
	}
}

func TestHandlerAnswersAPIGateway(t *testing.T) {
	t.Setenv("GOSLING_AUTH_TOKEN_1", "ops-token")
	t.Setenv("GOSLING_AUTH_TOKEN_2", "ci-token")
	// The request as API Gateway sends it, decoded as the runtime does.
	var req Request
	raw := `{"resource":"/api/{proxy+}","path":"/api/v1/runners","httpMethod":"GET",
		"headers":{"Authorization":"Bearer ci-token","Host":"d5d.apigw.yandexcloud.net"},
		"queryStringParameters":{},"pathParameters":{"proxy":"v1/runners"},"requestContext":{},"cookies":{}}`
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		t.Fatal(err)
	}
	resp, err := Handler(context.Background(), &req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(resp)
	if string(b) != `{"isAuthorized":true,"context":{"token":2}}` {
		t.Errorf("answer %s", b)
	}
	req.Headers["Authorization"] = "Bearer nope"
	resp, _ = Handler(context.Background(), &req)
	if b, _ := json.Marshal(resp); string(b) != `{"isAuthorized":false}` {
		t.Errorf("answer to a bad token %s", b)
	}
	if resp, _ := Handler(context.Background(), nil); resp.IsAuthorized {
		t.Error("an empty call was authorized")
	}
}
