// Package awstest serves, in front of moto (internal/mototest), the few
// calls of `gosling deploy` that moto 5.2 does not, each composed from
// calls moto does serve so that moto keeps every resource:
//
//   - API Gateway v2 GetAuthorizers: moto has GetAuthorizer but no list;
//     the IDs its CreateAuthorizer answers are remembered per API and
//     read back one by one.
//   - API Gateway v2 UpdateStage, UpdateDomainName and UpdateApiMapping:
//     moto has none; the resource is read, deleted and made again with the
//     update applied (an API mapping's ID is a hash of its stage, domain
//     and key in moto, so a re-made mapping keeps it unless those change).
//   - API Gateway v2 domain names' ApiGatewayDomainName and HostedZoneId:
//     moto answers a domain name's configurations as they were sent; the
//     regional target AWS adds (d-....execute-api.REGION.amazonaws.com)
//     and its hosted zone are added to its answers.
//   - ECS CreateService and UpdateService with an awsvpc configuration
//     without security groups (AWS then uses the VPC's default group):
//     moto fails with a KeyError; it is sent an empty list of groups.
//   - EC2 DeleteSecurityGroup of a group that another group's rule, a VPC
//     link or an ECS service still names: AWS refuses it with
//     DependencyViolation (the link's network interfaces linger for a
//     while after the link is deleted), moto deletes it; the proxy looks
//     for those users in moto and refuses as AWS does.
//   - Application Auto Scaling TagResource and ListTagsForResource: moto
//     neither keeps a scalable target's tags (nor those
//     RegisterScalableTarget sends) nor serves the calls; the tags are
//     kept here by the target's ARN, which moto makes.
//
// Errors moto does not make (Lambda's ResourceConflictException while an
// update is in progress, IAM's "cannot be assumed" just after a role is
// made) are injected by the tests through mototest.Proxy.Inject.
package awstest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewayv2"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/gosling-ci/gosling/internal/mototest"
)

// hostedZones are API Gateway's regional hosted zones by region.
var hostedZones = map[string]string{"eu-central-1": "Z1U9ULNL0V5AJ3", "us-east-1": "Z1UJRXOUMOOFQ8", "eu-west-1": "ZLY8HYME6SFDD"}

// Serve registers on p the operations moto does not serve.
func Serve(p *mototest.Proxy) {
	g := &gaps{p: p, authorizers: map[string][]string{}, tags: map[string]map[string]string{}, targets: map[string]string{}}
	p.Handle("apigateway:CreateAuthorizer", g.createAuthorizer)
	p.Handle("apigateway:GetAuthorizers", g.getAuthorizers)
	p.Handle("apigateway:UpdateStage", g.updateChild("createdDate", "lastUpdatedDate"))
	p.Handle("apigateway:CreateDomainName", g.domainNames)
	p.Handle("apigateway:GetDomainName", g.domainNames)
	p.Handle("apigateway:GetDomainNames", g.domainNames)
	p.Handle("apigateway:UpdateDomainName", g.updateDomainName)
	p.Handle("apigateway:UpdateApiMapping", g.updateChild("apiMappingId", "domainName"))
	p.Handle("apigateway:TagResource", g.tagResource)
	p.Handle("ec2:DeleteSecurityGroup", g.deleteSecurityGroup)
	p.Handle("ecs:CreateService", g.ecsService)
	p.Handle("ecs:UpdateService", g.ecsService)
	p.Handle("application-autoscaling:RegisterScalableTarget", g.registerTarget)
	p.Handle("application-autoscaling:DeregisterScalableTarget", g.deregisterTarget)
	p.Handle("application-autoscaling:TagResource", g.tagTarget)
	p.Handle("application-autoscaling:ListTagsForResource", g.listTargetTags)
}

type gaps struct {
	p *mototest.Proxy

	mu          sync.Mutex
	authorizers map[string][]string          // API ID -> authorizer IDs
	tags        map[string]map[string]string // scalable target ARN -> tags
	targets     map[string]string            // namespace|resource ID|dimension -> ARN
}

// segments are the request path's segments, unescaped: ["v2", "apis", ID, ...].
func segments(r *http.Request) []string {
	parts := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	for i, s := range parts {
		if u, err := url.PathUnescape(s); err == nil {
			parts[i] = u
		}
	}
	return parts
}

// relay writes moto's answer as it is.
func relay(w http.ResponseWriter, resp *http.Response, body []byte) {
	for _, k := range []string{"Content-Type", "X-Amzn-Errortype", "X-Amzn-Requestid"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func failed(resp *http.Response) bool { return resp.StatusCode >= 300 }

// forward sends r to moto as it is.
func (g *gaps) forward(ctx context.Context, service string, r *http.Request, body []byte) (*http.Response, []byte, error) {
	h := http.Header{}
	for _, k := range []string{"Content-Type", "X-Amz-Target"} {
		if v := r.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	return g.p.Call(ctx, service, r.Method, r.URL.RequestURI(), h, body)
}

// call sends one API Gateway request to moto and decodes its JSON answer
// into out unless it failed.
func (g *gaps) call(ctx context.Context, method, path string, in, out any) (*http.Response, []byte, error) {
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	resp, got, err := g.p.Call(ctx, "apigateway", method, path, nil, body)
	if err != nil || failed(resp) || out == nil {
		return resp, got, err
	}
	return resp, got, json.Unmarshal(got, out)
}

func internal(w http.ResponseWriter, r *http.Request, err error) {
	mototest.WriteError(w, r, mototest.Fault{Status: 500, Code: "InternalServerError", Message: err.Error()})
}

func badBody(w http.ResponseWriter, r *http.Request) {
	mototest.WriteError(w, r, mototest.Fault{Status: 400, Code: "BadRequestException", Message: "the request body is not JSON"})
}

func (g *gaps) createAuthorizer(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, out, err := g.forward(r.Context(), "apigateway", r, body)
	if err != nil {
		internal(w, r, err)
		return
	}
	var a struct{ AuthorizerID string }
	if !failed(resp) && json.Unmarshal(out, &a) == nil {
		api := segments(r)[2]
		g.mu.Lock()
		g.authorizers[api] = append(g.authorizers[api], a.AuthorizerID)
		g.mu.Unlock()
	}
	relay(w, resp, out)
}

// getAuthorizers lists the authorizers moto still has of those made
// through the proxy, in one page.
func (g *gaps) getAuthorizers(w http.ResponseWriter, r *http.Request, _ []byte) {
	api := segments(r)[2]
	resp, out, err := g.call(r.Context(), "GET", "/v2/apis/"+url.PathEscape(api), nil, nil)
	if err != nil {
		internal(w, r, err)
		return
	}
	if failed(resp) {
		relay(w, resp, out)
		return
	}
	g.mu.Lock()
	ids := slices.Clone(g.authorizers[api])
	g.mu.Unlock()
	items := []json.RawMessage{}
	for _, id := range ids {
		resp, out, err := g.call(r.Context(), "GET", "/v2/apis/"+url.PathEscape(api)+"/authorizers/"+url.PathEscape(id), nil, nil)
		if err != nil {
			internal(w, r, err)
			return
		}
		if !failed(resp) {
			items = append(items, out)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// remake reads the resource at path, deletes it, and posts it with the
// update's fields to create, returning moto's answer to the first call
// that failed or to the last.
func (g *gaps) remake(ctx context.Context, path, create string, update map[string]any, drop ...string) (*http.Response, []byte, error) {
	var cur map[string]any
	if resp, out, err := g.call(ctx, "GET", path, nil, &cur); err != nil || failed(resp) {
		return resp, out, err
	}
	for _, k := range drop {
		delete(cur, k)
	}
	for k, v := range update {
		cur[k] = v
	}
	if resp, out, err := g.call(ctx, "DELETE", path, nil, nil); err != nil || failed(resp) {
		return resp, out, err
	}
	return g.call(ctx, "POST", create, cur, nil)
}

// updateChild answers an update of a resource at /v2/KIND/ID/CHILDREN/ID
// (a stage, an API mapping) by re-making it with the update's fields,
// less the fields its creation does not take.
func (g *gaps) updateChild(drop ...string) mototest.Handler {
	return func(w http.ResponseWriter, r *http.Request, body []byte) {
		seg := segments(r)
		var update map[string]any
		if len(seg) != 5 || json.Unmarshal(body, &update) != nil {
			badBody(w, r)
			return
		}
		base := "/v2/" + seg[1] + "/" + url.PathEscape(seg[2]) + "/" + seg[3]
		resp, out, err := g.remake(r.Context(), base+"/"+url.PathEscape(seg[4]), base, update, drop...)
		if err != nil {
			internal(w, r, err)
			return
		}
		relay(w, resp, out)
	}
}

// target adds the regional target AWS answers to each of a domain
// name's configurations.
func target(d map[string]any) {
	name, _ := d["domainName"].(string)
	sum := sha256.Sum256([]byte(name))
	configs, _ := d["domainNameConfigurations"].([]any)
	for _, c := range configs {
		if m, ok := c.(map[string]any); ok {
			m["apiGatewayDomainName"] = "d-" + hex.EncodeToString(sum[:5]) + ".execute-api." + mototest.Region + ".amazonaws.com"
			m["hostedZoneId"] = hostedZones[mototest.Region]
			if m["domainNameStatus"] == nil {
				m["domainNameStatus"] = "AVAILABLE"
			}
		}
	}
}

// withTargets is moto's answer with every domain name's regional targets.
func withTargets(out []byte) ([]byte, error) {
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		return nil, fmt.Errorf("moto's answer is not JSON: %w", err)
	}
	if items, ok := got["items"].([]any); ok {
		for _, d := range items {
			if m, ok := d.(map[string]any); ok {
				target(m)
			}
		}
	} else {
		target(got)
	}
	return json.Marshal(got)
}

// domainNames answers CreateDomainName, GetDomainName and GetDomainNames
// from moto with each configuration's regional target.
func (g *gaps) domainNames(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, out, err := g.forward(r.Context(), "apigateway", r, body)
	if err == nil && !failed(resp) {
		out, err = withTargets(out)
	}
	if err != nil {
		internal(w, r, err)
		return
	}
	relay(w, resp, out)
}

// updateDomainName re-makes the domain name with its new configurations.
func (g *gaps) updateDomainName(w http.ResponseWriter, r *http.Request, body []byte) {
	var update map[string]any
	if err := json.Unmarshal(body, &update); err != nil {
		badBody(w, r)
		return
	}
	resp, out, err := g.remakeDomain(r.Context(), segments(r)[2], update)
	if err == nil && !failed(resp) {
		out, err = withTargets(out)
	}
	if err != nil {
		internal(w, r, err)
		return
	}
	relay(w, resp, out)
}

// remakeDomain re-makes a domain name with the update's fields, and its
// API mappings after it.
func (g *gaps) remakeDomain(ctx context.Context, name string, update map[string]any) (*http.Response, []byte, error) {
	path := "/v2/domainnames/" + url.PathEscape(name)
	var mappings struct{ Items []map[string]any }
	resp, out, err := g.call(ctx, "GET", path+"/apimappings", nil, &mappings)
	if err != nil || failed(resp) {
		return resp, out, err
	}
	// moto deletes a domain name's mappings while it walks them, which
	// fails: they go first.
	for _, m := range mappings.Items {
		if resp, out, err := g.call(ctx, "DELETE", path+"/apimappings/"+url.PathEscape(fmt.Sprint(m["apiMappingId"])), nil, nil); err != nil || failed(resp) {
			return resp, out, err
		}
	}
	resp, made, err := g.remake(ctx, path, "/v2/domainnames", update, "domainNameArn")
	if err != nil || failed(resp) {
		return resp, made, err
	}
	for _, m := range mappings.Items {
		delete(m, "apiMappingId")
		delete(m, "domainName")
		if resp, out, err := g.call(ctx, "POST", path+"/apimappings", m, nil); err != nil || failed(resp) {
			return resp, out, err
		}
	}
	return resp, made, nil
}

// tagResource tags a domain name or a stage, whose tags moto keeps only
// from their creation, by re-making it with the tags added; other
// resources' tags are moto's.
func (g *gaps) tagResource(w http.ResponseWriter, r *http.Request, body []byte) {
	ctx := r.Context()
	arn := strings.Join(segments(r)[2:], "/")
	var in struct{ Tags map[string]any }
	if err := json.Unmarshal(body, &in); err != nil {
		badBody(w, r)
		return
	}
	_, path, _ := strings.Cut(arn, "::")
	seg := strings.Split(strings.Trim(path, "/"), "/")
	var target, create string
	switch {
	case len(seg) == 2 && seg[0] == "domainnames":
		target = "/v2/domainnames/" + url.PathEscape(seg[1])
	case len(seg) == 4 && seg[0] == "apis" && seg[2] == "stages":
		create = "/v2/apis/" + url.PathEscape(seg[1]) + "/stages"
		target = create + "/" + url.PathEscape(seg[3])
	default:
		resp, out, err := g.forward(ctx, "apigateway", r, body)
		if err != nil {
			internal(w, r, err)
			return
		}
		relay(w, resp, out)
		return
	}
	var cur struct{ Tags map[string]any }
	resp, out, err := g.call(ctx, "GET", target, nil, &cur)
	if err == nil && !failed(resp) {
		tags := map[string]any{}
		for k, v := range cur.Tags {
			tags[k] = v
		}
		for k, v := range in.Tags {
			tags[k] = v
		}
		if create == "" {
			resp, out, err = g.remakeDomain(ctx, seg[1], map[string]any{"tags": tags})
		} else {
			resp, out, err = g.remake(ctx, target, create, map[string]any{"tags": tags}, "createdDate", "lastUpdatedDate")
		}
	}
	if err != nil {
		internal(w, r, err)
		return
	}
	if failed(resp) {
		relay(w, resp, out)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{})
}

// deleteSecurityGroup refuses to delete a group something still names.
func (g *gaps) deleteSecurityGroup(w http.ResponseWriter, r *http.Request, body []byte) {
	form, _ := url.ParseQuery(string(body))
	id := form.Get("GroupId")
	user, err := g.securityGroupUser(r.Context(), id)
	if err != nil {
		internal(w, r, err)
		return
	}
	if user != "" {
		mototest.WriteError(w, r, mototest.Fault{Status: 400, Code: "DependencyViolation", Message: "resource " + id + " has a dependent object (" + user + ")"})
		return
	}
	resp, out, err := g.forward(r.Context(), "ec2", r, body)
	if err != nil {
		internal(w, r, err)
		return
	}
	relay(w, resp, out)
}

// securityGroupUser names what in moto still uses the group: another
// group's rule, a VPC link or an ECS service; "" when nothing does.
func (g *gaps) securityGroupUser(ctx context.Context, id string) (string, error) {
	cfg := g.p.Direct()
	groups, err := ec2.NewFromConfig(cfg).DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	if err != nil {
		return "", err
	}
	for _, sg := range groups.SecurityGroups {
		if aws.ToString(sg.GroupId) == id {
			continue
		}
		for _, perm := range slices.Concat(sg.IpPermissions, sg.IpPermissionsEgress) {
			for _, pair := range perm.UserIdGroupPairs {
				if aws.ToString(pair.GroupId) == id {
					return "a rule of " + aws.ToString(sg.GroupId), nil
				}
			}
		}
	}
	links, err := apigatewayv2.NewFromConfig(cfg).GetVpcLinks(ctx, &apigatewayv2.GetVpcLinksInput{})
	if err != nil {
		return "", err
	}
	for _, l := range links.Items {
		if slices.Contains(l.SecurityGroupIds, id) {
			return "VPC link " + aws.ToString(l.VpcLinkId), nil
		}
	}
	client := ecs.NewFromConfig(cfg)
	clusters, err := client.ListClusters(ctx, &ecs.ListClustersInput{})
	if err != nil {
		return "", err
	}
	for _, c := range clusters.ClusterArns {
		list, err := client.ListServices(ctx, &ecs.ListServicesInput{Cluster: aws.String(c)})
		if err != nil || len(list.ServiceArns) == 0 {
			if err != nil {
				return "", err
			}
			continue
		}
		services, err := client.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(c), Services: list.ServiceArns})
		if err != nil {
			return "", err
		}
		for _, svc := range services.Services {
			if nc := svc.NetworkConfiguration; nc != nil && nc.AwsvpcConfiguration != nil &&
				aws.ToString(svc.Status) != "INACTIVE" && slices.Contains(nc.AwsvpcConfiguration.SecurityGroups, id) {
				return "ECS service " + aws.ToString(svc.ServiceName), nil
			}
		}
	}
	return "", nil
}

// ecsService sends moto an empty list of security groups where the
// request's awsvpc configuration has none.
func (g *gaps) ecsService(w http.ResponseWriter, r *http.Request, body []byte) {
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil {
		badBody(w, r)
		return
	}
	if nc, ok := in["networkConfiguration"].(map[string]any); ok {
		if c, ok := nc["awsvpcConfiguration"].(map[string]any); ok && c["securityGroups"] == nil {
			c["securityGroups"] = []any{}
			body, _ = json.Marshal(in)
		}
	}
	resp, out, err := g.forward(r.Context(), "ecs", r, body)
	if err != nil {
		internal(w, r, err)
		return
	}
	relay(w, resp, out)
}

// ---- Application Auto Scaling tags ----

type targetKey struct {
	ServiceNamespace  string
	ResourceID        string `json:"ResourceId"`
	ScalableDimension string
}

func (k targetKey) String() string {
	return k.ServiceNamespace + "|" + k.ResourceID + "|" + k.ScalableDimension
}

func (g *gaps) registerTarget(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, out, err := g.forward(r.Context(), "application-autoscaling", r, body)
	if err != nil {
		internal(w, r, err)
		return
	}
	var in struct {
		targetKey
		Tags map[string]string
	}
	var got struct{ ScalableTargetARN string }
	if !failed(resp) && json.Unmarshal(body, &in) == nil && json.Unmarshal(out, &got) == nil && got.ScalableTargetARN != "" {
		g.mu.Lock()
		key := in.targetKey.String()
		if old, ok := g.targets[key]; ok && old != got.ScalableTargetARN {
			delete(g.tags, old)
		}
		g.targets[key] = got.ScalableTargetARN
		if g.tags[got.ScalableTargetARN] == nil {
			g.tags[got.ScalableTargetARN] = map[string]string{}
		}
		for k, v := range in.Tags {
			g.tags[got.ScalableTargetARN][k] = v
		}
		g.mu.Unlock()
	}
	relay(w, resp, out)
}

func (g *gaps) deregisterTarget(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, out, err := g.forward(r.Context(), "application-autoscaling", r, body)
	if err != nil {
		internal(w, r, err)
		return
	}
	var in targetKey
	if !failed(resp) && json.Unmarshal(body, &in) == nil {
		g.mu.Lock()
		delete(g.tags, g.targets[in.String()])
		delete(g.targets, in.String())
		g.mu.Unlock()
	}
	relay(w, resp, out)
}

func notFound(w http.ResponseWriter, r *http.Request, arn string) {
	mototest.WriteError(w, r, mototest.Fault{Status: 400, Code: "ResourceNotFoundException", Message: "No scalable target found for " + arn})
}

func (g *gaps) tagTarget(w http.ResponseWriter, r *http.Request, body []byte) {
	var in struct {
		ResourceARN string
		Tags        map[string]string
	}
	_ = json.Unmarshal(body, &in)
	g.mu.Lock()
	defer g.mu.Unlock()
	tags, ok := g.tags[in.ResourceARN]
	if !ok {
		notFound(w, r, in.ResourceARN)
		return
	}
	for k, v := range in.Tags {
		tags[k] = v
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (g *gaps) listTargetTags(w http.ResponseWriter, r *http.Request, body []byte) {
	var in struct{ ResourceARN string }
	_ = json.Unmarshal(body, &in)
	g.mu.Lock()
	defer g.mu.Unlock()
	tags, ok := g.tags[in.ResourceARN]
	if !ok {
		notFound(w, r, in.ResourceARN)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"Tags": tags})
}
