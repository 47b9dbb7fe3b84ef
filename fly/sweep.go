package fly

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Sweep limits.
const (
	DefaultSweepInterval = Duration(time.Minute)
	MinSweepInterval     = Duration(5 * time.Second)
	MaxSweepInterval     = Duration(time.Hour)
)

// Sweep configures the pending-job sweep (block sweep of MG/config.fly):
// every Interval, a sweep per egg keeps a webhook on each of the egg's
// projects (a group's too), re-enables hooks GitLab disabled, resends the
// deliveries GitLab logged as failed (resend_failed, GitLab 17.4+), and
// lists the egg's pending jobs through the Jobs API to serve those whose
// webhook never arrived (pending_jobs).
type Sweep struct {
	Enabled  bool     `json:"enabled"`
	Interval Duration `json:"interval"`
	// NoResend is resend_failed = false, NoPendingJobs pending_jobs =
	// false: the zero values keep both parts on.
	NoResend      bool `json:"no_resend,omitempty"`
	NoPendingJobs bool `json:"no_pending_jobs,omitempty"`
	// WebhookURL is the URL GitLab's project hooks post to
	// (https://<api_gateway.domain>/webhooks/gitlab by default). Empty:
	// the sweep serves pending jobs but leaves hooks alone.
	WebhookURL string `json:"webhook_url,omitempty"`
}

// decodeSweep reads the sweep block; without one the sweep runs every
// minute.
func decodeSweep(a *attrs, gw APIGateway) Sweep {
	sw := Sweep{
		Enabled:    a.boolean("enabled", true),
		Interval:   a.duration("interval", DefaultSweepInterval, MinSweepInterval, MaxSweepInterval),
		WebhookURL: a.str("webhook_url", ""),
		NoResend:   !a.boolean("resend_failed", true),
		// Without it, only deliveries GitLab made and logged come back.
		NoPendingJobs: !a.boolean("pending_jobs", true),
	}
	if sw.WebhookURL == "" && gw.Domain != "" {
		sw.WebhookURL = "https://" + gw.Domain + "/webhooks/gitlab"
	}
	if a.has("webhook_url") {
		u, err := url.Parse(sw.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			a.errorf("webhook_url", "Invalid webhook URL", "webhook_url is the URL GitLab's hooks post to, such as \"https://gosling.example.com/webhooks/gitlab\".")
		} else if gw.Domain != "" && !strings.EqualFold(u.Hostname(), gw.Domain) {
			*a.diags = append(*a.diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning, Summary: "Webhook URL off the gateway's domain",
				Detail:  fmt.Sprintf("gosling deploy points every project's hook at https://%s/webhooks/gitlab (api_gateway.domain), and the sweep keeps a hook at %s too: each project then has two hooks and GitLab delivers every event twice. Leave webhook_url out to use the domain's URL, or make the two agree.", gw.Domain, sw.WebhookURL),
				Subject: a.rng("webhook_url"),
			})
		}
	}
	return sw
}

// checkImageCredential checks a runner_image_update job's registry login:
// username and password (a secret URI) together, or neither (anonymous),
// and roll_percent between 1 and 100.
func checkImageCredential(p map[string]any, bad func(summary, format string, args ...any)) {
	user, hasUser := p["username"]
	pass, hasPass := p["password"]
	if hasUser != hasPass {
		bad("Incomplete registry login", "Give params.username and params.password together (the password as a secret URI, such as \"vault://ci/registry/password\"), or neither to pull anonymously.")
	}
	if hasUser {
		if s, ok := user.(string); !ok || strings.TrimSpace(s) == "" {
			bad("Invalid parameter", "params.username is the registry user name, a string.")
		}
	}
	if hasPass {
		s, ok := pass.(string)
		if !ok {
			bad("Invalid parameter", "params.password is a secret URI, such as \"vault://ci/registry/password\".")
		} else if _, err := ParseSecretURI(s); err != nil {
			bad("Invalid parameter", "params.password must be a secret URI, never the password itself: %v. Store it in a secret backend and name it here, such as \"vault://ci/registry/password\".", err)
		}
	}
	if v, ok := p["roll_percent"]; ok {
		n, isNum := v.(float64)
		if !isNum || n < 1 || n > 100 || n != float64(int(n)) {
			bad("Invalid parameter", "params.roll_percent is the share of each pool's runners replaced at a time, a whole number from 1 to 100.")
		}
	}
}
