package awstest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewayv2"
	gwtypes "github.com/aws/aws-sdk-go-v2/service/apigatewayv2/types"
)

// TestDomainNameErrors checks, through the real SDK client, that the
// stand-in answers domain names and mappings with API Gateway's error
// types: a non-ACM or other-region certificate is a BadRequestException, a
// second domain name or mapping key a ConflictException, a missing API or
// domain name a NotFoundException.
func TestDomainNameErrors(t *testing.T) {
	ctx := context.Background()
	srv := New()
	defer srv.Close()
	gw := apigatewayv2.NewFromConfig(Config(srv.URL))
	cert := "arn:aws:acm:" + Region + ":" + Account + ":certificate/0a1b2c3d-4e5f-4a7b-8c9d-0e1f2a3b4c5d"
	create := func(name, cert string) (*apigatewayv2.CreateDomainNameOutput, error) {
		return gw.CreateDomainName(ctx, &apigatewayv2.CreateDomainNameInput{DomainName: aws.String(name), DomainNameConfigurations: []gwtypes.DomainNameConfiguration{{
			CertificateArn: aws.String(cert), EndpointType: gwtypes.EndpointTypeRegional, SecurityPolicy: gwtypes.SecurityPolicyTls12,
		}}})
	}
	var bad *gwtypes.BadRequestException
	for _, arn := range []string{"arn:aws:iam::" + Account + ":server-certificate/ci", strings.Replace(cert, Region, "us-east-1", 1)} {
		if _, err := create("ci.example.com", arn); !errors.As(err, &bad) {
			t.Errorf("certificate %s: %v, want a BadRequestException", arn, err)
		}
	}
	d, err := create("ci.example.com", cert)
	if err != nil {
		t.Fatal(err)
	}
	c := d.DomainNameConfigurations[0]
	if target := aws.ToString(c.ApiGatewayDomainName); !strings.HasPrefix(target, "d-") || !strings.HasSuffix(target, ".execute-api."+Region+".amazonaws.com") || aws.ToString(c.HostedZoneId) == "" {
		t.Errorf("domain name configuration %+v", c)
	}
	var conflict *gwtypes.ConflictException
	if _, err := create("ci.example.com", cert); !errors.As(err, &conflict) {
		t.Errorf("second domain name: %v, want a ConflictException", err)
	}
	var notFound *gwtypes.NotFoundException
	if _, err := gw.CreateApiMapping(ctx, &apigatewayv2.CreateApiMappingInput{DomainName: aws.String("ci.example.com"), ApiId: aws.String("nope"), Stage: aws.String("$default")}); !errors.As(err, &notFound) {
		t.Errorf("mapping to no API: %v, want a NotFoundException", err)
	}
	api, err := gw.CreateApi(ctx, &apigatewayv2.CreateApiInput{Name: aws.String("gosling"), ProtocolType: gwtypes.ProtocolTypeHttp})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.CreateStage(ctx, &apigatewayv2.CreateStageInput{ApiId: api.ApiId, StageName: aws.String("$default")}); err != nil {
		t.Fatal(err)
	}
	mapping := &apigatewayv2.CreateApiMappingInput{DomainName: aws.String("ci.example.com"), ApiId: api.ApiId, Stage: aws.String("$default"), ApiMappingKey: aws.String("")}
	if _, err := gw.CreateApiMapping(ctx, mapping); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.CreateApiMapping(ctx, mapping); !errors.As(err, &conflict) {
		t.Errorf("second root mapping: %v, want a ConflictException", err)
	}
	if _, err := gw.DeleteDomainName(ctx, &apigatewayv2.DeleteDomainNameInput{DomainName: aws.String("ci.example.com")}); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.GetApiMappings(ctx, &apigatewayv2.GetApiMappingsInput{DomainName: aws.String("ci.example.com")}); !errors.As(err, &notFound) {
		t.Errorf("mappings of a deleted domain name: %v, want a NotFoundException", err)
	}
}
