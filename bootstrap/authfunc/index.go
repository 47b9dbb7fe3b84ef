// Package main is the auth function of a Yandex Cloud deployment: an API
// Gateway authorizer (x-yc-apigateway-authorizer of type function,
// https://yandex.cloud/en/docs/api-gateway/concepts/extensions/function-authorizer)
// for the Cloud Functions Go runtime, entrypoint index.Handler
// (https://yandex.cloud/en/docs/functions/lang/golang/handler: the handler
// lives in package main, in the file the entrypoint names). `gosling
// deploy` uploads this file as the function version's content.
//
// It accepts a request whose Authorization header is "Bearer <token>" when
// the token equals one of the tokens in the environment variables
// GOSLING_AUTH_TOKEN_1, GOSLING_AUTH_TOKEN_2, ... (numbered from 1 without
// gaps), which the function version fills from Lockbox secrets, so no
// token is in the code or the deployment's plan. It uses the standard
// library only, so the builder fetches nothing, and the syntax of Go 1.16:
// the builder wants a go.mod without a go line (the plugin it builds must
// match the runtime's Go), and such a module is read as Go 1.16.
package main

import (
	"context"
	"crypto/subtle"
	"os"
	"strconv"
	"strings"
)

// TokenEnvPrefix starts the names of the environment variables that hold
// the accepted tokens: TokenEnvPrefix + "1", + "2", ...
const TokenEnvPrefix = "GOSLING_AUTH_TOKEN_"

// Request is the part of API Gateway's authorizer call the function reads:
// the HTTP headers of the request being authorized, by name.
type Request struct {
	Headers map[string]string `json:"headers"`
}

// Response is the authorizer's answer: isAuthorized, and on success the
// context API Gateway hands on to the integration as
// requestContext.authorizer.
type Response struct {
	IsAuthorized bool                   `json:"isAuthorized"`
	Context      map[string]interface{} `json:"context,omitempty"`
}

// Handler answers API Gateway. It never returns an error: a request it
// cannot authorize gets isAuthorized false, which API Gateway answers
// with 403.
func Handler(_ context.Context, req *Request) (*Response, error) {
	if req == nil {
		return &Response{}, nil
	}
	return Authorize(req.Headers, Tokens(os.Getenv)), nil
}

// Tokens reads the accepted tokens from the environment through getenv,
// from GOSLING_AUTH_TOKEN_1 up to the first unset or empty variable.
func Tokens(getenv func(string) string) []string {
	var out []string
	for i := 1; ; i++ {
		t := getenv(TokenEnvPrefix + strconv.Itoa(i))
		if t == "" {
			return out
		}
		out = append(out, t)
	}
}

// Authorize checks the bearer token of headers (the header name in any
// case) against tokens. Every token is compared in constant time and all
// of them are compared, so the time taken says nothing of which one, if
// any, matched. The context names the matching token by its number
// (token 1 is GOSLING_AUTH_TOKEN_1), never by its value.
func Authorize(headers map[string]string, tokens []string) *Response {
	var auth string
	for k, v := range headers {
		if strings.EqualFold(k, "Authorization") {
			auth = v
		}
	}
	parts := strings.SplitN(strings.TrimSpace(auth), " ", 2)
	if len(parts) != 2 || !strings.EqualFold(parts[0], "Bearer") || strings.TrimSpace(parts[1]) == "" {
		return &Response{}
	}
	given, match := strings.TrimSpace(parts[1]), 0
	for i, t := range tokens {
		if subtle.ConstantTimeCompare([]byte(given), []byte(t)) == 1 && match == 0 {
			match = i + 1
		}
	}
	if match == 0 {
		return &Response{}
	}
	return &Response{IsAuthorized: true, Context: map[string]interface{}{"token": match}}
}
