package awstest

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ---- EC2 security groups (the EC2 query protocol) ----
//
// A stand-in for the security group calls of EC2's API version
// 2016-11-15: requests are form-encoded (Action=...&Version=2016-11-15,
// lists flattened as Filter.1.Value.1), answers are XML in the
// http://ec2.amazonaws.com/doc/2016-11-15/ namespace with lowerCamelCase
// elements and <item> list members, and errors are
// <Response><Errors><Error><Code>, as the SDK's ec2query protocol reads
// them (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
// VPCs are not modelled: any vpc-... ID is taken.

const ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

type secGroup struct {
	ID, Name, Description, VPC string
	Tags                       map[string]string
	Ingress, Egress            []sgRule
}

// sgRule is one rule with one peer: a group or an IPv4 range. Protocol -1
// has no ports.
type sgRule struct {
	Protocol    string
	From, To    int
	Group, CIDR string
}

// members lists the indices N of prefix.N... in f, in order.
func members(f url.Values, prefix string) []string {
	seen := map[int]bool{}
	for k := range f {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ".")
		if i, err := strconv.Atoi(n); err == nil {
			seen[i] = true
		}
	}
	var idx []int
	for i := range seen {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	out := make([]string, len(idx))
	for j, i := range idx {
		out[j] = prefix + "." + strconv.Itoa(i)
	}
	return out
}

// values lists prefix.1, prefix.2, ... of a flattened list of strings.
func values(f url.Values, prefix string) []string {
	var out []string
	for _, m := range members(f, prefix) {
		out = append(out, f.Get(m))
	}
	return out
}

func writeEC2(w http.ResponseWriter, op, body string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><%sResponse xmlns="%s"><requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>%s</%sResponse>`,
		op, ec2Namespace, body, op)
}

func writeEC2Error(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>59dbff89-35bd-4eac-99ed-be587EXAMPLE</RequestID></Response>`,
		e.code, xmlEscape(e.msg))
}

func (s *Server) serveEC2(w http.ResponseWriter, op string, f url.Values) {
	body, aerr := s.ec2(op, f)
	if aerr != nil {
		writeEC2Error(w, aerr)
		return
	}
	writeEC2(w, op, body)
}

func groupNotFound(id string) *apiError {
	return errorf(400, "InvalidGroup.NotFound", "The security group '%s' does not exist", id)
}

func (s *Server) ec2(op string, f url.Values) (string, *apiError) {
	switch op {
	case "CreateSecurityGroup":
		name, vpc := f.Get("GroupName"), f.Get("VpcId")
		if name == "" || f.Get("GroupDescription") == "" {
			return "", errorf(400, "MissingParameter", "The request must contain the parameters GroupName and GroupDescription")
		}
		if strings.HasPrefix(name, "sg-") {
			return "", errorf(400, "InvalidParameterValue", "Group names may not be in the format sg-*.")
		}
		for _, g := range s.secGroups {
			if g.Name == name && g.VPC == vpc {
				return "", errorf(400, "InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, vpc)
			}
		}
		g := &secGroup{ID: "sg-" + s.id(""), Name: name, Description: f.Get("GroupDescription"), VPC: vpc,
			Tags: map[string]string{},
			// EC2's default for a new group: all traffic out.
			Egress: []sgRule{{Protocol: "-1", CIDR: "0.0.0.0/0"}}}
		for _, spec := range members(f, "TagSpecification") {
			if rt := f.Get(spec + ".ResourceType"); rt != "security-group" {
				return "", errorf(400, "InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", rt)
			}
			for _, t := range members(f, spec+".Tag") {
				g.Tags[f.Get(t+".Key")] = f.Get(t + ".Value")
			}
		}
		s.secGroups[g.ID] = g
		return fmt.Sprintf("<groupId>%s</groupId><securityGroupArn>%s</securityGroupArn>%s", g.ID, arn("ec2", "security-group/"+g.ID), tagSetXML(g.Tags)), nil
	case "DescribeSecurityGroups":
		ids := values(f, "GroupId")
		for _, id := range ids {
			if s.secGroups[id] == nil {
				return "", groupNotFound(id)
			}
		}
		var b strings.Builder
		b.WriteString("<securityGroupInfo>")
		for _, id := range sortedKeys(s.secGroups) {
			g := s.secGroups[id]
			if len(ids) > 0 && !contains(ids, id) {
				continue
			}
			ok := true
			for _, m := range members(f, "Filter") {
				if !g.matches(f.Get(m+".Name"), values(f, m+".Value")) {
					ok = false
				}
			}
			if ok {
				b.WriteString("<item>" + g.xml() + "</item>")
			}
		}
		b.WriteString("</securityGroupInfo>")
		return b.String(), nil
	case "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress":
		g := s.secGroups[f.Get("GroupId")]
		if g == nil {
			return "", groupNotFound(f.Get("GroupId"))
		}
		rules, aerr := s.ec2Rules(f)
		if aerr != nil {
			return "", aerr
		}
		list := &g.Ingress
		if strings.HasSuffix(op, "Egress") {
			list = &g.Egress
		}
		for _, r := range rules {
			i := indexOf(*list, r)
			switch {
			case strings.HasPrefix(op, "Authorize") && i >= 0:
				return "", errorf(400, "InvalidPermission.Duplicate", "the specified rule \"peer: %s%s, %s\" already exists", r.Group, r.CIDR, r.Protocol)
			case strings.HasPrefix(op, "Revoke") && i < 0:
				return "", errorf(400, "InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
			}
		}
		for _, r := range rules {
			if strings.HasPrefix(op, "Authorize") {
				*list = append(*list, r)
			} else {
				i := indexOf(*list, r)
				*list = append((*list)[:i], (*list)[i+1:]...)
			}
		}
		return "<return>true</return>", nil
	case "DeleteSecurityGroup":
		id := f.Get("GroupId")
		g := s.secGroups[id]
		if g == nil {
			return "", groupNotFound(id)
		}
		if user := s.groupUser(id); user != "" {
			return "", errorf(400, "DependencyViolation", "resource %s has a dependent object (%s)", id, user)
		}
		delete(s.secGroups, id)
		return fmt.Sprintf("<return>true</return><groupId>%s</groupId>", id), nil
	case "CreateTags":
		ids := values(f, "ResourceId")
		for _, id := range ids {
			if s.secGroups[id] == nil {
				return "", errorf(400, "InvalidID", "The ID '%s' is not valid", id)
			}
		}
		for _, id := range ids {
			for _, t := range members(f, "Tag") {
				s.secGroups[id].Tags[f.Get(t+".Key")] = f.Get(t + ".Value")
			}
		}
		return "<return>true</return>", nil
	}
	return "", errorf(400, "InvalidAction", "The action %s is not valid for this web service.", op)
}

// ec2Rules flattens IpPermissions.N into one rule per peer, checking that
// the groups named exist.
func (s *Server) ec2Rules(f url.Values) ([]sgRule, *apiError) {
	var out []sgRule
	for _, p := range members(f, "IpPermissions") {
		proto := f.Get(p + ".IpProtocol")
		base := sgRule{Protocol: proto}
		if proto != "-1" {
			from, err1 := strconv.Atoi(f.Get(p + ".FromPort"))
			to, err2 := strconv.Atoi(f.Get(p + ".ToPort"))
			if err1 != nil || err2 != nil {
				return nil, errorf(400, "InvalidParameterValue", "Invalid value for portRange. Must specify both from and to ports with TCP/UDP.")
			}
			base.From, base.To = from, to
		}
		n := 0
		for _, g := range members(f, p+".Groups") {
			id := f.Get(g + ".GroupId")
			if s.secGroups[id] == nil {
				return nil, groupNotFound(id)
			}
			r := base
			r.Group = id
			out = append(out, r)
			n++
		}
		for _, c := range members(f, p+".IpRanges") {
			r := base
			r.CIDR = f.Get(c + ".CidrIp")
			out = append(out, r)
			n++
		}
		if n == 0 {
			return nil, errorf(400, "InvalidParameterValue", "The request must contain a source or destination: a group or a CIDR range")
		}
	}
	if len(out) == 0 {
		return nil, errorf(400, "MissingParameter", "The request must contain the parameter IpPermissions")
	}
	return out, nil
}

// groupUser names what still uses group id: another group's rule, a VPC
// link, or an active ECS service's tasks.
func (s *Server) groupUser(id string) string {
	for _, g := range s.secGroups {
		for _, r := range append(append([]sgRule{}, g.Ingress...), g.Egress...) {
			if r.Group == id && g.ID != id {
				return "a rule of " + g.ID
			}
		}
	}
	for lid, l := range s.vpcLinks {
		for _, g := range list(l, "securityGroupIds") {
			if g == id {
				return "VPC link " + lid
			}
		}
	}
	for _, x := range s.services {
		if x.Status != "ACTIVE" {
			continue
		}
		for _, g := range list(obj(x.Network, "awsvpcConfiguration"), "securityGroups") {
			if g == id {
				return "network interfaces of ECS service " + x.Name
			}
		}
	}
	return ""
}

func indexOf(rules []sgRule, r sgRule) int {
	for i, x := range rules {
		if x == r {
			return i
		}
	}
	return -1
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// matches applies one DescribeSecurityGroups filter: tag:<key>, vpc-id,
// group-name, group-id; any of values matches.
func (g *secGroup) matches(name string, values []string) bool {
	var have string
	switch {
	case strings.HasPrefix(name, "tag:"):
		v, ok := g.Tags[strings.TrimPrefix(name, "tag:")]
		if !ok {
			return false
		}
		have = v
	case name == "vpc-id":
		have = g.VPC
	case name == "group-name":
		have = g.Name
	case name == "group-id":
		have = g.ID
	default:
		return false
	}
	return contains(values, have)
}

func tagSetXML(tags map[string]string) string {
	var b strings.Builder
	b.WriteString("<tagSet>")
	for _, k := range sortedKeys(tags) {
		fmt.Fprintf(&b, "<item><key>%s</key><value>%s</value></item>", xmlEscape(k), xmlEscape(tags[k]))
	}
	b.WriteString("</tagSet>")
	return b.String()
}

// permissionsXML groups rules with one protocol and port range into one
// IpPermission item, as EC2 answers.
func permissionsXML(elem string, rules []sgRule) string {
	type key struct {
		proto    string
		from, to int
	}
	var order []key
	by := map[key][]sgRule{}
	for _, r := range rules {
		k := key{r.Protocol, r.From, r.To}
		if by[k] == nil {
			order = append(order, k)
		}
		by[k] = append(by[k], r)
	}
	var b strings.Builder
	b.WriteString("<" + elem + ">")
	for _, k := range order {
		fmt.Fprintf(&b, "<item><ipProtocol>%s</ipProtocol>", xmlEscape(k.proto))
		if k.proto != "-1" {
			fmt.Fprintf(&b, "<fromPort>%d</fromPort><toPort>%d</toPort>", k.from, k.to)
		}
		b.WriteString("<groups>")
		for _, r := range by[k] {
			if r.Group != "" {
				fmt.Fprintf(&b, "<item><userId>%s</userId><groupId>%s</groupId></item>", Account, r.Group)
			}
		}
		b.WriteString("</groups><ipRanges>")
		for _, r := range by[k] {
			if r.CIDR != "" {
				fmt.Fprintf(&b, "<item><cidrIp>%s</cidrIp></item>", xmlEscape(r.CIDR))
			}
		}
		b.WriteString("</ipRanges><ipv6Ranges/><prefixListIds/></item>")
	}
	b.WriteString("</" + elem + ">")
	return b.String()
}

func (g *secGroup) xml() string {
	return fmt.Sprintf("<ownerId>%s</ownerId><groupId>%s</groupId><groupName>%s</groupName><groupDescription>%s</groupDescription><vpcId>%s</vpcId><securityGroupArn>%s</securityGroupArn>",
		Account, g.ID, xmlEscape(g.Name), xmlEscape(g.Description), xmlEscape(g.VPC), arn("ec2", "security-group/"+g.ID)) +
		permissionsXML("ipPermissions", g.Ingress) + permissionsXML("ipPermissionsEgress", g.Egress) + tagSetXML(g.Tags)
}
