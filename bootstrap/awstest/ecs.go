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

// ---- ECS (JSON 1.1) ----

type cluster struct {
	Name, Arn, Status string
	Tags              []any
}

type taskDef struct {
	Doc    map[string]any
	Active bool
}

type service struct {
	Name, Cluster, Arn, Status, TaskDef string
	Desired                             int
	Network                             map[string]any
	Tags                                []any
	Registries                          []any
}

func (c *cluster) json() map[string]any {
	return map[string]any{"clusterArn": c.Arn, "clusterName": c.Name, "status": c.Status, "tags": c.Tags,
		"registeredContainerInstancesCount": 0, "runningTasksCount": 0, "pendingTasksCount": 0, "activeServicesCount": 0}
}

func (x *service) json(s *Server) map[string]any {
	return map[string]any{"serviceArn": x.Arn, "serviceName": x.Name, "clusterArn": s.clusters[x.Cluster].Arn, "status": x.Status,
		"desiredCount": x.Desired, "runningCount": 0, "pendingCount": 0, "launchType": "FARGATE", "taskDefinition": x.TaskDef,
		"networkConfiguration": x.Network, "tags": x.Tags, "createdAt": epoch(time.Now()), "schedulingStrategy": "REPLICA",
		"serviceRegistries": x.Registries}
}

// fargateOK says whether Fargate offers cpu units with memory MiB.
func fargateOK(cpu, mem int) bool {
	type r struct{ min, max, step int }
	ranges := map[int]r{256: {512, 2048, 512}, 512: {1024, 4096, 1024}, 1024: {2048, 8192, 1024}, 2048: {4096, 16384, 1024},
		4096: {8192, 30720, 1024}, 8192: {16384, 61440, 4096}, 16384: {32768, 122880, 8192}}
	g, ok := ranges[cpu]
	return ok && mem >= g.min && mem <= g.max && (mem%g.step == 0)
}

func clientError(format string, args ...any) *apiError {
	return errorf(400, "ClientException", format, args...)
}

func (s *Server) ecsCluster(name string) *cluster {
	if name == "" {
		name = "default"
	}
	for _, c := range s.clusters {
		if (c.Name == name || c.Arn == name) && c.Status == "ACTIVE" {
			return c
		}
	}
	return nil
}

func (s *Server) taskDefByRef(ref string) (string, *taskDef) {
	if strings.HasPrefix(ref, "arn:") {
		ref = ref[strings.LastIndex(ref, "/")+1:]
	}
	if !strings.Contains(ref, ":") {
		ref = fmt.Sprintf("%s:%d", ref, s.revisions[ref])
	}
	return ref, s.taskDefs[ref]
}

func (s *Server) ecs(op string, in map[string]any) (any, *apiError) {
	switch op {
	case "CreateCluster":
		name := sv(in, "clusterName")
		if c := s.ecsCluster(name); c != nil {
			return map[string]any{"cluster": c.json()}, nil // CreateCluster is idempotent
		}
		c := &cluster{Name: name, Arn: arn("ecs", "cluster/"+name), Status: "ACTIVE", Tags: list(in, "tags")}
		s.clusters[name] = c
		return map[string]any{"cluster": c.json()}, nil
	case "DescribeClusters":
		out, failures := []any{}, []any{}
		for _, n := range list(in, "clusters") {
			if c := s.clusters[fmt.Sprint(n)]; c != nil {
				out = append(out, c.json())
			} else {
				failures = append(failures, map[string]any{"arn": arn("ecs", "cluster/"+fmt.Sprint(n)), "reason": "MISSING"})
			}
		}
		return map[string]any{"clusters": out, "failures": failures}, nil
	case "DeleteCluster":
		c := s.ecsCluster(sv(in, "cluster"))
		if c == nil {
			return nil, errorf(400, "ClusterNotFoundException", "Cluster not found.")
		}
		for _, x := range s.services {
			if x.Cluster == c.Name && x.Status == "ACTIVE" {
				return nil, errorf(400, "ClusterContainsServicesException", "The Cluster cannot be deleted while Services are active.")
			}
		}
		c.Status = "INACTIVE"
		return map[string]any{"cluster": c.json()}, nil
	case "TagResource":
		a := sv(in, "resourceArn")
		for _, c := range s.clusters {
			if c.Arn == a {
				c.Tags = mergeECSTags(c.Tags, list(in, "tags"))
				return nil, nil
			}
		}
		for _, x := range s.services {
			if x.Arn == a {
				x.Tags = mergeECSTags(x.Tags, list(in, "tags"))
				return nil, nil
			}
		}
		return nil, errorf(400, "InvalidParameterException", "The specified resource is not found.")
	case "RegisterTaskDefinition":
		family := sv(in, "family")
		cpu, mem := 0, 0
		fmt.Sscan(sv(in, "cpu"), &cpu)
		fmt.Sscan(sv(in, "memory"), &mem)
		if !fargateOK(cpu, mem) {
			return nil, clientError("No Fargate configuration exists for given values: %d CPU, %d memory. See the Amazon ECS documentation for the valid values.", cpu, mem)
		}
		if len(list(in, "containerDefinitions")) == 0 {
			return nil, clientError("Container list cannot be empty.")
		}
		s.revisions[family]++
		rev := s.revisions[family]
		doc := map[string]any{}
		for k, v := range in {
			if k != "tags" {
				doc[k] = v
			}
		}
		doc["taskDefinitionArn"] = arn("ecs", fmt.Sprintf("task-definition/%s:%d", family, rev))
		doc["revision"] = rev
		doc["status"] = "ACTIVE"
		doc["compatibilities"] = []string{"EC2", "FARGATE"}
		s.taskDefs[fmt.Sprintf("%s:%d", family, rev)] = &taskDef{Doc: doc, Active: true}
		return map[string]any{"taskDefinition": doc, "tags": list(in, "tags")}, nil
	case "DescribeTaskDefinition":
		_, td := s.taskDefByRef(sv(in, "taskDefinition"))
		if td == nil {
			return nil, clientError("Unable to describe task definition.")
		}
		return map[string]any{"taskDefinition": td.Doc}, nil
	case "DeregisterTaskDefinition":
		_, td := s.taskDefByRef(sv(in, "taskDefinition"))
		if td == nil {
			return nil, clientError("The specified task definition does not exist.")
		}
		td.Active = false
		td.Doc["status"] = "INACTIVE"
		return map[string]any{"taskDefinition": td.Doc}, nil
	case "CreateService":
		c := s.ecsCluster(sv(in, "cluster"))
		if c == nil {
			return nil, errorf(400, "ClusterNotFoundException", "Cluster not found.")
		}
		name := sv(in, "serviceName")
		if x := s.services[c.Name+"/"+name]; x != nil && x.Status == "ACTIVE" {
			return nil, errorf(400, "InvalidParameterException", "Creation of service was not idempotent.")
		}
		ref, td := s.taskDefByRef(sv(in, "taskDefinition"))
		if td == nil || !td.Active {
			return nil, clientError("TaskDefinition not found.")
		}
		desired, _ := nv(in, "desiredCount")
		if aerr := s.checkRegistries(list(in, "serviceRegistries")); aerr != nil {
			return nil, aerr
		}
		x := &service{Name: name, Cluster: c.Name, Arn: arn("ecs", "service/"+c.Name+"/"+name), Status: "ACTIVE",
			TaskDef: arn("ecs", "task-definition/"+ref), Desired: desired, Network: obj(in, "networkConfiguration"), Tags: list(in, "tags"),
			Registries: list(in, "serviceRegistries")}
		if x.Registries == nil {
			x.Registries = []any{}
		}
		s.services[c.Name+"/"+name] = x
		return map[string]any{"service": x.json(s)}, nil
	case "ListServices":
		c := s.ecsCluster(sv(in, "cluster"))
		if c == nil {
			return nil, errorf(400, "ClusterNotFoundException", "Cluster not found.")
		}
		arns := []string{}
		for _, x := range s.services {
			if x.Cluster == c.Name && x.Status == "ACTIVE" {
				arns = append(arns, x.Arn)
			}
		}
		sort.Strings(arns)
		return map[string]any{"serviceArns": arns}, nil
	case "DescribeServices":
		c := s.ecsCluster(sv(in, "cluster"))
		if c == nil {
			return nil, errorf(400, "ClusterNotFoundException", "Cluster not found.")
		}
		out, failures := []any{}, []any{}
		for _, n := range list(in, "services") {
			ref := fmt.Sprint(n)
			ref = ref[strings.LastIndex(ref, "/")+1:]
			if x := s.services[c.Name+"/"+ref]; x != nil {
				out = append(out, x.json(s))
			} else {
				failures = append(failures, map[string]any{"arn": fmt.Sprint(n), "reason": "MISSING"})
			}
		}
		return map[string]any{"services": out, "failures": failures}, nil
	case "UpdateService":
		c := s.ecsCluster(sv(in, "cluster"))
		if c == nil {
			return nil, errorf(400, "ClusterNotFoundException", "Cluster not found.")
		}
		x := s.services[c.Name+"/"+sv(in, "service")]
		if x == nil || x.Status != "ACTIVE" {
			return nil, errorf(400, "ServiceNotFoundException", "Service not found.")
		}
		if ref := sv(in, "taskDefinition"); ref != "" {
			full, td := s.taskDefByRef(ref)
			if td == nil || !td.Active {
				return nil, clientError("TaskDefinition not found.")
			}
			x.TaskDef = arn("ecs", "task-definition/"+full)
		}
		if d, ok := nv(in, "desiredCount"); ok {
			x.Desired = d
		}
		if n := obj(in, "networkConfiguration"); n != nil {
			x.Network = n
		}
		if r, ok := in["serviceRegistries"].([]any); ok {
			if aerr := s.checkRegistries(r); aerr != nil {
				return nil, aerr
			}
			x.Registries = r
		}
		return map[string]any{"service": x.json(s)}, nil
	case "DeleteService":
		c := s.ecsCluster(sv(in, "cluster"))
		if c == nil {
			return nil, errorf(400, "ClusterNotFoundException", "Cluster not found.")
		}
		x := s.services[c.Name+"/"+sv(in, "service")]
		if x == nil || x.Status != "ACTIVE" {
			return nil, errorf(400, "ServiceNotFoundException", "Service not found.")
		}
		if x.Desired > 0 && in["force"] != true {
			return nil, errorf(400, "InvalidParameterException", "The service cannot be stopped while it is scaled above 0.")
		}
		x.Status = "INACTIVE"
		return map[string]any{"service": x.json(s)}, nil
	}
	return nil, errorf(400, "UnknownOperationException", "operation %s is not served by this stand-in", op)
}

// checkRegistries checks that the Cloud Map services a service registers
// in exist and name the container's port (SRV records need it).
func (s *Server) checkRegistries(regs []any) *apiError {
	for _, r := range regs {
		m, _ := r.(map[string]any)
		found := false
		for _, x := range s.sdServices {
			found = found || x.Arn == sv(m, "registryArn")
		}
		if !found {
			return errorf(400, "InvalidParameterException", "The service registry %s does not exist.", sv(m, "registryArn"))
		}
		if _, ok := nv(m, "containerPort"); !ok || sv(m, "containerName") == "" {
			return errorf(400, "InvalidParameterException", "When specifying 'containerName' or 'containerPort' for a service registry, both must be specified; SRV records need them.")
		}
	}
	return nil
}

func mergeECSTags(have, add []any) []any {
	m := map[string]any{}
	var order []string
	for _, l := range [][]any{have, add} {
		for _, t := range l {
			tm, _ := t.(map[string]any)
			k := sv(tm, "key")
			if _, ok := m[k]; !ok {
				order = append(order, k)
			}
			m[k] = tm
		}
	}
	out := []any{}
	for _, k := range order {
		out = append(out, m[k])
	}
	return out
}

// ---- EventBridge Scheduler (REST-JSON) ----

type schedGroup struct {
	Name, Arn string
	Tags      []any
}

type schedule struct {
	Doc map[string]any
}

// schedulerOp names a Scheduler request from its method and path.
func schedulerOp(method, path string) string {
	switch {
	case strings.HasPrefix(path, "/schedule-groups/"):
		return map[string]string{"POST": "CreateScheduleGroup", "GET": "GetScheduleGroup", "DELETE": "DeleteScheduleGroup"}[method]
	case path == "/schedules":
		return map[string]string{"GET": "ListSchedules"}[method]
	case strings.HasPrefix(path, "/schedules/"):
		return map[string]string{"POST": "CreateSchedule", "GET": "GetSchedule", "PUT": "UpdateSchedule", "DELETE": "DeleteSchedule"}[method]
	case strings.HasPrefix(path, "/tags/"):
		return map[string]string{"GET": "ListTagsForResource", "POST": "TagResource", "DELETE": "UntagResource"}[method]
	}
	return ""
}

func (s *Server) serveScheduler(w http.ResponseWriter, r *http.Request, op string, body []byte) {
	in := map[string]any{}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			writeRESTError(w, errorf(400, "ValidationException", "body is not JSON"))
			return
		}
	}
	last, _ := url.PathUnescape(r.URL.EscapedPath()[strings.LastIndex(r.URL.EscapedPath(), "/")+1:])
	out, aerr := s.scheduler(op, last, r.URL.Query(), in)
	if aerr != nil {
		writeRESTError(w, aerr)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if out == nil {
		out = map[string]any{}
	}
	_ = json.NewEncoder(w).Encode(out)
}

func writeRESTError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", e.code)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Message": e.msg})
}

func (s *Server) scheduler(op, name string, q url.Values, in map[string]any) (any, *apiError) {
	notFound := func(what string) *apiError {
		return errorf(404, "ResourceNotFoundException", "%s does not exist.", what)
	}
	switch op {
	case "CreateScheduleGroup":
		if s.groups[name] != nil {
			return nil, errorf(409, "ConflictException", "Schedule group %s already exists.", name)
		}
		g := &schedGroup{Name: name, Arn: arn("scheduler", "schedule-group/"+name), Tags: list(in, "Tags")}
		s.groups[name] = g
		return map[string]any{"ScheduleGroupArn": g.Arn}, nil
	case "GetScheduleGroup":
		g := s.groups[name]
		if g == nil {
			return nil, notFound("Schedule group " + name)
		}
		return map[string]any{"Arn": g.Arn, "Name": g.Name, "State": "ACTIVE", "CreationDate": epoch(time.Now())}, nil
	case "DeleteScheduleGroup":
		if s.groups[name] == nil {
			return nil, notFound("Schedule group " + name)
		}
		delete(s.groups, name)
		for k := range s.schedules {
			if strings.HasPrefix(k, name+"/") {
				delete(s.schedules, k)
			}
		}
		return nil, nil
	case "ListTagsForResource", "TagResource":
		for _, g := range s.groups {
			if g.Arn == name {
				if op == "TagResource" {
					g.Tags = mergeSchedTags(g.Tags, list(in, "Tags"))
					return nil, nil
				}
				return map[string]any{"Tags": g.Tags}, nil
			}
		}
		return nil, notFound("Resource " + name)
	case "ListSchedules":
		group := q.Get("ScheduleGroup")
		var keys []string
		for k := range s.schedules {
			if group == "" || strings.HasPrefix(k, group+"/") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		out := []any{}
		for _, k := range keys {
			d := s.schedules[k].Doc
			out = append(out, map[string]any{"Arn": d["Arn"], "Name": d["Name"], "GroupName": d["GroupName"], "State": d["State"], "Target": map[string]any{"Arn": obj(d, "Target")["Arn"]}})
		}
		return map[string]any{"Schedules": out}, nil
	}
	group := sv(in, "GroupName")
	if group == "" {
		group = q.Get("groupName")
	}
	if group == "" {
		group = "default"
	}
	key := group + "/" + name
	switch op {
	case "CreateSchedule", "UpdateSchedule":
		if s.groups[group] == nil && group != "default" {
			return nil, notFound("Schedule group " + group)
		}
		if op == "CreateSchedule" && s.schedules[key] != nil {
			return nil, errorf(409, "ConflictException", "Schedule %s already exists.", name)
		}
		if op == "UpdateSchedule" && s.schedules[key] == nil {
			return nil, notFound("Schedule " + name)
		}
		expr := sv(in, "ScheduleExpression")
		if !strings.HasPrefix(expr, "cron(") && !strings.HasPrefix(expr, "rate(") && !strings.HasPrefix(expr, "at(") {
			return nil, errorf(400, "ValidationException", "Invalid Schedule Expression %s.", expr)
		}
		if t := obj(in, "Target"); sv(t, "Arn") == "" || sv(t, "RoleArn") == "" {
			return nil, errorf(400, "ValidationException", "Target Arn and RoleArn are required.")
		}
		doc := map[string]any{"State": "ENABLED"}
		for k, v := range in {
			if k != "ClientToken" {
				doc[k] = v
			}
		}
		doc["Name"], doc["GroupName"], doc["Arn"] = name, group, arn("scheduler", "schedule/"+group+"/"+name)
		s.schedules[key] = &schedule{Doc: doc}
		return map[string]any{"ScheduleArn": doc["Arn"]}, nil
	case "GetSchedule":
		x := s.schedules[key]
		if x == nil {
			return nil, notFound("Schedule " + name)
		}
		return x.Doc, nil
	case "DeleteSchedule":
		if s.schedules[key] == nil {
			return nil, notFound("Schedule " + name)
		}
		delete(s.schedules, key)
		return nil, nil
	}
	return nil, errorf(400, "ValidationException", "operation %s is not served by this stand-in", op)
}

func mergeSchedTags(have, add []any) []any {
	m := map[string]string{}
	for _, l := range [][]any{have, add} {
		for _, t := range l {
			tm, _ := t.(map[string]any)
			m[sv(tm, "Key")] = sv(tm, "Value")
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := []any{}
	for _, k := range keys {
		out = append(out, map[string]any{"Key": k, "Value": m[k]})
	}
	return out
}
