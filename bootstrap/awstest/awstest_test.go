package awstest

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewayv2"
	gwtypes "github.com/aws/aws-sdk-go-v2/service/apigatewayv2/types"

	"github.com/gosling-ci/gosling/internal/mototest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Runner(m).Run()) }

// The API Gateway calls moto lacks, through the SDK: an updated stage and
// API mapping read back as updated, and the authorizers list finds the
// one made.
func TestAPIGatewayUpdates(t *testing.T) {
	ctx := context.Background()
	a := New(t)
	gw := apigatewayv2.NewFromConfig(a.Config())
	api, err := gw.CreateApi(ctx, &apigatewayv2.CreateApiInput{Name: aws.String("api"), ProtocolType: gwtypes.ProtocolTypeHttp})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.CreateStage(ctx, &apigatewayv2.CreateStageInput{ApiId: api.ApiId, StageName: aws.String("$default"), AutoDeploy: aws.Bool(false),
		Tags: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.UpdateStage(ctx, &apigatewayv2.UpdateStageInput{ApiId: api.ApiId, StageName: aws.String("$default"), AutoDeploy: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	stage, err := gw.GetStage(ctx, &apigatewayv2.GetStageInput{ApiId: api.ApiId, StageName: aws.String("$default")})
	if err != nil || !aws.ToBool(stage.AutoDeploy) || stage.Tags["k"] != "v" {
		t.Fatalf("stage after the update: %+v, %v", stage, err)
	}

	authz, err := gw.CreateAuthorizer(ctx, &apigatewayv2.CreateAuthorizerInput{ApiId: api.ApiId, Name: aws.String("auth"),
		AuthorizerType: gwtypes.AuthorizerTypeRequest, IdentitySource: []string{"$request.header.Authorization"},
		AuthorizerUri:                  aws.String("arn:aws:apigateway:eu-central-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-central-1:" + a.Account + ":function:f/invocations"),
		AuthorizerPayloadFormatVersion: aws.String("2.0")})
	if err != nil {
		t.Fatal(err)
	}
	list, err := gw.GetAuthorizers(ctx, &apigatewayv2.GetAuthorizersInput{ApiId: api.ApiId})
	if err != nil || len(list.Items) != 1 || aws.ToString(list.Items[0].AuthorizerId) != aws.ToString(authz.AuthorizerId) {
		t.Fatalf("authorizers: %+v, %v", list, err)
	}

	domain := "ci.example.com"
	if _, err := gw.CreateDomainName(ctx, &apigatewayv2.CreateDomainNameInput{DomainName: &domain, DomainNameConfigurations: []gwtypes.DomainNameConfiguration{{
		CertificateArn: aws.String(a.Certificate(t, domain)), EndpointType: gwtypes.EndpointTypeRegional}}}); err != nil {
		t.Fatal(err)
	}
	m, err := gw.CreateApiMapping(ctx, &apigatewayv2.CreateApiMappingInput{DomainName: &domain, ApiId: api.ApiId, Stage: aws.String("$default")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.UpdateApiMapping(ctx, &apigatewayv2.UpdateApiMappingInput{DomainName: &domain, ApiMappingId: m.ApiMappingId, ApiId: api.ApiId,
		ApiMappingKey: aws.String("v1"), Stage: aws.String("$default")}); err != nil {
		t.Fatal(err)
	}
	renewed := a.Certificate(t, domain)
	if _, err := gw.UpdateDomainName(ctx, &apigatewayv2.UpdateDomainNameInput{DomainName: &domain, DomainNameConfigurations: []gwtypes.DomainNameConfiguration{{
		CertificateArn: &renewed, EndpointType: gwtypes.EndpointTypeRegional}}}); err != nil {
		t.Fatal(err)
	}
	got, err := gw.GetDomainName(ctx, &apigatewayv2.GetDomainNameInput{DomainName: &domain})
	if err != nil || len(got.DomainNameConfigurations) != 1 || aws.ToString(got.DomainNameConfigurations[0].CertificateArn) != renewed ||
		aws.ToString(got.DomainNameConfigurations[0].HostedZoneId) == "" {
		t.Fatalf("domain name after the update: %+v, %v", got, err)
	}
	mappings, err := gw.GetApiMappings(ctx, &apigatewayv2.GetApiMappingsInput{DomainName: &domain})
	if err != nil || len(mappings.Items) != 1 || aws.ToString(mappings.Items[0].ApiMappingKey) != "v1" {
		t.Fatalf("mappings after the updates: %+v, %v", mappings, err)
	}
}
