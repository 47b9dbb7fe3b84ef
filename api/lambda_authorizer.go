package api

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// AuthorizeHTTPAPI is the auth function of the API Gateway HTTP API that
// `gosling deploy` makes on AWS: a Lambda REQUEST authorizer with payload
// format 2.0 and simple responses
// (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-lambda-authorizer.html).
// It reads the Authorization header ("Bearer <token>"; HTTP APIs send
// header names in lower case) and answers isAuthorized true when the token
// is one of the configured ones, as Authorize decides for the server.
//
// A missing or wrong token, or no token configured, is
// {"isAuthorized": false} (the gateway answers 403). When no configured
// token can be resolved from its secret backend, the error is returned:
// Lambda reports a function error and the gateway answers 500, so an
// outage of the secret store is not mistaken for a wrong token. The
// context of an allowed request carries "authorizer": "gosling".
func (a *Authorizer) AuthorizeHTTPAPI(ctx context.Context, req events.APIGatewayV2CustomAuthorizerV2Request) (events.APIGatewayV2CustomAuthorizerSimpleResponse, error) {
	header := ""
	for k, v := range req.Headers {
		if strings.EqualFold(k, "Authorization") {
			header = v
			break
		}
	}
	err := a.Authorize(ctx, header)
	switch {
	case err == nil:
		return events.APIGatewayV2CustomAuthorizerSimpleResponse{IsAuthorized: true, Context: map[string]any{"authorizer": "gosling"}}, nil
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrAPIDisabled):
		return events.APIGatewayV2CustomAuthorizerSimpleResponse{IsAuthorized: false}, nil
	}
	return events.APIGatewayV2CustomAuthorizerSimpleResponse{}, err
}
