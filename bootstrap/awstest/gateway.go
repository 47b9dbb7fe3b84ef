package awstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// The stand-ins for API Gateway v2 (HTTP APIs) and Lambda, both
// REST-JSON, and Cloud Map (JSON 1.1, X-Amz-Target
// Route53AutoNaming_v20170314.Op). They keep what `gosling deploy` makes
// and check what AWS checks for it: a route's integration and authorizer
// exist, a VPC link integration names a VPC link and a Cloud Map service,
// a function's role exists and trusts Lambda, a VPC link or a Cloud Map
// service in use cannot be deleted.

type gwAPI struct {
	Doc          map[string]any
	Authorizers  map[string]map[string]any
	Integrations map[string]map[string]any
	Routes       map[string]map[string]any
	Stages       map[string]map[string]any
}

type function struct {
	Config map[string]any
	Image  string
	Tags   map[string]string
	Policy []any // statements
}

type namespace struct {
	ID, Arn, Name, Vpc, Description string
	Tags                            []any
	Created                         time.Time
}

type sdService struct {
	ID, Arn, Name, Namespace string
	DNS                      map[string]any
	Tags                     []any
	Created                  time.Time
}

type sdOperation struct {
	ID, Type, Target, TargetType string
}

func (s *Server) initGateway() {
	s.apis, s.vpcLinks, s.functions = map[string]*gwAPI{}, map[string]map[string]any{}, map[string]*function{}
	s.namespaces, s.sdServices, s.operations = map[string]*namespace{}, map[string]*sdService{}, map[string]*sdOperation{}
	s.domains = map[string]*gwDomain{}
}

// restOp names an API Gateway v2 or Lambda request from its method and
// path, as the services' REST bindings define them.
func restOp(service, method, path string) string {
	seg := strings.Split(strings.Trim(path, "/"), "/")
	pick := func(m map[string]string) string { return m[method] }
	switch service {
	case "apigateway":
		if len(seg) < 2 || seg[0] != "v2" {
			return ""
		}
		seg = seg[1:]
		kinds := map[string]string{"authorizers": "Authorizer", "integrations": "Integration", "routes": "Route", "stages": "Stage"}
		switch {
		case seg[0] == "apis" && len(seg) == 1:
			return pick(map[string]string{"POST": "CreateApi", "GET": "GetApis"})
		case seg[0] == "apis" && len(seg) == 2:
			return pick(map[string]string{"GET": "GetApi", "PATCH": "UpdateApi", "DELETE": "DeleteApi"})
		case seg[0] == "apis" && len(seg) == 3 && kinds[seg[2]] != "":
			return pick(map[string]string{"POST": "Create" + kinds[seg[2]], "GET": "Get" + kinds[seg[2]] + "s"})
		case seg[0] == "apis" && len(seg) == 4 && kinds[seg[2]] != "":
			k := kinds[seg[2]]
			return pick(map[string]string{"GET": "Get" + k, "PATCH": "Update" + k, "DELETE": "Delete" + k})
		case seg[0] == "vpclinks" && len(seg) == 1:
			return pick(map[string]string{"POST": "CreateVpcLink", "GET": "GetVpcLinks"})
		case seg[0] == "vpclinks" && len(seg) == 2:
			return pick(map[string]string{"GET": "GetVpcLink", "PATCH": "UpdateVpcLink", "DELETE": "DeleteVpcLink"})
		case seg[0] == "domainnames":
			return domainOp(seg, method)
		case seg[0] == "tags" && len(seg) >= 2:
			return pick(map[string]string{"GET": "GetTags", "POST": "TagResource", "DELETE": "UntagResource"})
		}
	case "lambda":
		if len(seg) < 2 {
			return ""
		}
		switch {
		case seg[0] == "2017-03-31" && seg[1] == "tags":
			return pick(map[string]string{"GET": "ListTags", "POST": "TagResource", "DELETE": "UntagResource"})
		case seg[0] != "2015-03-31" || seg[1] != "functions":
			return ""
		case len(seg) == 2:
			return pick(map[string]string{"POST": "CreateFunction", "GET": "ListFunctions"})
		case len(seg) == 3:
			return pick(map[string]string{"GET": "GetFunction", "DELETE": "DeleteFunction"})
		case len(seg) == 4 && seg[3] == "configuration":
			return pick(map[string]string{"GET": "GetFunctionConfiguration", "PUT": "UpdateFunctionConfiguration"})
		case len(seg) == 4 && seg[3] == "code":
			return pick(map[string]string{"PUT": "UpdateFunctionCode"})
		case len(seg) == 4 && seg[3] == "policy":
			return pick(map[string]string{"POST": "AddPermission", "GET": "GetPolicy"})
		case len(seg) == 5 && seg[3] == "policy":
			return pick(map[string]string{"DELETE": "RemovePermission"})
		}
	}
	return ""
}

// serveREST answers a REST-JSON request: path segments unescaped, the
// body decoded, errors with X-Amzn-ErrorType.
func (s *Server) serveREST(w http.ResponseWriter, r *http.Request, body []byte, h func(seg []string, q url.Values, in map[string]any) (int, any, *apiError)) {
	in := map[string]any{}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			writeRESTError(w, errorf(400, "BadRequestException", "body is not JSON"))
			return
		}
	}
	var seg []string
	for _, p := range strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/") {
		u, _ := url.PathUnescape(p)
		seg = append(seg, u)
	}
	status, out, aerr := h(seg, r.URL.Query(), in)
	if aerr != nil {
		writeRESTError(w, aerr)
		return
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	if out == nil {
		out = map[string]any{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(out)
}

// ---- API Gateway v2 (REST-JSON) ----

func gwNotFound(format string, args ...any) *apiError {
	return errorf(404, "NotFoundException", format, args...)
}

func gwBadRequest(format string, args ...any) *apiError {
	return errorf(400, "BadRequestException", format, args...)
}

// merge copies the fields of in that the API takes into doc.
func merge(doc, in map[string]any, fields ...string) {
	for _, f := range fields {
		if v, ok := in[f]; ok {
			doc[f] = v
		}
	}
}

var (
	authorizerFields  = []string{"name", "authorizerType", "authorizerUri", "authorizerPayloadFormatVersion", "enableSimpleResponses", "identitySource", "authorizerResultTtlInSeconds", "authorizerCredentialsArn"}
	integrationFields = []string{"description", "integrationType", "integrationMethod", "connectionType", "connectionId", "integrationUri", "payloadFormatVersion", "timeoutInMillis"}
	routeFields       = []string{"routeKey", "target", "authorizationType", "authorizerId", "apiKeyRequired"}
	stageFields       = []string{"autoDeploy", "description"}
)

func (s *Server) apiGateway(op string, seg []string, in map[string]any) (int, any, *apiError) {
	seg = seg[1:] // v2
	switch op {
	case "CreateApi":
		if sv(in, "protocolType") != "HTTP" && sv(in, "protocolType") != "WEBSOCKET" {
			return 0, nil, gwBadRequest("Invalid protocol type %q", sv(in, "protocolType"))
		}
		id := strings.ToLower(s.id("a"))[:10]
		doc := map[string]any{
			"apiId": id, "name": sv(in, "name"), "protocolType": sv(in, "protocolType"),
			"apiEndpoint":              fmt.Sprintf("https://%s.execute-api.%s.amazonaws.com", id, Region),
			"routeSelectionExpression": "$request.method $request.path", "apiKeySelectionExpression": "$request.header.x-api-key",
			"createdDate": time.Now().UTC().Format(time.RFC3339), "tags": obj(in, "tags"),
		}
		if doc["tags"] == nil {
			doc["tags"] = map[string]any{}
		}
		s.apis[id] = &gwAPI{Doc: doc, Authorizers: map[string]map[string]any{}, Integrations: map[string]map[string]any{},
			Routes: map[string]map[string]any{}, Stages: map[string]map[string]any{}}
		return 201, doc, nil
	case "GetApis":
		ids := sortedKeys(s.apis)
		items := []any{}
		for _, id := range ids {
			items = append(items, s.apis[id].Doc)
		}
		return 200, map[string]any{"items": items}, nil
	case "CreateVpcLink":
		subnets := list(in, "subnetIds")
		if len(subnets) == 0 {
			return 0, nil, gwBadRequest("SubnetIds must not be empty")
		}
		id := strings.ToLower(s.id("l"))[:7]
		sgs := list(in, "securityGroupIds")
		if sgs == nil {
			sgs = []any{}
		}
		tags := obj(in, "tags")
		if tags == nil {
			tags = map[string]any{}
		}
		doc := map[string]any{"vpcLinkId": id, "name": sv(in, "name"), "subnetIds": subnets, "securityGroupIds": sgs, "tags": tags,
			"vpcLinkStatus": "AVAILABLE", "vpcLinkVersion": "V2", "createdDate": time.Now().UTC().Format(time.RFC3339)}
		s.vpcLinks[id] = doc
		return 201, doc, nil
	case "GetVpcLinks":
		items := []any{}
		for _, id := range sortedKeys(s.vpcLinks) {
			items = append(items, s.vpcLinks[id])
		}
		return 200, map[string]any{"items": items}, nil
	case "GetVpcLink", "DeleteVpcLink", "UpdateVpcLink":
		l := s.vpcLinks[seg[1]]
		if l == nil {
			return 0, nil, gwNotFound("Invalid VpcLink identifier specified %s", seg[1])
		}
		switch op {
		case "DeleteVpcLink":
			for _, a := range s.apis {
				for id, i := range a.Integrations {
					if sv(i, "connectionId") == seg[1] {
						return 0, nil, errorf(409, "ConflictException", "Cannot delete vpc link. Vpc link %s, is referenced in [ANY:%s:%s] in format [Method:Resource:Integration].", seg[1], sv(a.Doc, "apiId"), id)
					}
				}
			}
			delete(s.vpcLinks, seg[1])
			return 202, map[string]any{}, nil
		case "UpdateVpcLink":
			merge(l, in, "name")
		}
		return 200, l, nil
	case "GetTags", "TagResource", "UntagResource":
		return s.gwTags(op, strings.Join(seg[1:], "/"), in)
	}
	if seg[0] == "domainnames" {
		return s.domainNames(op, seg, in)
	}
	a := s.apis[seg[1]]
	if a == nil {
		return 0, nil, gwNotFound("Invalid API identifier specified %s:%s", Account, seg[1])
	}
	switch op {
	case "GetApi":
		return 200, a.Doc, nil
	case "UpdateApi":
		merge(a.Doc, in, "name", "description")
		return 200, a.Doc, nil
	case "DeleteApi":
		delete(s.apis, seg[1])
		return 204, nil, nil
	}
	kind := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(op, "Create"), "Get"), "Update"), "Delete"), "s")
	coll, idKey, fields := map[string]map[string]any{}, "", []string(nil)
	switch kind {
	case "Authorizer":
		coll, idKey, fields = a.Authorizers, "authorizerId", authorizerFields
	case "Integration":
		coll, idKey, fields = a.Integrations, "integrationId", integrationFields
	case "Route":
		coll, idKey, fields = a.Routes, "routeId", routeFields
	case "Stage":
		coll, idKey, fields = a.Stages, "stageName", stageFields
	}
	switch {
	case strings.HasPrefix(op, "Create"):
		doc := map[string]any{}
		merge(doc, in, fields...)
		id := strings.ToLower(s.id(""))[:7]
		if kind == "Stage" {
			id = sv(in, "stageName")
			if coll[id] != nil {
				return 0, nil, errorf(409, "ConflictException", "Stage already exists")
			}
			doc["tags"] = obj(in, "tags")
			if doc["tags"] == nil {
				doc["tags"] = map[string]any{}
			}
			doc["createdDate"] = time.Now().UTC().Format(time.RFC3339)
		}
		doc[idKey] = id
		if aerr := s.checkGatewayChild(a, kind, "", doc); aerr != nil {
			return 0, nil, aerr
		}
		coll[id] = doc
		return 201, doc, nil
	case strings.HasSuffix(op, "s") && strings.HasPrefix(op, "Get"):
		items := []any{}
		for _, id := range sortedKeys(coll) {
			items = append(items, coll[id])
		}
		return 200, map[string]any{"items": items}, nil
	}
	id := seg[3]
	doc := coll[id]
	if doc == nil {
		return 0, nil, gwNotFound("Invalid %s identifier specified %s", kind, id)
	}
	switch {
	case strings.HasPrefix(op, "Get"):
		return 200, doc, nil
	case strings.HasPrefix(op, "Update"):
		next := map[string]any{}
		for k, v := range doc {
			next[k] = v
		}
		merge(next, in, fields...)
		if aerr := s.checkGatewayChild(a, kind, id, next); aerr != nil {
			return 0, nil, aerr
		}
		coll[id] = next
		return 200, next, nil
	}
	// Delete.
	switch kind {
	case "Authorizer":
		for _, r := range a.Routes {
			if sv(r, "authorizerId") == id {
				return 0, nil, errorf(409, "ConflictException", "Cannot delete authorizer '%s', is referenced in route: %s", sv(doc, "name"), sv(r, "routeKey"))
			}
		}
	case "Integration":
		for _, r := range a.Routes {
			if sv(r, "target") == "integrations/"+id {
				return 0, nil, errorf(409, "ConflictException", "Cannot delete Integration '%s', is referenced in route: %s", id, sv(r, "routeKey"))
			}
		}
	}
	delete(coll, id)
	return 204, nil, nil
}

// checkGatewayChild checks a new or updated authorizer, integration or
// route of a as API Gateway does.
func (s *Server) checkGatewayChild(a *gwAPI, kind, id string, doc map[string]any) *apiError {
	switch kind {
	case "Authorizer":
		if sv(doc, "authorizerType") != "REQUEST" && sv(doc, "authorizerType") != "JWT" {
			return gwBadRequest("Invalid authorizer type %q", sv(doc, "authorizerType"))
		}
		if sv(doc, "authorizerType") == "REQUEST" {
			v := sv(doc, "authorizerPayloadFormatVersion")
			if v != "1.0" && v != "2.0" {
				return gwBadRequest("AuthorizerPayloadFormatVersion is required for REQUEST authorizers and must be 1.0 or 2.0")
			}
			if doc["enableSimpleResponses"] == true && v != "2.0" {
				return gwBadRequest("Simple responses are only supported for payload format version 2.0")
			}
			if !strings.HasPrefix(sv(doc, "authorizerUri"), "arn:aws:apigateway:"+Region+":lambda:path/2015-03-31/functions/") {
				return gwBadRequest("Invalid authorizer URI %s", sv(doc, "authorizerUri"))
			}
		}
		if ttl, _ := nv(doc, "authorizerResultTtlInSeconds"); ttl < 0 || ttl > 3600 {
			return gwBadRequest("AuthorizerResultTtlInSeconds must be between 0 and 3600")
		} else if ttl > 0 && len(list(doc, "identitySource")) == 0 {
			return gwBadRequest("Identity source is required when caching is enabled")
		}
	case "Integration":
		if sv(doc, "connectionType") == "VPC_LINK" {
			if s.vpcLinks[sv(doc, "connectionId")] == nil {
				return gwBadRequest("Invalid VPC link ID %s", sv(doc, "connectionId"))
			}
			uri := sv(doc, "integrationUri")
			found := false
			for _, x := range s.sdServices {
				found = found || x.Arn == uri
			}
			if !found && !strings.Contains(uri, ":elasticloadbalancing:") {
				return gwBadRequest("Integration URI must be a Cloud Map service ARN or a load balancer listener ARN for VPC link integrations: %s", uri)
			}
			if sv(doc, "integrationMethod") == "" {
				return gwBadRequest("IntegrationMethod is required for HTTP_PROXY integrations")
			}
		}
	case "Route":
		for rid, r := range a.Routes {
			if rid != id && sv(r, "routeKey") == sv(doc, "routeKey") {
				return errorf(409, "ConflictException", "Unable to create Route: a route with key %s already exists", sv(doc, "routeKey"))
			}
		}
		if t := sv(doc, "target"); t != "" && a.Integrations[strings.TrimPrefix(t, "integrations/")] == nil {
			return gwBadRequest("Invalid target %s: no such integration", t)
		}
		switch sv(doc, "authorizationType") {
		case "CUSTOM", "JWT":
			if a.Authorizers[sv(doc, "authorizerId")] == nil {
				return gwBadRequest("Invalid authorizer ID %q specified", sv(doc, "authorizerId"))
			}
		case "NONE", "":
			if sv(doc, "authorizerId") != "" {
				return gwBadRequest("Authorizer ID %s given with authorization type NONE", sv(doc, "authorizerId"))
			}
		default:
			return gwBadRequest("Invalid authorization type %s", sv(doc, "authorizationType"))
		}
	}
	return nil
}

// gwTags reads and sets the tags of an API, a stage, a VPC link or a
// domain name by ARN.
func (s *Server) gwTags(op, resourceARN string, in map[string]any) (int, any, *apiError) {
	_, path, _ := strings.Cut(resourceARN, "::")
	seg := strings.Split(strings.Trim(path, "/"), "/")
	var doc map[string]any
	switch {
	case len(seg) == 2 && seg[0] == "apis" && s.apis[seg[1]] != nil:
		doc = s.apis[seg[1]].Doc
	case len(seg) == 4 && seg[0] == "apis" && s.apis[seg[1]] != nil && seg[2] == "stages":
		doc = s.apis[seg[1]].Stages[seg[3]]
	case len(seg) == 2 && seg[0] == "vpclinks":
		doc = s.vpcLinks[seg[1]]
	case len(seg) == 2 && seg[0] == "domainnames" && s.domains[seg[1]] != nil:
		doc = s.domains[seg[1]].Doc
	}
	if doc == nil {
		return 0, nil, gwNotFound("Unable to find resource %s", resourceARN)
	}
	tags, _ := doc["tags"].(map[string]any)
	if tags == nil {
		tags = map[string]any{}
		doc["tags"] = tags
	}
	switch op {
	case "TagResource":
		for k, v := range obj(in, "tags") {
			tags[k] = v
		}
		return 201, nil, nil
	case "UntagResource":
		return 204, nil, nil
	}
	return 200, map[string]any{"tags": tags}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---- Lambda (REST-JSON) ----

func lambdaNotFound(what string) *apiError {
	return errorf(404, "ResourceNotFoundException", "Function not found: %s", what)
}

// functionName takes a function's name or ARN.
func functionName(ref string) string {
	if strings.HasPrefix(ref, "arn:") {
		parts := strings.Split(ref, ":")
		if len(parts) >= 7 {
			return parts[6]
		}
	}
	return ref
}

func (f *function) doc() map[string]any {
	return map[string]any{"Configuration": f.Config, "Code": map[string]any{"ImageUri": f.Image, "RepositoryType": "ECR"}, "Tags": f.Tags}
}

func (s *Server) checkLambdaRole(roleARN string) *apiError {
	for _, r := range s.roles {
		if r.Arn == roleARN {
			if !strings.Contains(r.Trust, "lambda.amazonaws.com") {
				return errorf(400, "InvalidParameterValueException", "The role defined for the function cannot be assumed by Lambda.")
			}
			return nil
		}
	}
	return errorf(400, "InvalidParameterValueException", "The role defined for the function cannot be assumed by Lambda.")
}

// setConfig applies CreateFunction's and UpdateFunctionConfiguration's
// fields to a function's configuration.
func setConfig(c, in map[string]any) {
	if v, ok := in["Role"]; ok {
		c["Role"] = v
	}
	if v, ok := in["MemorySize"]; ok {
		c["MemorySize"] = v
	}
	if v, ok := in["Timeout"]; ok {
		c["Timeout"] = v
	}
	if e := obj(in, "Environment"); e != nil {
		vars := obj(e, "Variables")
		if vars == nil {
			vars = map[string]any{}
		}
		c["Environment"] = map[string]any{"Variables": vars}
	}
	if ic := obj(in, "ImageConfig"); ic != nil {
		c["ImageConfigResponse"] = map[string]any{"ImageConfig": ic}
	}
}

func (s *Server) lambda(op string, seg []string, in map[string]any) (int, any, *apiError) {
	switch op {
	case "CreateFunction":
		name := sv(in, "FunctionName")
		if s.functions[name] != nil {
			return 0, nil, errorf(409, "ResourceConflictException", "Function already exist: %s", name)
		}
		image := sv(obj(in, "Code"), "ImageUri")
		if sv(in, "PackageType") == "Image" && image == "" {
			return 0, nil, errorf(400, "InvalidParameterValueException", "Please provide ImageUri when PackageType is Image.")
		}
		if aerr := s.checkLambdaRole(sv(in, "Role")); aerr != nil {
			return 0, nil, aerr
		}
		c := map[string]any{
			"FunctionName": name, "FunctionArn": arn("lambda", "function:"+name), "PackageType": sv(in, "PackageType"),
			"MemorySize": 128, "Timeout": 3, "State": "Active", "LastUpdateStatus": "Successful",
			"LastModified": time.Now().UTC().Format("2006-01-02T15:04:05.000-0700"), "Version": "$LATEST",
		}
		setConfig(c, in)
		f := &function{Config: c, Image: image, Tags: map[string]string{}}
		for k, v := range obj(in, "Tags") {
			f.Tags[k] = fmt.Sprint(v)
		}
		s.functions[name] = f
		return 201, c, nil
	case "ListFunctions":
		out := []any{}
		for _, n := range sortedKeys(s.functions) {
			out = append(out, s.functions[n].Config)
		}
		return 200, map[string]any{"Functions": out}, nil
	case "ListTags", "TagResource", "UntagResource":
		ref := strings.Join(seg[2:], "/")
		f := s.functions[functionName(ref)]
		if f == nil {
			return 0, nil, lambdaNotFound(ref)
		}
		if op == "TagResource" {
			for k, v := range obj(in, "Tags") {
				f.Tags[k] = fmt.Sprint(v)
			}
			return 204, nil, nil
		}
		if op == "UntagResource" {
			return 204, nil, nil
		}
		return 200, map[string]any{"Tags": f.Tags}, nil
	}
	name := functionName(seg[2])
	f := s.functions[name]
	if f == nil {
		return 0, nil, lambdaNotFound(arn("lambda", "function:"+name))
	}
	switch op {
	case "GetFunction":
		return 200, f.doc(), nil
	case "GetFunctionConfiguration":
		return 200, f.Config, nil
	case "DeleteFunction":
		delete(s.functions, name)
		return 204, nil, nil
	case "UpdateFunctionConfiguration":
		if r, ok := in["Role"].(string); ok {
			if aerr := s.checkLambdaRole(r); aerr != nil {
				return 0, nil, aerr
			}
		}
		setConfig(f.Config, in)
		return 200, f.Config, nil
	case "UpdateFunctionCode":
		if u := sv(in, "ImageUri"); u != "" {
			f.Image = u
		}
		return 200, f.Config, nil
	case "AddPermission":
		sid := sv(in, "StatementId")
		for _, st := range f.Policy {
			if sv(st.(map[string]any), "Sid") == sid {
				return 0, nil, errorf(409, "ResourceConflictException", "The statement id (%s) provided already exists. Please provide a new statement id, or remove the existing statement.", sid)
			}
		}
		st := map[string]any{
			"Sid": sid, "Effect": "Allow", "Principal": map[string]any{"Service": sv(in, "Principal")},
			"Action": sv(in, "Action"), "Resource": sv(f.Config, "FunctionArn"),
		}
		if src := sv(in, "SourceArn"); src != "" {
			st["Condition"] = map[string]any{"ArnLike": map[string]any{"AWS:SourceArn": src}}
		}
		f.Policy = append(f.Policy, st)
		b, _ := json.Marshal(st)
		return 201, map[string]any{"Statement": string(b)}, nil
	case "GetPolicy":
		if len(f.Policy) == 0 {
			return 0, nil, errorf(404, "ResourceNotFoundException", "The resource you requested does not exist.")
		}
		b, _ := json.Marshal(map[string]any{"Version": "2012-10-17", "Id": "default", "Statement": f.Policy})
		return 200, map[string]any{"Policy": string(b), "RevisionId": s.id("")}, nil
	case "RemovePermission":
		for i, st := range f.Policy {
			if sv(st.(map[string]any), "Sid") == seg[4] {
				f.Policy = append(f.Policy[:i], f.Policy[i+1:]...)
				return 204, nil, nil
			}
		}
		return 0, nil, errorf(404, "ResourceNotFoundException", "Statement %s is not found in resource policy.", seg[4])
	}
	return 0, nil, errorf(400, "InvalidParameterValueException", "operation %s is not served by this stand-in", op)
}

// ---- Cloud Map (JSON 1.1) ----

func (s *Server) sdOperation(typ, targetType, target string) map[string]any {
	op := &sdOperation{ID: strings.ToLower(s.id("")), Type: typ, TargetType: targetType, Target: target}
	s.operations[op.ID] = op
	return map[string]any{"OperationId": op.ID}
}

func (s *Server) sdResource(arn string) *[]any {
	for _, n := range s.namespaces {
		if n.Arn == arn {
			return &n.Tags
		}
	}
	for _, x := range s.sdServices {
		if x.Arn == arn {
			return &x.Tags
		}
	}
	return nil
}

// sdFilter reads the value of filter name (EQ) from a List request.
func sdFilter(in map[string]any, name string) (string, bool) {
	for _, f := range list(in, "Filters") {
		m, _ := f.(map[string]any)
		if sv(m, "Name") == name {
			if v := list(m, "Values"); len(v) > 0 {
				return fmt.Sprint(v[0]), true
			}
		}
	}
	return "", false
}

func (s *Server) serviceDiscovery(op string, in map[string]any) (any, *apiError) {
	switch op {
	case "CreatePrivateDnsNamespace":
		name, vpc := sv(in, "Name"), sv(in, "Vpc")
		if vpc == "" {
			return nil, errorf(400, "InvalidInput", "Vpc is required for a private DNS namespace.")
		}
		for _, n := range s.namespaces {
			if n.Name == name && n.Vpc == vpc {
				return nil, errorf(400, "NamespaceAlreadyExists", "Namespace %s already exists in %s.", name, vpc)
			}
		}
		n := &namespace{ID: "ns-" + s.id(""), Name: name, Vpc: vpc, Description: sv(in, "Description"), Tags: list(in, "Tags"), Created: time.Now()}
		n.Arn = arn("servicediscovery", "namespace/"+n.ID)
		s.namespaces[n.ID] = n
		return s.sdOperation("CREATE_NAMESPACE", "NAMESPACE", n.ID), nil
	case "GetOperation":
		op := s.operations[sv(in, "OperationId")]
		if op == nil {
			return nil, errorf(400, "OperationNotFound", "No operation found with the specified ID.")
		}
		return map[string]any{"Operation": map[string]any{
			"Id": op.ID, "Type": op.Type, "Status": "SUCCESS", "Targets": map[string]any{op.TargetType: op.Target},
			"CreateDate": epoch(time.Now()), "UpdateDate": epoch(time.Now()),
		}}, nil
	case "ListNamespaces":
		typ, byType := sdFilter(in, "TYPE")
		out := []any{}
		for _, id := range sortedKeys(s.namespaces) {
			n := s.namespaces[id]
			if byType && typ != "DNS_PRIVATE" {
				continue
			}
			count := 0
			for _, x := range s.sdServices {
				if x.Namespace == n.ID {
					count++
				}
			}
			out = append(out, map[string]any{"Id": n.ID, "Arn": n.Arn, "Name": n.Name, "Type": "DNS_PRIVATE", "Description": n.Description,
				"ServiceCount": count, "CreateDate": epoch(n.Created),
				"Properties": map[string]any{"DnsProperties": map[string]any{"HostedZoneId": "Z" + strings.ToUpper(n.ID[3:])}}})
		}
		return map[string]any{"Namespaces": out}, nil
	case "DeleteNamespace":
		n := s.namespaces[sv(in, "Id")]
		if n == nil {
			return nil, errorf(400, "NamespaceNotFound", "No namespace exists with the specified ID.")
		}
		for _, x := range s.sdServices {
			if x.Namespace == n.ID {
				return nil, errorf(400, "ResourceInUse", "The namespace %s contains services; delete them first.", n.ID)
			}
		}
		delete(s.namespaces, n.ID)
		return s.sdOperation("DELETE_NAMESPACE", "NAMESPACE", n.ID), nil
	case "CreateService":
		ns := s.namespaces[sv(in, "NamespaceId")]
		if ns == nil {
			return nil, errorf(400, "NamespaceNotFound", "No namespace exists with the specified ID.")
		}
		for _, x := range s.sdServices {
			if x.Namespace == ns.ID && x.Name == sv(in, "Name") {
				return nil, errorf(400, "ServiceAlreadyExists", "Service %s already exists.", x.Name)
			}
		}
		x := &sdService{ID: "srv-" + s.id(""), Name: sv(in, "Name"), Namespace: ns.ID, DNS: obj(in, "DnsConfig"), Tags: list(in, "Tags"), Created: time.Now()}
		x.Arn = arn("servicediscovery", "service/"+x.ID)
		s.sdServices[x.ID] = x
		return map[string]any{"Service": x.json()}, nil
	case "ListServices":
		nsID, byNS := sdFilter(in, "NAMESPACE_ID")
		out := []any{}
		for _, id := range sortedKeys(s.sdServices) {
			if x := s.sdServices[id]; !byNS || x.Namespace == nsID {
				out = append(out, x.json())
			}
		}
		return map[string]any{"Services": out}, nil
	case "UpdateService":
		x := s.sdServices[sv(in, "Id")]
		if x == nil {
			return nil, errorf(400, "ServiceNotFound", "No service exists with the specified ID.")
		}
		if d := obj(obj(in, "Service"), "DnsConfig"); d != nil {
			x.DNS["DnsRecords"] = d["DnsRecords"]
		}
		return s.sdOperation("UPDATE_SERVICE", "SERVICE", x.ID), nil
	case "DeleteService":
		x := s.sdServices[sv(in, "Id")]
		if x == nil {
			return nil, errorf(400, "ServiceNotFound", "No service exists with the specified ID.")
		}
		// ECS keeps the instances of its tasks registered while its
		// service exists.
		for _, e := range s.services {
			for _, r := range e.Registries {
				if e.Status == "ACTIVE" && sv(r.(map[string]any), "registryArn") == x.Arn {
					return nil, errorf(400, "ResourceInUse", "Service contains registered instances; delete the instances before deleting the service")
				}
			}
		}
		delete(s.sdServices, x.ID)
		return nil, nil
	case "ListTagsForResource", "TagResource":
		tags := s.sdResource(sv(in, "ResourceARN"))
		if tags == nil {
			return nil, errorf(400, "ResourceNotFoundException", "The operation can't be completed because the resource was not found.")
		}
		if op == "TagResource" {
			*tags = mergeSchedTags(*tags, list(in, "Tags"))
			return nil, nil
		}
		if *tags == nil {
			return map[string]any{"Tags": []any{}}, nil
		}
		return map[string]any{"Tags": *tags}, nil
	}
	return nil, errorf(400, "UnknownOperationException", "operation %s is not served by this stand-in", op)
}

func (x *sdService) json() map[string]any {
	return map[string]any{"Id": x.ID, "Arn": x.Arn, "Name": x.Name, "NamespaceId": x.Namespace, "DnsConfig": x.DNS,
		"Type": "DNS_HTTP", "InstanceCount": 0, "CreateDate": epoch(x.Created)}
}
