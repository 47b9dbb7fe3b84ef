package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewayv2"
	gwtypes "github.com/aws/aws-sdk-go-v2/service/apigatewayv2/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery"
	sdtypes "github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"
)

// The API gateway's resources: the Cloud Map namespace and service the API
// service registers in, the auth function and its permission, and the
// HTTP API with its VPC link, integration, authorizer, routes and stage.
// Each is found again without a state file: namespaces, functions, APIs
// and VPC links by their deployment tag (and name), the API's children by
// the API they belong to.

// tagVPC keeps a private namespace's VPC on the namespace itself: Cloud
// Map does not return it (it belongs to the namespace's Route 53 hosted
// zone), and a plan compares it.
const tagVPC = "gosling-vpc"

// gatewayWait bounds the wait for Cloud Map operations, VPC links and
// Lambda functions to become ready.
const gatewayWait = 10 * time.Minute

func tagged(tags map[string]string, deployment string) bool { return tags[TagDeployment] == deployment }

// ---- Cloud Map ----

func sdTags(m map[string]string) []sdtypes.Tag {
	var out []sdtypes.Tag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, sdtypes.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func (p *AWSProvider) sdTagsOf(ctx context.Context, arn *string) (map[string]string, error) {
	t, err := p.sd.ListTagsForResource(ctx, &servicediscovery.ListTagsForResourceInput{ResourceARN: arn})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, tg := range t.Tags {
		out[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return out, nil
}

// readDiscovery reads the deployment's private DNS namespace (the one
// tagged with it) and the services in it.
func (p *AWSProvider) readDiscovery(ctx context.Context, _ []Resource) ([]Resource, error) {
	var out []Resource
	pg := servicediscovery.NewListNamespacesPaginator(p.sd, &servicediscovery.ListNamespacesInput{Filters: []sdtypes.NamespaceFilter{
		{Name: sdtypes.NamespaceFilterNameType, Values: []string{string(sdtypes.NamespaceTypeDnsPrivate)}, Condition: sdtypes.FilterConditionEq},
	}})
	for ns, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *servicediscovery.ListNamespacesOutput) []sdtypes.NamespaceSummary { return o.Namespaces }) {
		if err != nil {
			return nil, fmt.Errorf("list Cloud Map namespaces: %w", err)
		}
		tags, err := p.sdTagsOf(ctx, ns.Arn)
		if err != nil {
			return nil, fmt.Errorf("read the tags of Cloud Map namespace %s: %w", aws.ToString(ns.Name), err)
		}
		if !tagged(tags, p.Deployment) {
			continue
		}
		vpc := tags[tagVPC]
		delete(tags, tagVPC)
		id, arn := aws.ToString(ns.Id), aws.ToString(ns.Arn)
		out = append(out, Resource{Type: AWSNamespace, Name: "servers", ID: id, Outputs: map[string]string{"id": id, "arn": arn},
			Props: NamespaceProps{Name: aws.ToString(ns.Name), VPC: vpc, Tags: tags}})
		services, err := p.readDiscoveryServices(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, services...)
	}
	return out, nil
}

func (p *AWSProvider) readDiscoveryServices(ctx context.Context, namespace string) ([]Resource, error) {
	var out []Resource
	pg := servicediscovery.NewListServicesPaginator(p.sd, &servicediscovery.ListServicesInput{Filters: []sdtypes.ServiceFilter{
		{Name: sdtypes.ServiceFilterNameNamespaceId, Values: []string{namespace}, Condition: sdtypes.FilterConditionEq},
	}})
	for s, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *servicediscovery.ListServicesOutput) []sdtypes.ServiceSummary { return o.Services }) {
		if err != nil {
			return nil, fmt.Errorf("list the services of Cloud Map namespace %s: %w", namespace, err)
		}
		tags, err := p.sdTagsOf(ctx, s.Arn)
		if err != nil {
			return nil, fmt.Errorf("read the tags of Cloud Map service %s: %w", aws.ToString(s.Name), err)
		}
		records := []DNSRecord{}
		if s.DnsConfig != nil {
			for _, r := range s.DnsConfig.DnsRecords {
				records = append(records, DNSRecord{Type: string(r.Type), TTL: aws.ToInt64(r.TTL)})
			}
		}
		id, arn := aws.ToString(s.Id), aws.ToString(s.Arn)
		props := DiscoveryServiceProps{Name: aws.ToString(s.Name), NamespaceID: namespace, DNSRecords: records, Tags: tags}
		out = append(out, Resource{Type: AWSDiscoveryService, Name: aws.ToString(s.Name), Props: props, ID: id, Outputs: map[string]string{"id": id, "arn": arn}})
	}
	return out, nil
}

// waitOperation waits for a Cloud Map operation (namespaces are made and
// deleted asynchronously) and returns its targets.
func (p *AWSProvider) waitOperation(ctx context.Context, id *string) (map[string]string, error) {
	deadline := time.Now().Add(gatewayWait)
	for {
		op, err := p.sd.GetOperation(ctx, &servicediscovery.GetOperationInput{OperationId: id})
		if err != nil {
			return nil, fmt.Errorf("get Cloud Map operation %s: %w", aws.ToString(id), err)
		}
		switch op.Operation.Status {
		case sdtypes.OperationStatusSuccess:
			return op.Operation.Targets, nil
		case sdtypes.OperationStatusFail:
			return nil, fmt.Errorf("cloud Map operation %s failed: %s: %s", aws.ToString(id), aws.ToString(op.Operation.ErrorCode), aws.ToString(op.Operation.ErrorMessage))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cloud Map operation %s is still %s after %s", aws.ToString(id), op.Operation.Status, gatewayWait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func (p *AWSProvider) putNamespace(ctx context.Context, before *Resource, r Resource) error {
	want := as[NamespaceProps](r)
	tags := maps.Clone(want.Tags)
	if tags == nil {
		tags = map[string]string{}
	}
	tags[tagVPC] = want.VPC
	if before == nil {
		out, err := p.sd.CreatePrivateDnsNamespace(ctx, &servicediscovery.CreatePrivateDnsNamespaceInput{
			Name: aws.String(want.Name), Vpc: aws.String(want.VPC), Tags: sdTags(tags),
			Description: aws.String("Gosling " + p.Deployment + ": the servers' private names"),
		})
		if err != nil {
			return err
		}
		_, err = p.waitOperation(ctx, out.OperationId)
		return err
	}
	if had := as[NamespaceProps](*before); had.Name != want.Name || had.VPC != want.VPC {
		return fmt.Errorf("a Cloud Map namespace keeps its name and VPC (%s in %s): delete it by hand (aws servicediscovery delete-namespace --id %s) and deploy again",
			had.Name, had.VPC, before.ID)
	}
	_, err := p.sd.TagResource(ctx, &servicediscovery.TagResourceInput{ResourceARN: aws.String(before.Outputs["arn"]), Tags: sdTags(tags)})
	return err
}

func (p *AWSProvider) deleteNamespace(ctx context.Context, r Resource) error {
	out, err := p.sd.DeleteNamespace(ctx, &servicediscovery.DeleteNamespaceInput{Id: aws.String(r.ID)})
	if err != nil {
		return err
	}
	_, err = p.waitOperation(ctx, out.OperationId)
	return err
}

func dnsRecords(s DiscoveryServiceProps) []sdtypes.DnsRecord {
	var out []sdtypes.DnsRecord
	for _, rec := range s.DNSRecords {
		out = append(out, sdtypes.DnsRecord{Type: sdtypes.RecordType(rec.Type), TTL: aws.Int64(rec.TTL)})
	}
	return out
}

func (p *AWSProvider) putDiscoveryService(ctx context.Context, before *Resource, r Resource) error {
	want := as[DiscoveryServiceProps](r)
	if before == nil {
		_, err := p.sd.CreateService(ctx, &servicediscovery.CreateServiceInput{
			Name: aws.String(want.Name), NamespaceId: aws.String(want.NamespaceID),
			DnsConfig: &sdtypes.DnsConfig{DnsRecords: dnsRecords(want), RoutingPolicy: sdtypes.RoutingPolicyMultivalue},
			Tags:      sdTags(want.Tags),
		})
		return err
	}
	if !slices.Equal(as[DiscoveryServiceProps](*before).DNSRecords, want.DNSRecords) {
		out, err := p.sd.UpdateService(ctx, &servicediscovery.UpdateServiceInput{Id: aws.String(before.ID), Service: &sdtypes.ServiceChange{
			DnsConfig: &sdtypes.DnsConfigChange{DnsRecords: dnsRecords(want)},
		}})
		if err != nil {
			return err
		}
		if _, err := p.waitOperation(ctx, out.OperationId); err != nil {
			return err
		}
	}
	_, err := p.sd.TagResource(ctx, &servicediscovery.TagResourceInput{ResourceARN: aws.String(before.Outputs["arn"]), Tags: sdTags(want.Tags)})
	return err
}

// ---- Lambda ----

// readFunctions reads the deployment's functions: those named
// <deployment>-... that carry its tag, with the permissions their
// resource policies grant.
func (p *AWSProvider) readFunctions(ctx context.Context, hints []Resource) ([]Resource, error) {
	names := hintNames(hints, AWSFunction)
	var out []Resource
	pg := lambda.NewListFunctionsPaginator(p.lambda, &lambda.ListFunctionsInput{})
	for f, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *lambda.ListFunctionsOutput) []lambdatypes.FunctionConfiguration { return o.Functions }) {
		if err != nil {
			return nil, fmt.Errorf("list Lambda functions: %w", err)
		}
		name := aws.ToString(f.FunctionName)
		if !strings.HasPrefix(name, p.Deployment+"-") {
			continue
		}
		got, err := p.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: &name})
		if apiCode(err) == "ResourceNotFoundException" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get Lambda function %s: %w", name, err)
		}
		if !tagged(got.Tags, p.Deployment) {
			continue
		}
		rn, ok := names[name]
		if !ok {
			rn = strings.TrimPrefix(name, p.Deployment+"-")
		}
		fn, err := p.readFunction(got, rn)
		if err != nil {
			return nil, err
		}
		out = append(out, fn)
		prn := rn
		for _, h := range hints {
			if h.Type == AWSPermission && as[PermissionProps](h).FunctionName == name {
				prn = h.Name
			}
		}
		perms, err := p.readPermissions(ctx, name, prn)
		if err != nil {
			return nil, err
		}
		out = append(out, perms...)
	}
	return out, nil
}

func (p *AWSProvider) readFunction(got *lambda.GetFunctionOutput, rn string) (Resource, error) {
	c := got.Configuration
	if c == nil {
		return Resource{}, fmt.Errorf("lambda function %s has no configuration", rn)
	}
	env := map[string]string{}
	if c.Environment != nil {
		env = nonNilMap(c.Environment.Variables)
	}
	command := []string{}
	if ic := c.ImageConfigResponse; ic != nil && ic.ImageConfig != nil {
		command = ic.ImageConfig.Command
	}
	image := ""
	if got.Code != nil {
		image = aws.ToString(got.Code.ImageUri)
	}
	props := FunctionProps{
		Name: aws.ToString(c.FunctionName), PackageType: string(c.PackageType), Image: image, Command: command,
		Role: aws.ToString(c.Role), MemorySize: int(aws.ToInt32(c.MemorySize)), Timeout: int(aws.ToInt32(c.Timeout)),
		Environment: env, Tags: nonNilMap(got.Tags),
	}
	arn := aws.ToString(c.FunctionArn)
	return Resource{Type: AWSFunction, Name: rn, Props: props, ID: arn, Outputs: map[string]string{"arn": arn, "name": aws.ToString(c.FunctionName)}}, nil
}

// lambdaPolicy is a function's resource policy as GetPolicy returns it;
// a statement's Principal is a map or "*", so it is read apart.
type lambdaPolicy struct {
	Statement []struct {
		Sid       string
		Action    Values
		Principal json.RawMessage
		Condition map[string]map[string]Values
	}
}

// only is v's one string, or "" when it is a list.
func (v Values) only() string {
	if v.One && len(v.List) == 1 {
		return v.List[0]
	}
	return ""
}

// readPermissions reads the statements of a function's resource policy
// that AddPermission made for API Gateway; the one permission per function
// is named as the desired set names it, else after the function's
// resource.
func (p *AWSProvider) readPermissions(ctx context.Context, function, rn string) ([]Resource, error) {
	got, err := p.lambda.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: &function})
	if apiCode(err) == "ResourceNotFoundException" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get the policy of Lambda function %s: %w", function, err)
	}
	var pol lambdaPolicy
	if err := json.Unmarshal([]byte(aws.ToString(got.Policy)), &pol); err != nil {
		return nil, fmt.Errorf("the policy of Lambda function %s is not JSON: %w", function, err)
	}
	var out []Resource
	for _, st := range pol.Statement {
		if !strings.HasPrefix(st.Sid, "apigateway-") {
			continue
		}
		var principal struct{ Service Values }
		_ = json.Unmarshal(st.Principal, &principal) // "*" names no service
		out = append(out, Resource{Type: AWSPermission, Name: rn, ID: function + "/" + st.Sid, Props: PermissionProps{
			FunctionName: function, StatementID: st.Sid, Action: st.Action.only(), Principal: principal.Service.only(),
			SourceARN: st.Condition["ArnLike"]["AWS:SourceArn"].only(),
		}})
	}
	return out, nil
}

func (p *AWSProvider) putFunction(ctx context.Context, before *Resource, r Resource) error {
	want := as[FunctionProps](r)
	name := want.Name
	env := nonNilMap(want.Environment)
	imageConfig := &lambdatypes.ImageConfig{Command: want.Command}
	if before == nil {
		in := &lambda.CreateFunctionInput{
			FunctionName: &name, PackageType: lambdatypes.PackageType(want.PackageType),
			Code: &lambdatypes.FunctionCode{ImageUri: aws.String(want.Image)}, ImageConfig: imageConfig,
			Role: aws.String(want.Role), MemorySize: aws.Int32(int32(want.MemorySize)),
			Timeout: aws.Int32(int32(want.Timeout)), Environment: &lambdatypes.Environment{Variables: env},
			Tags: nonNilMap(want.Tags),
		}
		// A role made a moment ago is not yet visible to Lambda (IAM is
		// eventually consistent): CreateFunction says it cannot be assumed
		// for some seconds.
		deadline := time.Now().Add(lambdaRoleWait)
		for {
			_, err := p.lambda.CreateFunction(ctx, in)
			if err == nil {
				break
			}
			if !roleNotAssumable(err) || time.Now().After(deadline) {
				return err
			}
			if err := sleep(ctx, p.retryDelay); err != nil {
				return err
			}
		}
		return lambda.NewFunctionActiveV2Waiter(p.lambda).Wait(ctx, &lambda.GetFunctionInput{FunctionName: &name}, gatewayWait)
	}
	had := as[FunctionProps](*before)
	if had.Name != name {
		return fmt.Errorf("a Lambda function keeps its name (%s)", had.Name)
	}
	err := p.changeFunction(ctx, name, func() error {
		_, err := p.lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
			FunctionName: &name, ImageConfig: imageConfig, Role: aws.String(want.Role),
			MemorySize: aws.Int32(int32(want.MemorySize)), Timeout: aws.Int32(int32(want.Timeout)),
			Environment: &lambdatypes.Environment{Variables: env},
		})
		return err
	})
	if err != nil {
		return err
	}
	if had.Image != want.Image {
		err := p.changeFunction(ctx, name, func() error {
			_, err := p.lambda.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: &name, ImageUri: aws.String(want.Image)})
			return err
		})
		if err != nil {
			return err
		}
	}
	_, err = p.lambda.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(before.ID), Tags: nonNilMap(want.Tags)})
	return err
}

// lambdaRoleWait bounds how long a Lambda call is retried while it says
// the function's role cannot be assumed, or that another update is in
// progress.
const lambdaRoleWait = 2 * time.Minute

// changeFunction makes one change to Lambda function name (an update of
// its configuration or its code) and waits for it to end. Lambda takes
// one update at a time and refuses another while the last one's
// LastUpdateStatus is InProgress (409 ResourceConflictException, see
// docs.aws.amazon.com/lambda/latest/dg/functions-states.html), so the
// change waits for that status first, and again before each retry while
// Lambda still refuses it so; a role made or changed a moment ago is
// retried as on create (IAM is eventually consistent). Retries end after
// lambdaRoleWait.
func (p *AWSProvider) changeFunction(ctx context.Context, name string, change func() error) error {
	in := &lambda.GetFunctionInput{FunctionName: &name}
	updated := lambda.NewFunctionUpdatedV2Waiter(p.lambda)
	deadline := time.Now().Add(lambdaRoleWait)
	for {
		if err := updated.Wait(ctx, in, gatewayWait); err != nil {
			return fmt.Errorf("wait for the last update of Lambda function %s to end: %w", name, err)
		}
		err := change()
		if err == nil {
			break
		}
		var conflict *lambdatypes.ResourceConflictException
		if !errors.As(err, &conflict) && !roleNotAssumable(err) || time.Now().After(deadline) {
			return err
		}
		if err := sleep(ctx, p.retryDelay); err != nil {
			return err
		}
	}
	// One update at a time: the next change, or the next deploy, finds it
	// ended.
	return updated.Wait(ctx, in, gatewayWait)
}

// roleNotAssumable tells Lambda's answer to a role IAM has not yet
// propagated: InvalidParameterValueException, "The role defined for the
// function cannot be assumed by Lambda."
func roleNotAssumable(err error) bool {
	var bad *lambdatypes.InvalidParameterValueException
	return errors.As(err, &bad) && strings.Contains(aws.ToString(bad.Message), "cannot be assumed")
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func (p *AWSProvider) putPermission(ctx context.Context, before *Resource, r Resource) error {
	if before != nil {
		if err := p.deletePermission(ctx, *before); err != nil {
			return err
		}
	}
	perm := as[PermissionProps](r)
	_, err := p.lambda.AddPermission(ctx, &lambda.AddPermissionInput{
		FunctionName: aws.String(perm.FunctionName), StatementId: aws.String(perm.StatementID),
		Action: aws.String(perm.Action), Principal: aws.String(perm.Principal), SourceArn: aws.String(perm.SourceARN),
	})
	return err
}

func (p *AWSProvider) deletePermission(ctx context.Context, r Resource) error {
	perm := as[PermissionProps](r)
	_, err := p.lambda.RemovePermission(ctx, &lambda.RemovePermissionInput{
		FunctionName: aws.String(perm.FunctionName), StatementId: aws.String(perm.StatementID),
	})
	if apiCode(err) == "ResourceNotFoundException" {
		return nil
	}
	return err
}

// ---- API Gateway (HTTP APIs) ----

// readGateway reads the deployment's HTTP API (named and tagged after it)
// with its authorizers, integrations, routes and stages, and its VPC
// links.
func (p *AWSProvider) readGateway(ctx context.Context, _ []Resource) ([]Resource, error) {
	var out []Resource
	for a, err := range pages(ctx, func(ctx context.Context, token string) ([]gwtypes.Api, string, error) {
		page, err := p.gw.GetApis(ctx, &apigatewayv2.GetApisInput{NextToken: nilIfEmpty(token)})
		if err != nil {
			return nil, "", err
		}
		return page.Items, aws.ToString(page.NextToken), nil
	}) {
		if err != nil {
			return nil, fmt.Errorf("list API Gateway APIs: %w", err)
		}
		if aws.ToString(a.Name) != p.Deployment || !tagged(a.Tags, p.Deployment) {
			continue
		}
		id := aws.ToString(a.ApiId)
		acct, err := p.account(ctx)
		if err != nil {
			return nil, err
		}
		exec := acct.arn("execute-api", id)
		out = append(out, Resource{Type: AWSAPI, Name: "api", ID: id,
			Props:   APIProps{Name: aws.ToString(a.Name), ProtocolType: string(a.ProtocolType), Tags: nonNilMap(a.Tags)},
			Outputs: map[string]string{"id": id, "api_endpoint": aws.ToString(a.ApiEndpoint), "execution_arn": exec}})
		children, err := p.readAPIChildren(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, children...)
	}
	for l, err := range pages(ctx, func(ctx context.Context, token string) ([]gwtypes.VpcLink, string, error) {
		page, err := p.gw.GetVpcLinks(ctx, &apigatewayv2.GetVpcLinksInput{NextToken: nilIfEmpty(token)})
		if err != nil {
			return nil, "", err
		}
		return page.Items, aws.ToString(page.NextToken), nil
	}) {
		if err != nil {
			return nil, fmt.Errorf("list API Gateway VPC links: %w", err)
		}
		if aws.ToString(l.Name) != p.Deployment || !tagged(l.Tags, p.Deployment) || l.VpcLinkStatus == gwtypes.VpcLinkStatusDeleting {
			continue
		}
		id := aws.ToString(l.VpcLinkId)
		out = append(out, Resource{Type: AWSVPCLink, Name: "api", ID: id, Outputs: map[string]string{"id": id},
			Props: VPCLinkProps{
				Name: aws.ToString(l.Name), SubnetIDs: l.SubnetIds, SecurityGroupIDs: nonNil(l.SecurityGroupIds), Tags: nonNilMap(l.Tags),
			}})
	}
	return out, nil
}

func (p *AWSProvider) readAPIChildren(ctx context.Context, api string) ([]Resource, error) {
	var out []Resource
	for a, err := range pages(ctx, func(ctx context.Context, token string) ([]gwtypes.Authorizer, string, error) {
		page, err := p.gw.GetAuthorizers(ctx, &apigatewayv2.GetAuthorizersInput{ApiId: &api, NextToken: nilIfEmpty(token)})
		if err != nil {
			return nil, "", err
		}
		return page.Items, aws.ToString(page.NextToken), nil
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the authorizers of API %s: %w", api, err)
		}
		id := aws.ToString(a.AuthorizerId)
		out = append(out, Resource{Type: AWSAuthorizer, Name: aws.ToString(a.Name), ID: id, Outputs: map[string]string{"id": id},
			Props: AuthorizerProps{
				APIID: api, Name: aws.ToString(a.Name), AuthorizerType: string(a.AuthorizerType),
				AuthorizerPayloadFormatVersion: aws.ToString(a.AuthorizerPayloadFormatVersion),
				EnableSimpleResponses:          aws.ToBool(a.EnableSimpleResponses), IdentitySource: a.IdentitySource,
				AuthorizerResultTTLInSeconds: int(aws.ToInt32(a.AuthorizerResultTtlInSeconds)), AuthorizerURI: aws.ToString(a.AuthorizerUri),
			}})
	}
	for i, err := range pages(ctx, func(ctx context.Context, token string) ([]gwtypes.Integration, string, error) {
		page, err := p.gw.GetIntegrations(ctx, &apigatewayv2.GetIntegrationsInput{ApiId: &api, NextToken: nilIfEmpty(token)})
		if err != nil {
			return nil, "", err
		}
		return page.Items, aws.ToString(page.NextToken), nil
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the integrations of API %s: %w", api, err)
		}
		id := aws.ToString(i.IntegrationId)
		// An integration has no name: its description is its resource's.
		name := aws.ToString(i.Description)
		if name == "" {
			name = id
		}
		out = append(out, Resource{Type: AWSIntegration, Name: name, ID: id, Outputs: map[string]string{"id": id},
			Props: IntegrationProps{
				APIID: api, Description: aws.ToString(i.Description), IntegrationType: string(i.IntegrationType),
				IntegrationMethod: aws.ToString(i.IntegrationMethod), ConnectionType: string(i.ConnectionType),
				ConnectionID: aws.ToString(i.ConnectionId), IntegrationURI: aws.ToString(i.IntegrationUri),
				PayloadFormatVersion: aws.ToString(i.PayloadFormatVersion),
			}})
	}
	for r, err := range pages(ctx, func(ctx context.Context, token string) ([]gwtypes.Route, string, error) {
		page, err := p.gw.GetRoutes(ctx, &apigatewayv2.GetRoutesInput{ApiId: &api, NextToken: nilIfEmpty(token)})
		if err != nil {
			return nil, "", err
		}
		return page.Items, aws.ToString(page.NextToken), nil
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the routes of API %s: %w", api, err)
		}
		id := aws.ToString(r.RouteId)
		out = append(out, Resource{Type: AWSRoute, Name: routeName(aws.ToString(r.RouteKey)), ID: id, Outputs: map[string]string{"id": id},
			Props: RouteProps{
				APIID: api, RouteKey: aws.ToString(r.RouteKey), Target: aws.ToString(r.Target),
				AuthorizationType: string(r.AuthorizationType), AuthorizerID: aws.ToString(r.AuthorizerId),
			}})
	}
	for s, err := range pages(ctx, func(ctx context.Context, token string) ([]gwtypes.Stage, string, error) {
		page, err := p.gw.GetStages(ctx, &apigatewayv2.GetStagesInput{ApiId: &api, NextToken: nilIfEmpty(token)})
		if err != nil {
			return nil, "", err
		}
		return page.Items, aws.ToString(page.NextToken), nil
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the stages of API %s: %w", api, err)
		}
		name := aws.ToString(s.StageName)
		out = append(out, Resource{Type: AWSStage, Name: strings.TrimPrefix(name, "$"), ID: api + "/" + name, Outputs: map[string]string{"name": name},
			Props: StageProps{APIID: api, Name: name, AutoDeploy: aws.ToBool(s.AutoDeploy), Tags: nonNilMap(s.Tags)}})
	}
	return out, nil
}

// gwTag sets the tags of the API Gateway resource at path.
func (p *AWSProvider) gwTag(ctx context.Context, path string, tags map[string]string) error {
	arn, err := p.gwARN(ctx, path)
	if err != nil {
		return err
	}
	_, err = p.gw.TagResource(ctx, &apigatewayv2.TagResourceInput{ResourceArn: &arn, Tags: nonNilMap(tags)})
	return err
}

// gwARN is the ARN of an API Gateway resource at path (/apis/ID).
func (p *AWSProvider) gwARN(ctx context.Context, path string) (string, error) {
	acct, err := p.account(ctx)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("arn:%s:apigateway:%s::%s", acct.Partition, acct.Region, path), nil
}

// account is Account for the clients' region, asked once.
func (p *AWSProvider) account(ctx context.Context) (AWSAccount, error) {
	p.acctMu.Lock()
	defer p.acctMu.Unlock()
	if p.acct == nil {
		a, err := p.Account(ctx, p.gw.Options().Region)
		if err != nil {
			return a, err
		}
		p.acct = &a
	}
	return *p.acct, nil
}

func (p *AWSProvider) putAPI(ctx context.Context, before *Resource, r Resource) error {
	if before == nil {
		want := as[APIProps](r)
		_, err := p.gw.CreateApi(ctx, &apigatewayv2.CreateApiInput{
			Name: aws.String(want.Name), ProtocolType: gwtypes.ProtocolType(want.ProtocolType), Tags: nonNilMap(want.Tags),
		})
		return err
	}
	return p.gwTag(ctx, "/apis/"+before.ID, as[APIProps](r).Tags)
}

// putVPCLink makes a VPC link or retags one. UpdateVpcLink changes only
// a link's name
// (https://docs.aws.amazon.com/apigatewayv2/latest/api-reference/vpclinks-vpclinkid.html#vpclinks-vpclinkid-http-methods):
// other subnets or security groups stop the deploy with the commands that
// delete the link and what goes through it (API Gateway refuses to delete
// an integration a route targets, and a link an integration uses).
func (p *AWSProvider) putVPCLink(ctx context.Context, before *Resource, r Resource) error {
	want := as[VPCLinkProps](r)
	if before != nil {
		had := as[VPCLinkProps](*before)
		for _, k := range []struct {
			what       string
			had, wants []string
		}{{"subnets", had.SubnetIDs, want.SubnetIDs}, {"security groups", had.SecurityGroupIDs, want.SecurityGroupIDs}} {
			if jsonString(k.had) != jsonString(k.wants) {
				return fmt.Errorf("a VPC link keeps its %s: delete the routes and the integration that go through VPC link %s (aws apigatewayv2 delete-route, delete-integration), then the link (aws apigatewayv2 delete-vpc-link --vpc-link-id %s), and deploy again, which makes them anew",
					k.what, before.ID, before.ID)
			}
		}
		return p.gwTag(ctx, "/vpclinks/"+before.ID, want.Tags)
	}
	out, err := p.gw.CreateVpcLink(ctx, &apigatewayv2.CreateVpcLinkInput{
		Name: aws.String(want.Name), SubnetIds: want.SubnetIDs, SecurityGroupIds: want.SecurityGroupIDs, Tags: nonNilMap(want.Tags),
	})
	if err != nil {
		return err
	}
	// A VPC link takes a few minutes to become AVAILABLE; integrations
	// through it work only then.
	deadline := time.Now().Add(gatewayWait)
	for status := out.VpcLinkStatus; status != gwtypes.VpcLinkStatusAvailable; {
		if status == gwtypes.VpcLinkStatusFailed {
			return errors.Join(fmt.Errorf("VPC link %s failed", aws.ToString(out.VpcLinkId)),
				p.deleteVPCLink(context.WithoutCancel(ctx), aws.ToString(out.VpcLinkId)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("VPC link %s is still %s after %s", aws.ToString(out.VpcLinkId), status, gatewayWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
		got, err := p.gw.GetVpcLink(ctx, &apigatewayv2.GetVpcLinkInput{VpcLinkId: out.VpcLinkId})
		if err != nil {
			return err
		}
		status = got.VpcLinkStatus
	}
	return nil
}

func (p *AWSProvider) deleteVPCLink(ctx context.Context, id string) error {
	_, err := p.gw.DeleteVpcLink(ctx, &apigatewayv2.DeleteVpcLinkInput{VpcLinkId: &id})
	return err
}

func (p *AWSProvider) putIntegration(ctx context.Context, before *Resource, r Resource) error {
	in := as[IntegrationProps](r)
	api := aws.String(in.APIID)
	typ, conn := gwtypes.IntegrationType(in.IntegrationType), gwtypes.ConnectionType(in.ConnectionType)
	if before == nil {
		_, err := p.gw.CreateIntegration(ctx, &apigatewayv2.CreateIntegrationInput{
			ApiId: api, Description: aws.String(in.Description), IntegrationType: typ,
			IntegrationMethod: aws.String(in.IntegrationMethod), ConnectionType: conn,
			ConnectionId: aws.String(in.ConnectionID), IntegrationUri: aws.String(in.IntegrationURI),
			PayloadFormatVersion: aws.String(in.PayloadFormatVersion),
		})
		return err
	}
	_, err := p.gw.UpdateIntegration(ctx, &apigatewayv2.UpdateIntegrationInput{
		ApiId: api, IntegrationId: aws.String(before.ID), Description: aws.String(in.Description), IntegrationType: typ,
		IntegrationMethod: aws.String(in.IntegrationMethod), ConnectionType: conn,
		ConnectionId: aws.String(in.ConnectionID), IntegrationUri: aws.String(in.IntegrationURI),
		PayloadFormatVersion: aws.String(in.PayloadFormatVersion),
	})
	return err
}

func (p *AWSProvider) putAuthorizer(ctx context.Context, before *Resource, r Resource) error {
	a := as[AuthorizerProps](r)
	api := aws.String(a.APIID)
	typ := gwtypes.AuthorizerType(a.AuthorizerType)
	ttl := aws.Int32(int32(a.AuthorizerResultTTLInSeconds))
	simple := a.EnableSimpleResponses
	if before == nil {
		_, err := p.gw.CreateAuthorizer(ctx, &apigatewayv2.CreateAuthorizerInput{
			ApiId: api, Name: aws.String(a.Name), AuthorizerType: typ,
			AuthorizerPayloadFormatVersion: aws.String(a.AuthorizerPayloadFormatVersion),
			EnableSimpleResponses:          &simple, IdentitySource: a.IdentitySource,
			AuthorizerResultTtlInSeconds: ttl, AuthorizerUri: aws.String(a.AuthorizerURI),
		})
		return err
	}
	_, err := p.gw.UpdateAuthorizer(ctx, &apigatewayv2.UpdateAuthorizerInput{
		ApiId: api, AuthorizerId: aws.String(before.ID), Name: aws.String(a.Name), AuthorizerType: typ,
		AuthorizerPayloadFormatVersion: aws.String(a.AuthorizerPayloadFormatVersion),
		EnableSimpleResponses:          &simple, IdentitySource: a.IdentitySource,
		AuthorizerResultTtlInSeconds: ttl, AuthorizerUri: aws.String(a.AuthorizerURI),
	})
	return err
}

func (p *AWSProvider) putRoute(ctx context.Context, before *Resource, r Resource) error {
	route := as[RouteProps](r)
	api := aws.String(route.APIID)
	var authorizer *string
	if a := route.AuthorizerID; a != "" {
		authorizer = &a
	}
	typ := gwtypes.AuthorizationType(route.AuthorizationType)
	if before == nil {
		_, err := p.gw.CreateRoute(ctx, &apigatewayv2.CreateRouteInput{
			ApiId: api, RouteKey: aws.String(route.RouteKey), Target: aws.String(route.Target),
			AuthorizationType: typ, AuthorizerId: authorizer,
		})
		return err
	}
	if authorizer == nil {
		// An empty ID detaches the authorizer.
		authorizer = aws.String("")
	}
	_, err := p.gw.UpdateRoute(ctx, &apigatewayv2.UpdateRouteInput{
		ApiId: api, RouteId: aws.String(before.ID), RouteKey: aws.String(route.RouteKey),
		Target: aws.String(route.Target), AuthorizationType: typ, AuthorizerId: authorizer,
	})
	return err
}

func (p *AWSProvider) putStage(ctx context.Context, before *Resource, r Resource) error {
	stage := as[StageProps](r)
	api, name, auto := stage.APIID, stage.Name, stage.AutoDeploy
	if before == nil {
		_, err := p.gw.CreateStage(ctx, &apigatewayv2.CreateStageInput{ApiId: &api, StageName: &name, AutoDeploy: &auto, Tags: nonNilMap(stage.Tags)})
		return err
	}
	if _, err := p.gw.UpdateStage(ctx, &apigatewayv2.UpdateStageInput{ApiId: &api, StageName: &name, AutoDeploy: &auto}); err != nil {
		return err
	}
	return p.gwTag(ctx, "/apis/"+api+"/stages/"+name, stage.Tags)
}

func (p *AWSProvider) deleteGatewayResource(ctx context.Context, r Resource) error {
	var api *string
	if child, ok := r.Props.(interface{ apiID() string }); ok {
		api = aws.String(child.apiID())
	}
	var err error
	switch r.Type {
	case AWSAPI:
		_, err = p.gw.DeleteApi(ctx, &apigatewayv2.DeleteApiInput{ApiId: aws.String(r.ID)})
	case AWSVPCLink:
		err = p.deleteVPCLink(ctx, r.ID)
	case AWSIntegration:
		_, err = p.gw.DeleteIntegration(ctx, &apigatewayv2.DeleteIntegrationInput{ApiId: api, IntegrationId: aws.String(r.ID)})
	case AWSAuthorizer:
		_, err = p.gw.DeleteAuthorizer(ctx, &apigatewayv2.DeleteAuthorizerInput{ApiId: api, AuthorizerId: aws.String(r.ID)})
	case AWSRoute:
		_, err = p.gw.DeleteRoute(ctx, &apigatewayv2.DeleteRouteInput{ApiId: api, RouteId: aws.String(r.ID)})
	case AWSStage:
		_, err = p.gw.DeleteStage(ctx, &apigatewayv2.DeleteStageInput{ApiId: api, StageName: aws.String(as[StageProps](r).Name)})
	}
	// Deleting an API deletes its children: a later delete of one finds
	// nothing, which is what it wanted.
	if r.Type != AWSAPI && apiCode(err) == "NotFoundException" {
		return nil
	}
	return err
}

// ---- API Gateway custom domain names ----

// readDomains reads the deployment's custom domain names (those tagged
// with it) and each one's API mappings, named "api" for the root mapping
// (no key) and after their key otherwise.
func (p *AWSProvider) readDomains(ctx context.Context, _ []Resource) ([]Resource, error) {
	var out []Resource
	for d, err := range pages(ctx, func(ctx context.Context, token string) ([]gwtypes.DomainName, string, error) {
		page, err := p.gw.GetDomainNames(ctx, &apigatewayv2.GetDomainNamesInput{NextToken: nilIfEmpty(token)})
		if err != nil {
			return nil, "", err
		}
		return page.Items, aws.ToString(page.NextToken), nil
	}) {
		if err != nil {
			return nil, fmt.Errorf("list API Gateway domain names: %w", err)
		}
		if !tagged(d.Tags, p.Deployment) {
			continue
		}
		name := aws.ToString(d.DomainName)
		var c gwtypes.DomainNameConfiguration
		if len(d.DomainNameConfigurations) > 0 {
			c = d.DomainNameConfigurations[0]
		}
		out = append(out, Resource{Type: AWSDomainName, Name: "api", ID: name,
			Props: DomainNameProps{
				DomainName: name, CertificateARN: aws.ToString(c.CertificateArn), EndpointType: string(c.EndpointType),
				SecurityPolicy: string(c.SecurityPolicy), Tags: nonNilMap(d.Tags),
			},
			Outputs: map[string]string{
				"domain_name": name, "arn": aws.ToString(d.DomainNameArn),
				"target_domain_name": aws.ToString(c.ApiGatewayDomainName), "hosted_zone_id": aws.ToString(c.HostedZoneId),
			}})
		mappings, err := p.readAPIMappings(ctx, name)
		if err != nil {
			return nil, err
		}
		out = append(out, mappings...)
	}
	return out, nil
}

func (p *AWSProvider) readAPIMappings(ctx context.Context, domain string) ([]Resource, error) {
	var out []Resource
	for m, err := range pages(ctx, func(ctx context.Context, token string) ([]gwtypes.ApiMapping, string, error) {
		page, err := p.gw.GetApiMappings(ctx, &apigatewayv2.GetApiMappingsInput{DomainName: &domain, NextToken: nilIfEmpty(token)})
		if err != nil {
			return nil, "", err
		}
		return page.Items, aws.ToString(page.NextToken), nil
	}) {
		if err != nil {
			return nil, fmt.Errorf("list the API mappings of domain name %s: %w", domain, err)
		}
		id, key := aws.ToString(m.ApiMappingId), aws.ToString(m.ApiMappingKey)
		name := "api"
		if key != "" {
			name = resourceName(key)
		}
		out = append(out, Resource{Type: AWSAPIMapping, Name: name, ID: id, Outputs: map[string]string{"id": id},
			Props: APIMappingProps{DomainName: domain, APIID: aws.ToString(m.ApiId), Stage: aws.ToString(m.Stage), APIMappingKey: key}})
	}
	return out, nil
}

func domainConfigs(d DomainNameProps) []gwtypes.DomainNameConfiguration {
	return []gwtypes.DomainNameConfiguration{{
		CertificateArn: aws.String(d.CertificateARN), EndpointType: gwtypes.EndpointType(d.EndpointType),
		SecurityPolicy: gwtypes.SecurityPolicy(d.SecurityPolicy),
	}}
}

// putDomainName makes or updates a custom domain name. A domain name is
// its own ID and cannot be renamed; another domain is left to the operator
// (delete the old one, deploy again, move DNS), as a rename here could not
// be undone in step with its mapping if a later step failed.
func (p *AWSProvider) putDomainName(ctx context.Context, before *Resource, r Resource) error {
	want := as[DomainNameProps](r)
	name := want.DomainName
	if before == nil {
		_, err := p.gw.CreateDomainName(ctx, &apigatewayv2.CreateDomainNameInput{
			DomainName: &name, DomainNameConfigurations: domainConfigs(want), Tags: nonNilMap(want.Tags),
		})
		return err
	}
	if before.ID != name {
		return fmt.Errorf("an API Gateway domain name keeps its name (%s, not %s): delete it by hand (aws apigatewayv2 delete-domain-name --domain-name %s) and deploy again, then point DNS for %s at the target deploy prints",
			before.ID, name, before.ID, name)
	}
	if _, err := p.gw.UpdateDomainName(ctx, &apigatewayv2.UpdateDomainNameInput{DomainName: &name, DomainNameConfigurations: domainConfigs(want)}); err != nil {
		return err
	}
	return p.gwTag(ctx, "/domainnames/"+name, want.Tags)
}

// deleteDomainName deletes a domain name's API mappings, then the domain
// name.
func (p *AWSProvider) deleteDomainName(ctx context.Context, name string) error {
	mappings, err := p.readAPIMappings(ctx, name)
	if err != nil {
		return err
	}
	for _, m := range mappings {
		if err := p.deleteAPIMapping(ctx, m); err != nil {
			return err
		}
	}
	_, err = p.gw.DeleteDomainName(ctx, &apigatewayv2.DeleteDomainNameInput{DomainName: &name})
	return err
}

// putAPIMapping makes or updates an API mapping; one moved to another
// domain name is deleted from the old one and made on the new one.
func (p *AWSProvider) putAPIMapping(ctx context.Context, before *Resource, r Resource) error {
	m := as[APIMappingProps](r)
	domain, api, stage, key := m.DomainName, m.APIID, m.Stage, m.APIMappingKey
	if before != nil && as[APIMappingProps](*before).DomainName == domain {
		_, err := p.gw.UpdateApiMapping(ctx, &apigatewayv2.UpdateApiMappingInput{
			DomainName: &domain, ApiMappingId: aws.String(before.ID), ApiId: &api, Stage: &stage, ApiMappingKey: &key,
		})
		return err
	}
	if before != nil {
		if err := p.deleteAPIMapping(ctx, *before); err != nil {
			return err
		}
	}
	_, err := p.gw.CreateApiMapping(ctx, &apigatewayv2.CreateApiMappingInput{DomainName: &domain, ApiId: &api, Stage: &stage, ApiMappingKey: &key})
	return err
}

// deleteAPIMapping deletes a mapping; one already gone with its domain
// name is no error.
func (p *AWSProvider) deleteAPIMapping(ctx context.Context, r Resource) error {
	_, err := p.gw.DeleteApiMapping(ctx, &apigatewayv2.DeleteApiMappingInput{
		DomainName: aws.String(as[APIMappingProps](r).DomainName), ApiMappingId: aws.String(r.ID),
	})
	if apiCode(err) == "NotFoundException" {
		return nil
	}
	return err
}
