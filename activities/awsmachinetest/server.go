// Package awsmachinetest is a STAND-IN for the EC2 and IAM calls a worker
// makes about runner machines, for tests: EC2's DescribeInstances (tag:KEY
// and instance-state-name filters, paged with MaxResults and NextToken)
// and TerminateInstances, and IAM's GetRole and GetInstanceProfile, on one
// local HTTP server speaking each service's query protocol (form-encoded
// POST with Action and Version, SigV4-signed; EC2's answers in the
// http://ec2.amazonaws.com/doc/2016-11-15/ namespace with <item> list
// members, IAM's in https://iam.amazonaws.com/doc/2010-05-08/ with
// <member>; errors as each protocol writes them). moto serves these too
// where it runs; this stand-in needs nothing installed. Instances, roles
// and profiles are put in with the Go methods.
package awsmachinetest

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is the stand-in.
type Server struct {
	*httptest.Server

	mu        sync.Mutex
	seq       int
	instances map[string]*Instance
	roles     map[string]*Role
	profiles  map[string]*Profile
	calls     map[string]int
}

// Instance is an EC2 instance.
type Instance struct {
	ID    string
	State string // pending, running, stopping, stopped, shutting-down, terminated
	Tags  map[string]string
}

// Role is an IAM role.
type Role struct {
	Name, Path, Arn string
}

// Profile is an instance profile holding a role.
type Profile struct {
	Name, Path, Arn, Role string
}

// New starts the stand-in.
func New() *Server {
	s := &Server{instances: map[string]*Instance{}, roles: map[string]*Role{}, profiles: map[string]*Profile{}, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// AddInstance puts in an instance and returns its ID (i-...).
func (s *Server) AddInstance(state string, tags map[string]string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := fmt.Sprintf("i-%017x", s.seq)
	s.instances[id] = &Instance{ID: id, State: state, Tags: tags}
	return id
}

// State is an instance's state ("" when there is none).
func (s *Server) State(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[id]; in != nil {
		return in.State
	}
	return ""
}

// AddRole puts in a role of account 123456789012 and, with profile, an
// instance profile of the same name holding it.
func (s *Server) AddRole(name, path string, profile bool) *Role {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &Role{Name: name, Path: path, Arn: "arn:aws:iam::123456789012:role" + path + name}
	s.roles[name] = r
	if profile {
		s.profiles[name] = &Profile{Name: name, Path: path, Arn: "arn:aws:iam::123456789012:instance-profile" + path + name, Role: name}
	}
	return r
}

// Calls counts requests by action.
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

func esc(v string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(v))
	return b.String()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		http.Error(w, "not a signed query request", http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f := r.PostForm
	action := f.Get("Action")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[action]++
	switch f.Get("Version") {
	case "2016-11-15":
		s.ec2(w, action, f)
	case "2010-05-08":
		s.iam(w, action, f)
	default:
		http.Error(w, "unknown service version "+f.Get("Version"), http.StatusBadRequest)
	}
}

// ---- EC2 ----

func ec2Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>`, code, esc(msg))
}

func ec2Answer(w http.ResponseWriter, action, body string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><%sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>ea966190-f9aa-478e-9ede-example</requestId>%s</%sResponse>`, action, body, action)
}

// list reads a flattened list: prefix.1, prefix.2, ...
func list(f url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := f[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

var stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

func (s *Server) ec2(w http.ResponseWriter, action string, f url.Values) {
	switch action {
	case "DescribeInstances":
		type filter struct {
			name   string
			values []string
		}
		var filters []filter
		for i := 1; ; i++ {
			name := f.Get("Filter." + strconv.Itoa(i) + ".Name")
			if name == "" {
				break
			}
			if !strings.HasPrefix(name, "tag:") && name != "instance-state-name" {
				ec2Error(w, 400, "InvalidParameterValue", "The filter '"+name+"' is invalid")
				return
			}
			filters = append(filters, filter{name, list(f, "Filter."+strconv.Itoa(i)+".Value")})
		}
		ids := make([]string, 0, len(s.instances))
		for id, in := range s.instances {
			ok := true
			for _, fl := range filters {
				v := in.State
				if key, isTag := strings.CutPrefix(fl.name, "tag:"); isTag {
					var has bool
					if v, has = in.Tags[key]; !has {
						ok = false
						continue
					}
				}
				ok = ok && contains(fl.values, v)
			}
			if ok {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		from := 0
		if t := f.Get("NextToken"); t != "" {
			n, err := strconv.Atoi(t)
			if err != nil || n > len(ids) {
				ec2Error(w, 400, "InvalidParameterValue", "Invalid NextToken")
				return
			}
			from = n
		}
		size := 1000
		if m := f.Get("MaxResults"); m != "" {
			n, err := strconv.Atoi(m)
			if err != nil || n < 5 || n > 1000 {
				ec2Error(w, 400, "InvalidParameterValue", "MaxResults must be from 5 to 1000")
				return
			}
			size = n
		}
		var b strings.Builder
		b.WriteString("<reservationSet>")
		for _, id := range ids[from:min(len(ids), from+size)] {
			in := s.instances[id]
			fmt.Fprintf(&b, "<item><reservationId>r-%s</reservationId><ownerId>123456789012</ownerId><instancesSet><item><instanceId>%s</instanceId><instanceState><code>%d</code><name>%s</name></instanceState><tagSet>",
				strings.TrimPrefix(id, "i-"), id, stateCodes[in.State], in.State)
			keys := make([]string, 0, len(in.Tags))
			for k := range in.Tags {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, "<item><key>%s</key><value>%s</value></item>", esc(k), esc(in.Tags[k]))
			}
			b.WriteString("</tagSet></item></instancesSet></item>")
		}
		b.WriteString("</reservationSet>")
		if from+size < len(ids) {
			fmt.Fprintf(&b, "<nextToken>%d</nextToken>", from+size)
		}
		ec2Answer(w, action, b.String())
	case "TerminateInstances":
		ids := list(f, "InstanceId")
		for _, id := range ids {
			if s.instances[id] == nil {
				ec2Error(w, 400, "InvalidInstanceID.NotFound", "The instance ID '"+id+"' does not exist")
				return
			}
		}
		var b strings.Builder
		b.WriteString("<instancesSet>")
		for _, id := range ids {
			in := s.instances[id]
			prev := in.State
			if in.State != "terminated" {
				in.State = "shutting-down"
			}
			fmt.Fprintf(&b, "<item><instanceId>%s</instanceId><currentState><code>%d</code><name>%s</name></currentState><previousState><code>%d</code><name>%s</name></previousState></item>",
				id, stateCodes[in.State], in.State, stateCodes[prev], prev)
			in.State = "terminated"
		}
		b.WriteString("</instancesSet>")
		ec2Answer(w, action, b.String())
	default:
		ec2Error(w, 400, "InvalidAction", "The action "+action+" is not valid for this web service.")
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// ---- IAM ----

func iamError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId></ErrorResponse>`, code, esc(msg))
}

func iamAnswer(w http.ResponseWriter, action, result string) {
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<%sResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><%sResult>%s</%sResult><ResponseMetadata><RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId></ResponseMetadata></%sResponse>`,
		action, action, result, action, action)
}

var created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC3339)

func (r *Role) xml() string {
	return fmt.Sprintf("<Path>%s</Path><RoleName>%s</RoleName><RoleId>AROA%s</RoleId><Arn>%s</Arn><CreateDate>%s</CreateDate><AssumeRolePolicyDocument>%s</AssumeRolePolicyDocument>",
		esc(r.Path), esc(r.Name), strings.ToUpper(fmt.Sprintf("%016x", len(r.Name))), esc(r.Arn), created, url.QueryEscape(`{"Version":"2012-10-17","Statement":[]}`))
}

func (s *Server) iam(w http.ResponseWriter, action string, f url.Values) {
	switch action {
	case "GetRole":
		r := s.roles[f.Get("RoleName")]
		if r == nil {
			iamError(w, 404, "NoSuchEntity", "The role with name "+f.Get("RoleName")+" cannot be found.")
			return
		}
		iamAnswer(w, action, "<Role>"+r.xml()+"</Role>")
	case "GetInstanceProfile":
		p := s.profiles[f.Get("InstanceProfileName")]
		if p == nil {
			iamError(w, 404, "NoSuchEntity", "Instance Profile "+f.Get("InstanceProfileName")+" cannot be found.")
			return
		}
		roles := ""
		if r := s.roles[p.Role]; r != nil {
			roles = "<member>" + r.xml() + "</member>"
		}
		iamAnswer(w, action, fmt.Sprintf("<InstanceProfile><Path>%s</Path><InstanceProfileName>%s</InstanceProfileName><InstanceProfileId>AIPA%016x</InstanceProfileId><Arn>%s</Arn><CreateDate>%s</CreateDate><Roles>%s</Roles></InstanceProfile>",
			esc(p.Path), esc(p.Name), len(p.Name), esc(p.Arn), created, roles))
	default:
		iamError(w, 400, "InvalidAction", "Could not find operation "+action)
	}
}
