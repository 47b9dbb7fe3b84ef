package awstest

import (
	"regexp"
	"strings"
)

// The stand-in for API Gateway v2 custom domain names and their API
// mappings (REST-JSON under /v2/domainnames,
// https://docs.aws.amazon.com/apigatewayv2/latest/api-reference/domainnames.html).
// It checks what API Gateway checks for what `gosling deploy` makes: a
// domain name is unique in the region (ConflictException), takes a
// regional ACM certificate of its own region (BadRequestException), and a
// mapping names an existing API and stage (NotFoundException) under a key
// no other mapping of the domain has (ConflictException). A domain name's
// target is d-<id>.execute-api.<region>.amazonaws.com in API Gateway's
// regional hosted zone. Deleting a domain name deletes its mappings.

type gwDomain struct {
	Doc      map[string]any
	Mappings map[string]map[string]any // by mapping ID
}

// gatewayHostedZones are API Gateway's regional hosted zone IDs, which a
// Route 53 alias to a regional domain name names
// (https://docs.aws.amazon.com/general/latest/gr/apigateway.html).
var gatewayHostedZones = map[string]string{
	"eu-central-1": "Z1U9ULNL0V5AJ3", "eu-west-1": "ZLY8HYME6SFDD", "us-east-1": "Z1UJRXOUMOOFQ8", "us-west-2": "Z2OJLYMUO9EFXC",
}

var acmARNRE = regexp.MustCompile(`^arn:aws(?:-cn|-us-gov)?:acm:([a-z0-9-]+):\d{12}:certificate/[0-9a-f-]+$`)

// domainOp names a request under /v2/domainnames from its path segments
// (without v2) and method.
func domainOp(seg []string, method string) string {
	ops := map[string]string{}
	switch {
	case len(seg) == 1:
		ops = map[string]string{"POST": "CreateDomainName", "GET": "GetDomainNames"}
	case len(seg) == 2:
		ops = map[string]string{"GET": "GetDomainName", "PATCH": "UpdateDomainName", "DELETE": "DeleteDomainName"}
	case len(seg) == 3 && seg[2] == "apimappings":
		ops = map[string]string{"POST": "CreateApiMapping", "GET": "GetApiMappings"}
	case len(seg) == 4 && seg[2] == "apimappings":
		ops = map[string]string{"GET": "GetApiMapping", "PATCH": "UpdateApiMapping", "DELETE": "DeleteApiMapping"}
	}
	return ops[method]
}

// domainConfig checks a domainNameConfigurations entry and fills in what
// API Gateway answers for it.
func (s *Server) domainConfig(in, prev map[string]any) (map[string]any, *apiError) {
	c := map[string]any{"endpointType": "REGIONAL", "securityPolicy": "TLS_1_2", "domainNameStatus": "AVAILABLE", "ipAddressType": "ipv4"}
	for k, v := range prev {
		c[k] = v
	}
	merge(c, in, "certificateArn", "endpointType", "securityPolicy")
	cert := sv(c, "certificateArn")
	m := acmARNRE.FindStringSubmatch(cert)
	switch {
	case m == nil:
		return nil, gwBadRequest("Invalid certificate ARN %s: it must be an ACM certificate ARN", cert)
	case sv(c, "endpointType") != "REGIONAL":
		return nil, gwBadRequest("Invalid endpoint type %s: HTTP APIs take REGIONAL custom domain names", sv(c, "endpointType"))
	case m[1] != Region:
		return nil, gwBadRequest("Invalid certificate ARN %s. Certificate must be in '%s'.", cert, Region)
	case sv(c, "securityPolicy") != "TLS_1_2" && sv(c, "securityPolicy") != "TLS_1_0":
		return nil, gwBadRequest("Invalid security policy %s", sv(c, "securityPolicy"))
	}
	if sv(c, "apiGatewayDomainName") == "" {
		c["apiGatewayDomainName"] = "d-" + strings.ToLower(s.id(""))[:10] + ".execute-api." + Region + ".amazonaws.com"
		c["hostedZoneId"] = gatewayHostedZones[Region]
	}
	return c, nil
}

func (s *Server) domainNames(op string, seg []string, in map[string]any) (int, any, *apiError) {
	switch op {
	case "CreateDomainName":
		name := strings.ToLower(sv(in, "domainName"))
		if name == "" {
			return 0, nil, gwBadRequest("DomainName is required")
		}
		if s.domains[name] != nil {
			return 0, nil, errorf(409, "ConflictException", "The domain name you provided already exists.")
		}
		configs := list(in, "domainNameConfigurations")
		if len(configs) != 1 {
			return 0, nil, gwBadRequest("Exactly one domain name configuration is required")
		}
		cin, _ := configs[0].(map[string]any)
		c, aerr := s.domainConfig(cin, nil)
		if aerr != nil {
			return 0, nil, aerr
		}
		tags := obj(in, "tags")
		if tags == nil {
			tags = map[string]any{}
		}
		doc := map[string]any{
			"domainName": name, "domainNameArn": "arn:aws:apigateway:" + Region + "::/domainnames/" + name,
			"apiMappingSelectionExpression": "$request.basepath", "domainNameConfigurations": []any{c}, "tags": tags,
		}
		s.domains[name] = &gwDomain{Doc: doc, Mappings: map[string]map[string]any{}}
		return 201, doc, nil
	case "GetDomainNames":
		items := []any{}
		for _, name := range sortedKeys(s.domains) {
			items = append(items, s.domains[name].Doc)
		}
		return 200, map[string]any{"items": items}, nil
	}
	d := s.domains[strings.ToLower(seg[1])]
	if d == nil {
		return 0, nil, gwNotFound("Invalid domain name identifier specified")
	}
	switch op {
	case "GetDomainName":
		return 200, d.Doc, nil
	case "UpdateDomainName":
		if configs := list(in, "domainNameConfigurations"); len(configs) > 0 {
			cin, _ := configs[0].(map[string]any)
			prev, _ := list(d.Doc, "domainNameConfigurations")[0].(map[string]any)
			c, aerr := s.domainConfig(cin, prev)
			if aerr != nil {
				return 0, nil, aerr
			}
			d.Doc["domainNameConfigurations"] = []any{c}
		}
		return 200, d.Doc, nil
	case "DeleteDomainName":
		delete(s.domains, sv(d.Doc, "domainName"))
		return 204, nil, nil
	case "CreateApiMapping":
		doc := map[string]any{"apiMappingId": strings.ToLower(s.id(""))[:6]}
		merge(doc, in, "apiId", "apiMappingKey", "stage")
		if aerr := s.checkMapping(d, "", doc); aerr != nil {
			return 0, nil, aerr
		}
		d.Mappings[sv(doc, "apiMappingId")] = doc
		return 201, doc, nil
	case "GetApiMappings":
		items := []any{}
		for _, id := range sortedKeys(d.Mappings) {
			items = append(items, d.Mappings[id])
		}
		return 200, map[string]any{"items": items}, nil
	}
	id := seg[3]
	m := d.Mappings[id]
	if m == nil {
		return 0, nil, gwNotFound("Invalid API mapping identifier specified %s", id)
	}
	switch op {
	case "UpdateApiMapping":
		next := map[string]any{}
		for k, v := range m {
			next[k] = v
		}
		merge(next, in, "apiId", "apiMappingKey", "stage")
		if aerr := s.checkMapping(d, id, next); aerr != nil {
			return 0, nil, aerr
		}
		d.Mappings[id] = next
		return 200, next, nil
	case "DeleteApiMapping":
		delete(d.Mappings, id)
		return 204, nil, nil
	}
	return 200, m, nil
}

// checkMapping checks a new or updated mapping of d: its API and stage
// exist, and no other mapping of d has its key.
func (s *Server) checkMapping(d *gwDomain, id string, m map[string]any) *apiError {
	a := s.apis[sv(m, "apiId")]
	if a == nil {
		return gwNotFound("Invalid API identifier specified %s:%s", Account, sv(m, "apiId"))
	}
	if a.Stages[sv(m, "stage")] == nil {
		return gwNotFound("Invalid stage identifier specified")
	}
	for other, o := range d.Mappings {
		if other != id && sv(o, "apiMappingKey") == sv(m, "apiMappingKey") {
			return errorf(409, "ConflictException", "ApiMapping with key '%s' already exists for domain name %s", sv(m, "apiMappingKey"), sv(d.Doc, "domainName"))
		}
	}
	return nil
}
