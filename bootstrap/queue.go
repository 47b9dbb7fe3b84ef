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
		props := QueueProps{Name: name, Tags: nonNilMap(tags.Tags)}
		for _, k := range []struct {
			attr string
			prop **int
		}{{"VisibilityTimeout", &props.VisibilityTimeoutSeconds}, {"MessageRetentionPeriod", &props.MessageRetentionSeconds}} {
			if v, ok := a[k.attr]; ok {
				if n, err := strconv.Atoi(v); err == nil {
					*k.prop = &n
				}
			}
		}
		if rp := a["RedrivePolicy"]; rp != "" {
			if !json.Valid([]byte(rp)) {
				return nil, fmt.Errorf("queue %s: RedrivePolicy is not JSON: %s", name, rp)
			}
			props.RedrivePolicy = json.RawMessage(rp)
		}
		if v := props.VisibilityTimeoutSeconds; v != nil && *v == 30 && !setsVisibilityTimeout(hints, q.typ, rn) {
			props.VisibilityTimeoutSeconds = nil // SQS's default, not set by the Nest
		}
		arn := a["QueueArn"]
		out = append(out, Resource{Type: q.typ, Name: rn, Props: props, ID: aws.ToString(u.QueueUrl), Outputs: map[string]string{"arn": arn, "url": aws.ToString(u.QueueUrl)}})
	}
	return out, nil
}

// setsVisibilityTimeout tells whether the hint for typ.name sets the
// visibility timeout.
func setsVisibilityTimeout(hints []Resource, typ, name string) bool {
	for _, h := range hints {
		if h.Type == typ && h.Name == name && as[QueueProps](h).VisibilityTimeoutSeconds != nil {
			return true
		}
	}
	return false
}

func queueAttributes(q QueueProps) map[string]string {
	attrs := map[string]string{}
	if v := q.VisibilityTimeoutSeconds; v != nil {
		attrs["VisibilityTimeout"] = strconv.Itoa(*v)
	}
	if v := q.MessageRetentionSeconds; v != nil {
		attrs["MessageRetentionPeriod"] = strconv.Itoa(*v)
	}
	if rp := q.RedrivePolicy; len(rp) > 0 && string(rp) != "null" {
		attrs["RedrivePolicy"] = string(rp)
	}
	return attrs
}

func (q sqsQueues) put(ctx context.Context, before *Resource, r Resource) error {
	want := as[QueueProps](r)
	name := want.Name
	attrs := queueAttributes(want)
	if before == nil {
		_, err := q.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name, Attributes: attrs, Tags: nonNilMap(want.Tags)})
		return err
	}
	if _, ok := attrs["RedrivePolicy"]; !ok && len(as[QueueProps](*before).RedrivePolicy) > 0 {
		attrs["RedrivePolicy"] = "" // an empty value removes it
	}
	if _, err := q.client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(before.ID), Attributes: attrs}); err != nil {
		return err
	}
	_, err := q.client.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: aws.String(before.ID), Tags: nonNilMap(want.Tags)})
	return err
}

func (q sqsQueues) delete(ctx context.Context, r Resource) error {
	_, err := q.client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(r.ID)})
	return err
}
