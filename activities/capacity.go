package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
)

// ErrTypeCloudCapacity is the type of the non-retryable error ApplyMachine
// returns when the cloud refused the machine for capacity or quota: trying
// again on that cloud now would fail the same way, so ProvisionRunner
// tries the egg's next cloud. Its details are one CloudRefusal.
const ErrTypeCloudCapacity = "CloudCapacity"

// CloudRefusal says why a cloud refused a machine: the cloud, a short
// class (capacity, quota, zone, rate) and the provider's own message.
type CloudRefusal struct {
	Cloud   string `json:"cloud"`
	Class   string `json:"class"`
	Message string `json:"message"`
}

func (r CloudRefusal) String() string {
	return fmt.Sprintf("%s refused the machine (%s): %s", r.Cloud, r.Class, r.Message)
}

// capacityRule matches one kind of refusal in OpenTofu's output.
type capacityRule struct {
	class string
	re    *regexp.Regexp
}

// capacityRules are, per cloud, the provider errors that say the cloud has
// no room for the machine now (or the account's quota is spent), as the
// AWS and Yandex providers print them in an apply's output.
//
// AWS (EC2 RunInstances and ECS error codes, terraform-provider-aws):
// InsufficientInstanceCapacity ("We currently do not have sufficient
// t3.large capacity in the Availability Zone you requested"),
// VcpuLimitExceeded and InstanceLimitExceeded (account quotas),
// Unsupported with "Your requested instance type (…) is not supported in
// your requested Availability Zone", InsufficientFreeAddressesInSubnet,
// ECS task placement failures RESOURCE:CPU, RESOURCE:MEMORY, RESOURCE:ENI
// and "Capacity is unavailable at this time" (Fargate), and API rate limits
// (ThrottlingException, RequestLimitExceeded).
//
// Yandex Cloud (gRPC status codes, terraform-provider-yandex):
// ResourceExhausted ("rpc error: code = ResourceExhausted desc = Quota
// limit vpc.networks.count exceeded"), "Quota limit … exceeded" and "Not
// enough resources" (no room in the zone).
//
// A bare "Unsupported" is not one: OpenTofu says "Unsupported argument" of
// a module that does not fit.
var capacityRules = map[string][]capacityRule{
	fly.CloudAWS: {
		{"capacity", regexp.MustCompile(`\bInsufficientInstanceCapacity\b`)},
		{"quota", regexp.MustCompile(`\b(VcpuLimitExceeded|InstanceLimitExceeded)\b`)},
		{"zone", regexp.MustCompile(`\bUnsupported: Your requested instance type|is not supported in your requested Availability Zone`)},
		{"capacity", regexp.MustCompile(`\bInsufficientFreeAddressesInSubnet\b`)},
		{"capacity", regexp.MustCompile(`\bRESOURCE:(CPU|MEMORY|ENI|GPU|PORTS)\b`)},
		{"capacity", regexp.MustCompile(`(?i)Capacity is unavailable at this time`)},
		{"rate", regexp.MustCompile(`\b(ThrottlingException|RequestLimitExceeded)\b`)},
	},
	// The local provider plays EC2's refusal (tofu/modules/local/vm).
	fly.CloudLocal: {
		{"capacity", regexp.MustCompile(`\bInsufficientInstanceCapacity\b`)},
	},
	fly.CloudYandex: {
		{"quota", regexp.MustCompile(`(?i)Quota limit \S+ exceeded`)},
		{"capacity", regexp.MustCompile(`(?i)Not enough resources`)},
		{"capacity", regexp.MustCompile(`\b(ResourceExhausted|RESOURCE_EXHAUSTED)\b`)},
	},
}

// ClassifyCapacity tells whether an apply's error text is the cloud's
// refusal for capacity, quota or rate, by the rules of that cloud's
// provider (capacityRules); the message is the provider's own, cut from
// the line that says it.
func ClassifyCapacity(cloud, text string) (CloudRefusal, bool) {
	for _, r := range capacityRules[cloud] {
		loc := r.re.FindStringIndex(text)
		if loc == nil {
			continue
		}
		return CloudRefusal{Cloud: cloud, Class: r.class, Message: providerMessage(text, loc[0])}, true
	}
	return CloudRefusal{}, false
}

// providerMessage is the provider's error around at: the line (OpenTofu's
// output lines are joined with " | ") from its gRPC status ("rpc error:",
// past Yandex's request IDs) or else from its last "Error: ", without
// OpenTofu's box drawing, at most 400 bytes.
func providerMessage(text string, at int) string {
	start := 0
	for _, sep := range []string{"\n", " | "} {
		if i := strings.LastIndex(text[:at], sep); i >= 0 && i+len(sep) > start {
			start = i + len(sep)
		}
	}
	end := len(text)
	for _, sep := range []string{"\n", " | "} {
		if i := strings.Index(text[at:], sep); i >= 0 && at+i < end {
			end = at + i
		}
	}
	for _, marker := range []string{"rpc error: ", "Error: "} {
		if i := strings.LastIndex(text[start:at], marker); i >= 0 {
			start += i
			if marker == "Error: " {
				start += len(marker)
			}
			break
		}
	}
	msg := strings.TrimSpace(strings.TrimLeft(text[start:end], "│╷╵ "))
	if len(msg) > 400 {
		msg = msg[:400] + "..."
	}
	return msg
}

// CapacityError turns an apply's error into a non-retryable
// ErrTypeCloudCapacity error when the cloud refused for capacity or quota;
// any other error is returned as it is.
func CapacityError(cloud string, err error) error {
	if err == nil {
		return nil
	}
	r, ok := ClassifyCapacity(cloud, err.Error())
	if !ok {
		return err
	}
	return temporal.NewNonRetryableApplicationError(r.String(), ErrTypeCloudCapacity, err, r)
}

// CloudRefusalOf returns the refusal an ErrTypeCloudCapacity error
// carries.
func CloudRefusalOf(err error) (CloudRefusal, bool) {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrTypeCloudCapacity {
		return CloudRefusal{}, false
	}
	var r CloudRefusal
	if ae.HasDetails() && ae.Details(&r) == nil && r.Cloud != "" {
		return r, true
	}
	return CloudRefusal{Message: ae.Message()}, true
}

// CloudFallbackInput records that a runner moves to another cloud.
type CloudFallbackInput struct {
	RunnerID string `json:"runner_id"`
	Egg      string `json:"egg"`
	From     string `json:"from"`
	To       string `json:"to"`
	Reason   string `json:"reason"`
	Actor    string `json:"actor,omitempty"`
	// FromPlacement and ToPlacement name the capacity type and zone as
	// well (fly.Placement.String), when the move is between placements.
	FromPlacement string `json:"from_placement,omitempty"`
	ToPlacement   string `json:"to_placement,omitempty"`
}

// RecordCloudFallback writes a runner's new cloud and the reason into its
// record and appends a cloud-fallback audit entry (once, however often the
// activity is retried).
func (a *Activities) RecordCloudFallback(ctx context.Context, in CloudFallbackInput) error {
	updated := false
	for range 5 {
		r, err := a.Store.GetRunner(ctx, in.RunnerID)
		if err != nil {
			return fmt.Errorf("read runner %s: %w", in.RunnerID, err)
		}
		r.Cloud, r.Reason = in.To, in.Reason
		err = a.Store.UpdateRunner(ctx, r)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("record cloud %s of runner %s: %w", in.To, in.RunnerID, err)
		}
		updated = true
		break
	}
	if !updated {
		return fmt.Errorf("record cloud %s of runner %s: it keeps changing", in.To, in.RunnerID)
	}
	before, after := map[string]string{"cloud": in.From}, map[string]string{"cloud": in.To}
	if in.FromPlacement != "" || in.ToPlacement != "" {
		before["placement"], after["placement"] = in.FromPlacement, in.ToPlacement
	}
	beforeJSON, _ := json.Marshal(before)
	afterJSON, _ := json.Marshal(after)
	key := in.RunnerID + "/cloud-fallback/" + in.To
	if in.ToPlacement != "" {
		key = in.RunnerID + "/cloud-fallback/" + in.ToPlacement
	}
	actor := in.Actor
	if actor == "" {
		actor = contract.ActorMotherGoose
	}
	_, err := a.Store.AppendAudit(ctx, store.AuditRecord{
		At: time.Now().UTC(), Actor: actor, Action: "cloud-fallback", Egg: in.Egg, RunnerID: in.RunnerID,
		Reason: in.Reason, Before: beforeJSON, After: afterJSON, Key: key,
	})
	return err
}
