package awstest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ---- SQS (JSON 1.0) ----

type queue struct {
	Name, URL, Arn string
	Attrs          map[string]string
	Tags           map[string]string
}

var sqsDefaults = map[string]string{"VisibilityTimeout": "30", "MessageRetentionPeriod": "345600", "MaximumMessageSize": "262144", "DelaySeconds": "0", "ReceiveMessageWaitTimeSeconds": "0"}

func noQueue() *apiError {
	e := errorf(400, "com.amazonaws.sqs#QueueDoesNotExist", "The specified queue does not exist.")
	e.query = "AWS.SimpleQueueService.NonExistentQueue;Sender"
	return e
}

func (s *Server) queueByURL(u string) *queue {
	for _, q := range s.queues {
		if q.URL == u {
			return q
		}
	}
	return nil
}

func strMapOf(m map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func (s *Server) checkQueueAttrs(attrs map[string]string) *apiError {
	for k, v := range attrs {
		switch k {
		case "VisibilityTimeout", "MessageRetentionPeriod":
			if _, err := strconv.Atoi(v); err != nil {
				e := errorf(400, "com.amazonaws.sqs#InvalidAttributeValue", "Invalid value for the parameter %s.", k)
				e.query = "InvalidAttributeValue;Sender"
				return e
			}
		case "RedrivePolicy":
			if v == "" {
				continue
			}
			var rp map[string]any
			if err := json.Unmarshal([]byte(v), &rp); err != nil {
				e := errorf(400, "com.amazonaws.sqs#InvalidAttributeValue", "Invalid value for the parameter RedrivePolicy. Reason: Redrive policy is not a valid JSON map.")
				e.query = "InvalidAttributeValue;Sender"
				return e
			}
			target := sv(rp, "deadLetterTargetArn")
			found := false
			for _, q := range s.queues {
				found = found || q.Arn == target
			}
			if !found {
				e := errorf(400, "com.amazonaws.sqs#InvalidAttributeValue", "Value %s for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.", v)
				e.query = "InvalidAttributeValue;Sender"
				return e
			}
		}
	}
	return nil
}

func (s *Server) sqs(op string, in map[string]any) (any, *apiError) {
	switch op {
	case "CreateQueue":
		name := sv(in, "QueueName")
		attrs := strMapOf(obj(in, "Attributes"))
		if aerr := s.checkQueueAttrs(attrs); aerr != nil {
			return nil, aerr
		}
		if q := s.queues[name]; q != nil {
			for k, v := range attrs {
				if q.Attrs[k] != v {
					e := errorf(400, "com.amazonaws.sqs#QueueNameExists", "A queue already exists with the same name and a different value for attribute %s", k)
					e.query = "QueueAlreadyExists;Sender"
					return nil, e
				}
			}
			return map[string]any{"QueueUrl": q.URL}, nil
		}
		q := &queue{Name: name, URL: fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", Region, Account, name), Arn: arn("sqs", name), Attrs: map[string]string{}, Tags: strMapOf(obj(in, "tags"))}
		for k, v := range sqsDefaults {
			q.Attrs[k] = v
		}
		for k, v := range attrs {
			q.Attrs[k] = v
		}
		s.queues[name] = q
		return map[string]any{"QueueUrl": q.URL}, nil
	case "GetQueueUrl":
		q := s.queues[sv(in, "QueueName")]
		if q == nil {
			return nil, noQueue()
		}
		return map[string]any{"QueueUrl": q.URL}, nil
	}
	q := s.queueByURL(sv(in, "QueueUrl"))
	if q == nil {
		return nil, noQueue()
	}
	switch op {
	case "GetQueueAttributes":
		out := map[string]string{"QueueArn": q.Arn, "ApproximateNumberOfMessages": "0", "CreatedTimestamp": "1700000000"}
		for k, v := range q.Attrs {
			if v != "" {
				out[k] = v
			}
		}
		return map[string]any{"Attributes": out}, nil
	case "SetQueueAttributes":
		attrs := strMapOf(obj(in, "Attributes"))
		if aerr := s.checkQueueAttrs(attrs); aerr != nil {
			return nil, aerr
		}
		for k, v := range attrs {
			q.Attrs[k] = v
		}
		return nil, nil
	case "ListQueueTags":
		return map[string]any{"Tags": q.Tags}, nil
	case "TagQueue":
		for k, v := range strMapOf(obj(in, "Tags")) {
			q.Tags[k] = v
		}
		return nil, nil
	case "DeleteQueue":
		delete(s.queues, q.Name)
		return nil, nil
	}
	return nil, errorf(400, "UnknownOperationException", "operation %s is not served by this stand-in", op)
}

// ---- CloudWatch Logs (JSON 1.1) ----

type logGroup struct {
	Name      string
	Retention int
	Tags      map[string]string
	Created   time.Time
}

func (g *logGroup) arn() string { return arn("logs", "log-group:"+g.Name) }

func (s *Server) logs(op string, in map[string]any) (any, *apiError) {
	notFound := errorf(400, "ResourceNotFoundException", "The specified log group does not exist.")
	switch op {
	case "CreateLogGroup":
		name := sv(in, "logGroupName")
		if s.logGroups[name] != nil {
			return nil, errorf(400, "ResourceAlreadyExistsException", "The specified log group already exists")
		}
		s.logGroups[name] = &logGroup{Name: name, Tags: strMapOf(obj(in, "tags")), Created: time.Now()}
		return nil, nil
	case "DescribeLogGroups":
		prefix := sv(in, "logGroupNamePrefix")
		var names []string
		for n := range s.logGroups {
			if strings.HasPrefix(n, prefix) {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		groups := []any{}
		for _, n := range names {
			g := s.logGroups[n]
			m := map[string]any{"logGroupName": g.Name, "arn": g.arn() + ":*", "logGroupArn": g.arn(), "creationTime": g.Created.UnixMilli(), "storedBytes": 0, "logGroupClass": "STANDARD"}
			if g.Retention > 0 {
				m["retentionInDays"] = g.Retention
			}
			groups = append(groups, m)
		}
		return map[string]any{"logGroups": groups}, nil
	case "ListTagsForResource":
		for _, g := range s.logGroups {
			if g.arn() == sv(in, "resourceArn") {
				return map[string]any{"tags": g.Tags}, nil
			}
		}
		return nil, notFound
	case "TagResource":
		for _, g := range s.logGroups {
			if g.arn() == sv(in, "resourceArn") {
				for k, v := range strMapOf(obj(in, "tags")) {
					g.Tags[k] = v
				}
				return nil, nil
			}
		}
		return nil, notFound
	case "PutRetentionPolicy":
		g := s.logGroups[sv(in, "logGroupName")]
		if g == nil {
			return nil, notFound
		}
		days, _ := nv(in, "retentionInDays")
		valid := false
		for _, d := range []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653} {
			valid = valid || d == days
		}
		if !valid {
			return nil, errorf(400, "InvalidParameterException", "1 validation error detected: Value '%d' at 'retentionInDays' failed to satisfy constraint", days)
		}
		g.Retention = days
		return nil, nil
	case "DeleteLogGroup":
		if s.logGroups[sv(in, "logGroupName")] == nil {
			return nil, notFound
		}
		delete(s.logGroups, sv(in, "logGroupName"))
		return nil, nil
	}
	return nil, errorf(400, "UnknownOperationException", "operation %s is not served by this stand-in", op)
}

// ---- Secrets Manager (JSON 1.1) ----

type secret struct {
	Name, Arn, Description string
	Tags                   map[string]string
	Value                  []byte
	Binary                 bool
	Version                int
}

func (x *secret) tagList() []any {
	keys := make([]string, 0, len(x.Tags))
	for k := range x.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := []any{}
	for _, k := range keys {
		out = append(out, map[string]any{"Key": k, "Value": x.Tags[k]})
	}
	return out
}

func tagsFromList(l []any, into map[string]string) {
	for _, t := range l {
		if m, ok := t.(map[string]any); ok {
			into[sv(m, "Key")] = sv(m, "Value")
		}
	}
}

func (s *Server) secretByID(id string) *secret {
	if x := s.secrets[id]; x != nil {
		return x
	}
	for _, x := range s.secrets {
		if x.Arn == id {
			return x
		}
	}
	return nil
}

func (s *Server) secretsManager(op string, in map[string]any) (any, *apiError) {
	notFound := errorf(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
	switch op {
	case "CreateSecret":
		name := sv(in, "Name")
		if s.secrets[name] != nil {
			return nil, errorf(400, "ResourceExistsException", "The operation failed because the secret %s already exists.", name)
		}
		x := &secret{Name: name, Arn: arn("secretsmanager", "secret:"+name+"-"+s.id("")[6:12]), Description: sv(in, "Description"), Tags: map[string]string{}}
		tagsFromList(list(in, "Tags"), x.Tags)
		out := map[string]any{"ARN": x.Arn, "Name": name}
		if v, ok := in["SecretString"].(string); ok {
			x.Value, x.Version = []byte(v), 1
			out["VersionId"] = "v1"
		} else if v, ok := in["SecretBinary"].(string); ok {
			x.Value, x.Binary, x.Version = []byte(v), true, 1 // base64, as the SDK sends blobs
			out["VersionId"] = "v1"
		}
		s.secrets[name] = x
		return out, nil
	case "ListSecrets":
		var keys, values []string
		for _, f := range list(in, "Filters") {
			m, _ := f.(map[string]any)
			var vals []string
			for _, v := range list(m, "Values") {
				vals = append(vals, fmt.Sprint(v))
			}
			switch sv(m, "Key") {
			case "tag-key":
				keys = append(keys, vals...)
			case "tag-value":
				values = append(values, vals...)
			default:
				return nil, errorf(400, "InvalidParameterException", "filter %s is not served by this stand-in", sv(m, "Key"))
			}
		}
		var names []string
		for n, x := range s.secrets {
			ok := true
			for _, k := range keys {
				_, has := x.Tags[k]
				ok = ok && has
			}
			for _, v := range values {
				found := false
				for _, tv := range x.Tags {
					found = found || tv == v
				}
				ok = ok && found
			}
			if ok {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		l := []any{}
		for _, n := range names {
			x := s.secrets[n]
			l = append(l, map[string]any{"ARN": x.Arn, "Name": x.Name, "Description": x.Description, "Tags": x.tagList()})
		}
		return map[string]any{"SecretList": l}, nil
	}
	x := s.secretByID(sv(in, "SecretId"))
	if x == nil {
		return nil, notFound
	}
	switch op {
	case "DescribeSecret":
		return map[string]any{"ARN": x.Arn, "Name": x.Name, "Description": x.Description, "Tags": x.tagList()}, nil
	case "UpdateSecret":
		x.Description = sv(in, "Description")
		return map[string]any{"ARN": x.Arn, "Name": x.Name}, nil
	case "TagResource":
		tagsFromList(list(in, "Tags"), x.Tags)
		return nil, nil
	case "PutSecretValue":
		if v, ok := in["SecretString"].(string); ok {
			x.Value, x.Binary = []byte(v), false
		} else if v, ok := in["SecretBinary"].(string); ok {
			x.Value, x.Binary = []byte(v), true // base64, as the SDK sends blobs
		}
		x.Version++
		return map[string]any{"ARN": x.Arn, "Name": x.Name, "VersionId": fmt.Sprintf("v%d", x.Version), "VersionStages": []string{"AWSCURRENT"}}, nil
	case "GetSecretValue":
		if x.Version == 0 {
			return nil, errorf(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT")
		}
		out := map[string]any{"ARN": x.Arn, "Name": x.Name, "VersionId": fmt.Sprintf("v%d", x.Version), "VersionStages": []string{"AWSCURRENT"}}
		if x.Binary {
			out["SecretBinary"] = string(x.Value)
		} else {
			out["SecretString"] = string(x.Value)
		}
		return out, nil
	}
	return nil, errorf(400, "UnknownOperationException", "operation %s is not served by this stand-in", op)
}
