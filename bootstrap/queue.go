package bootstrap

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// sqsQueues are a deployment's queues behind the SQS API: Amazon SQS, and
// Yandex Message Queue, which speaks it. Queues are found by name (from
// the hints) and owned when tagged with the deployment.
type sqsQueues struct {
	client     *sqs.Client
	deployment string
	typ        string
}

func (q sqsQueues) read(ctx context.Context, hints []Resource) ([]Resource, error) {
	var out []Resource
	for name, rn := range hintNames(hints, q.typ) {
		u, err := q.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
		if apiCode(err) == "QueueDoesNotExist" || apiCode(err) == "AWS.SimpleQueueService.NonExistentQueue" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up queue %s: %w", name, err)
		}
		attrs, err := q.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		if err != nil {
			return nil, fmt.Errorf("read queue %s: %w", name, err)
		}
		tags, err := q.client.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: u.QueueUrl})
		if err != nil {
			return nil, fmt.Errorf("read the tags of queue %s: %w", name, err)
		}
		if tags.Tags[TagDeployment] != q.deployment {
			continue // someone else's queue of that name: creating it will say so
		}
		a := attrs.Attributes
		props := map[string]any{"name": name, "tags": anyMap(tags.Tags)}
		for _, k := range []struct{ attr, prop string }{{"VisibilityTimeout", "visibility_timeout_seconds"}, {"MessageRetentionPeriod", "message_retention_seconds"}} {
			if v, ok := a[k.attr]; ok {
				if n, err := strconv.Atoi(v); err == nil {
					props[k.prop] = n
				}
			}
		}
		if rp := a["RedrivePolicy"]; rp != "" {
			var m map[string]any
			if err := json.Unmarshal([]byte(rp), &m); err != nil {
				return nil, fmt.Errorf("queue %s: RedrivePolicy is not JSON: %w", name, err)
			}
			props["redrive_policy"] = m
		}
		if num(props, "visibility_timeout_seconds") == 30 && !hasProp(hints, q.typ, rn, "visibility_timeout_seconds") {
			delete(props, "visibility_timeout_seconds") // SQS's default, not set by the Nest
		}
		arn := a["QueueArn"]
		out = append(out, Resource{Type: q.typ, Name: rn, Props: normalize(props), ID: aws.ToString(u.QueueUrl), Outputs: map[string]string{"arn": arn, "url": aws.ToString(u.QueueUrl)}})
	}
	return out, nil
}

// hasProp tells whether the hint for typ.name sets prop.
func hasProp(hints []Resource, typ, name, prop string) bool {
	for _, h := range hints {
		if h.Type == typ && h.Name == name {
			if _, ok := raw(h.Props)[prop]; ok {
				return true
			}
		}
	}
	return false
}

func queueAttributes(props map[string]any) map[string]string {
	attrs := map[string]string{}
	if _, ok := props["visibility_timeout_seconds"]; ok {
		attrs["VisibilityTimeout"] = strconv.Itoa(num(props, "visibility_timeout_seconds"))
	}
	if _, ok := props["message_retention_seconds"]; ok {
		attrs["MessageRetentionPeriod"] = strconv.Itoa(num(props, "message_retention_seconds"))
	}
	if rp := props["redrive_policy"]; rp != nil {
		attrs["RedrivePolicy"] = jsonString(rp)
	}
	return attrs
}

func (q sqsQueues) put(ctx context.Context, before *Resource, r Resource) error {
	name := str(raw(r.Props), "name")
	attrs := queueAttributes(raw(r.Props))
	if before == nil {
		_, err := q.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name, Attributes: attrs, Tags: strMap(mapOf(raw(r.Props), "tags"))})
		return err
	}
	if _, ok := attrs["RedrivePolicy"]; !ok && raw(before.Props)["redrive_policy"] != nil {
		attrs["RedrivePolicy"] = "" // an empty value removes it
	}
	if _, err := q.client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(before.ID), Attributes: attrs}); err != nil {
		return err
	}
	_, err := q.client.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: aws.String(before.ID), Tags: strMap(mapOf(raw(r.Props), "tags"))})
	return err
}

func (q sqsQueues) delete(ctx context.Context, r Resource) error {
	_, err := q.client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(r.ID)})
	return err
}
