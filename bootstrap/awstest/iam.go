package awstest

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

type role struct {
	Name, Path, ID, Arn, Description, Trust string
	Created                                 time.Time
	Tags                                    map[string]string
	Policies                                map[string]string
}

type profile struct {
	Name, Path, ID, Arn string
	Created             time.Time
	Roles               []string
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// policyEncode URL-encodes a policy document, as IAM returns them.
func policyEncode(doc string) string { return strings.ReplaceAll(url.QueryEscape(doc), "+", "%20") }

func (r *role) xml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "<Path>%s</Path><RoleName>%s</RoleName><RoleId>%s</RoleId><Arn>%s</Arn><CreateDate>%s</CreateDate>",
		xmlEscape(r.Path), xmlEscape(r.Name), r.ID, xmlEscape(r.Arn), r.Created.Format(time.RFC3339))
	fmt.Fprintf(&b, "<AssumeRolePolicyDocument>%s</AssumeRolePolicyDocument><MaxSessionDuration>3600</MaxSessionDuration>", policyEncode(r.Trust))
	if r.Description != "" {
		fmt.Fprintf(&b, "<Description>%s</Description>", xmlEscape(r.Description))
	}
	return b.String()
}

func (r *role) tagsXML() string {
	keys := make([]string, 0, len(r.Tags))
	for k := range r.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("<Tags>")
	for _, k := range keys {
		fmt.Fprintf(&b, "<member><Key>%s</Key><Value>%s</Value></member>", xmlEscape(k), xmlEscape(r.Tags[k]))
	}
	b.WriteString("</Tags>")
	return b.String()
}

func (p *profile) xml(s *Server) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<member><Path>%s</Path><InstanceProfileName>%s</InstanceProfileName><InstanceProfileId>%s</InstanceProfileId><Arn>%s</Arn><CreateDate>%s</CreateDate><Roles>",
		xmlEscape(p.Path), xmlEscape(p.Name), p.ID, xmlEscape(p.Arn), p.Created.Format(time.RFC3339))
	for _, rn := range p.Roles {
		if r := s.roles[rn]; r != nil {
			b.WriteString("<member>" + r.xml() + "</member>")
		}
	}
	b.WriteString("</Roles></member>")
	return b.String()
}

func writeQuery(w http.ResponseWriter, service, op, result string) {
	ns := map[string]string{"iam": "https://iam.amazonaws.com/doc/2010-05-08/", "sts": "https://sts.amazonaws.com/doc/2011-06-15/"}[service]
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<%sResponse xmlns="%s"><%sResult>%s</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		op, ns, op, result, op, "7a62c49f-347e-4fc4-9331-6e8eEXAMPLE", op)
}

func writeQueryError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.status)
	typ := "Sender"
	if e.status >= 500 {
		typ = "Receiver"
	}
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId></ErrorResponse>`,
		typ, e.code, xmlEscape(e.msg))
}

func noSuchEntity(kind, name string) *apiError {
	return errorf(404, "NoSuchEntity", "The %s with name %s cannot be found.", kind, name)
}

// serveQuery answers IAM and STS, the query-protocol services.
func (s *Server) serveQuery(w http.ResponseWriter, service, op string, f url.Values) {
	result, aerr := s.query(service, op, f)
	if aerr != nil {
		writeQueryError(w, aerr)
		return
	}
	writeQuery(w, service, op, result)
}

func (s *Server) query(service, op string, f url.Values) (string, *apiError) {
	if service == "sts" {
		if op != "GetCallerIdentity" {
			return "", errorf(400, "InvalidAction", "Could not find operation %s for version 2011-06-15", op)
		}
		return fmt.Sprintf("<Arn>arn:aws:iam::%s:user/deployer</Arn><UserId>AIDATESTUSER</UserId><Account>%s</Account>", Account, Account), nil
	}
	name := f.Get("RoleName")
	switch op {
	case "CreateRole":
		if s.roles[name] != nil {
			return "", errorf(409, "EntityAlreadyExists", "Role with name %s already exists.", name)
		}
		path := f.Get("Path")
		if path == "" {
			path = "/"
		}
		if _, err := url.QueryUnescape(f.Get("AssumeRolePolicyDocument")); err != nil || !strings.HasPrefix(strings.TrimSpace(f.Get("AssumeRolePolicyDocument")), "{") {
			return "", errorf(400, "MalformedPolicyDocument", "Syntax errors in policy.")
		}
		r := &role{Name: name, Path: path, ID: s.id("AROA"), Arn: arn("iam", "role"+path+name), Description: f.Get("Description"),
			Trust: f.Get("AssumeRolePolicyDocument"), Created: time.Now().UTC(), Tags: map[string]string{}, Policies: map[string]string{}}
		for i := 1; f.Has(fmt.Sprintf("Tags.member.%d.Key", i)); i++ {
			r.Tags[f.Get(fmt.Sprintf("Tags.member.%d.Key", i))] = f.Get(fmt.Sprintf("Tags.member.%d.Value", i))
		}
		s.roles[name] = r
		return "<Role>" + r.xml() + "</Role>", nil
	case "GetRole":
		r := s.roles[name]
		if r == nil {
			return "", noSuchEntity("role", name)
		}
		return "<Role>" + r.xml() + r.tagsXML() + "</Role>", nil
	case "ListRoles":
		prefix := f.Get("PathPrefix")
		var names []string
		for n, r := range s.roles {
			if strings.HasPrefix(r.Path, prefix) {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		var b strings.Builder
		b.WriteString("<IsTruncated>false</IsTruncated><Roles>")
		for _, n := range names {
			b.WriteString("<member>" + s.roles[n].xml() + "</member>")
		}
		b.WriteString("</Roles>")
		return b.String(), nil
	case "UpdateRole":
		r := s.roles[name]
		if r == nil {
			return "", noSuchEntity("role", name)
		}
		r.Description = f.Get("Description")
		return "", nil
	case "UpdateAssumeRolePolicy":
		r := s.roles[name]
		if r == nil {
			return "", noSuchEntity("role", name)
		}
		r.Trust = f.Get("PolicyDocument")
		return "", nil
	case "PutRolePolicy":
		r := s.roles[name]
		if r == nil {
			return "", noSuchEntity("role", name)
		}
		r.Policies[f.Get("PolicyName")] = f.Get("PolicyDocument")
		return "", nil
	case "GetRolePolicy":
		r := s.roles[name]
		if r == nil {
			return "", noSuchEntity("role", name)
		}
		doc, ok := r.Policies[f.Get("PolicyName")]
		if !ok {
			return "", errorf(404, "NoSuchEntity", "The role policy with name %s cannot be found.", f.Get("PolicyName"))
		}
		return fmt.Sprintf("<RoleName>%s</RoleName><PolicyName>%s</PolicyName><PolicyDocument>%s</PolicyDocument>", xmlEscape(name), xmlEscape(f.Get("PolicyName")), policyEncode(doc)), nil
	case "DeleteRolePolicy":
		r := s.roles[name]
		if r == nil {
			return "", noSuchEntity("role", name)
		}
		if _, ok := r.Policies[f.Get("PolicyName")]; !ok {
			return "", errorf(404, "NoSuchEntity", "The role policy with name %s cannot be found.", f.Get("PolicyName"))
		}
		delete(r.Policies, f.Get("PolicyName"))
		return "", nil
	case "DeleteRole":
		r := s.roles[name]
		if r == nil {
			return "", noSuchEntity("role", name)
		}
		if len(r.Policies) > 0 {
			return "", errorf(409, "DeleteConflict", "Cannot delete entity, must delete policies first.")
		}
		for _, p := range s.profiles {
			for _, rn := range p.Roles {
				if rn == name {
					return "", errorf(409, "DeleteConflict", "Cannot delete entity, must remove roles from instance profile first.")
				}
			}
		}
		delete(s.roles, name)
		return "", nil
	case "CreateInstanceProfile":
		pn := f.Get("InstanceProfileName")
		if s.profiles[pn] != nil {
			return "", errorf(409, "EntityAlreadyExists", "Instance Profile %s already exists.", pn)
		}
		path := f.Get("Path")
		if path == "" {
			path = "/"
		}
		p := &profile{Name: pn, Path: path, ID: s.id("AIPA"), Arn: arn("iam", "instance-profile"+path+pn), Created: time.Now().UTC()}
		s.profiles[pn] = p
		return "<InstanceProfile>" + strings.TrimSuffix(strings.TrimPrefix(p.xml(s), "<member>"), "</member>") + "</InstanceProfile>", nil
	case "AddRoleToInstanceProfile":
		p := s.profiles[f.Get("InstanceProfileName")]
		if p == nil {
			return "", noSuchEntity("instance profile", f.Get("InstanceProfileName"))
		}
		if s.roles[name] == nil {
			return "", noSuchEntity("role", name)
		}
		if len(p.Roles) > 0 {
			return "", errorf(409, "LimitExceeded", "Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1")
		}
		p.Roles = append(p.Roles, name)
		return "", nil
	case "RemoveRoleFromInstanceProfile":
		p := s.profiles[f.Get("InstanceProfileName")]
		if p == nil {
			return "", noSuchEntity("instance profile", f.Get("InstanceProfileName"))
		}
		var keep []string
		for _, rn := range p.Roles {
			if rn != name {
				keep = append(keep, rn)
			}
		}
		p.Roles = keep
		return "", nil
	case "DeleteInstanceProfile":
		pn := f.Get("InstanceProfileName")
		p := s.profiles[pn]
		if p == nil {
			return "", noSuchEntity("instance profile", pn)
		}
		if len(p.Roles) > 0 {
			return "", errorf(409, "DeleteConflict", "Cannot delete entity, must remove roles from instance profile first.")
		}
		delete(s.profiles, pn)
		return "", nil
	case "ListInstanceProfilesForRole":
		if s.roles[name] == nil {
			return "", noSuchEntity("role", name)
		}
		var b strings.Builder
		b.WriteString("<IsTruncated>false</IsTruncated><InstanceProfiles>")
		var names []string
		for pn, p := range s.profiles {
			for _, rn := range p.Roles {
				if rn == name {
					names = append(names, pn)
				}
			}
		}
		sort.Strings(names)
		for _, pn := range names {
			b.WriteString(s.profiles[pn].xml(s))
		}
		b.WriteString("</InstanceProfiles>")
		return b.String(), nil
	}
	return "", errorf(400, "InvalidAction", "Could not find operation %s for version 2010-05-08", op)
}
