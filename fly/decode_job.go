package fly

import (
	"fmt"
	"time"
	_ "time/tzdata" // time zones of job schedules, even on hosts without tzdata

	"github.com/hashicorp/hcl/v2"
)

var jobSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "description"},
		{Name: "kind", Required: true},
		{Name: "schedule", Required: true},
		{Name: "timezone"},
		{Name: "enabled"},
		{Name: "timeout"},
		{Name: "params"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "runner"}},
}

var jobRunnerSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "egg"}, {Name: "tags"}, {Name: "image"}, {Name: "elevated"}},
}

var jobKinds = []string{JobSecretRotation, JobNestUpdate, JobRunnerImageUpdate, JobCustom}

// jobDecl keeps the source ranges that cross-file checks point at.
type jobDecl struct {
	job       *Job
	def       hcl.Range
	kind      hcl.Range
	runnerEgg *hcl.Range
	tags      *hcl.Range
	paramEggs *hcl.Range
	backend   *hcl.Range
}

func (l *loader) decodeJobBlock(b *hcl.Block) (*jobDecl, hcl.Diagnostics) {
	content, diags := blockContentOf(b, jobSchema)
	j := &Job{Name: b.Labels[0]}
	decl := &jobDecl{job: j, def: b.DefRange, kind: b.DefRange}
	if err := validName(j.Name); err != nil {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Invalid job name",
			Detail: fmt.Sprintf("%v. The name becomes the Temporal Schedule ID.", err), Subject: b.LabelRanges[0].Ptr(),
		})
	}
	a := newAttrs(l.ctx, content.Attributes, &diags)
	_ = a.str("description", "")
	j.Kind = a.enum("kind", "", jobKinds...)
	if r := a.rng("kind"); r != nil {
		decl.kind = *r
	}
	var sched CronSchedule
	j.Schedule, sched = a.cron("schedule", "")
	j.Timezone = a.str("timezone", "UTC")
	if a.has("timezone") {
		if err := CheckTimeZone(j.Timezone); err != nil {
			a.errorf("timezone", zoneSummary(err), "%v.", err)
		}
	}
	// Temporal refuses a schedule whose CRON_TZ= prefix and time zone differ.
	if sched.HasTimeZone {
		switch {
		case !a.has("timezone"):
			j.Timezone = sched.TimeZone
		case j.Timezone != sched.TimeZone:
			a.errorf("timezone", "Conflicting time zones", "The schedule names the time zone %q in its prefix and timezone says %q; Temporal refuses a schedule with two. Keep one of them.", sched.TimeZone, j.Timezone)
		}
	}
	j.Enabled = a.boolean("enabled", true)
	j.Timeout = a.duration("timeout", Duration(time.Hour), Duration(time.Minute), Duration(24*time.Hour))
	j.Params = a.params("params")

	blocks := singleBlocks(content.Blocks, &diags)
	if rb := blocks["runner"]; rb != nil {
		rc, d := rb.Body.Content(jobRunnerSchema)
		diags = append(diags, d...)
		ra := newAttrs(l.ctx, rc.Attributes, &diags)
		j.Runner = JobRunner{
			Egg:      ra.str("egg", ""),
			Tags:     ra.strings("tags"),
			Image:    ra.str("image", ""),
			Elevated: ra.boolean("elevated", j.Kind == JobCustom),
		}
		decl.runnerEgg = ra.rng("egg")
		decl.tags = ra.rng("tags")
		if ra.has("egg") && ra.has("tags") {
			ra.errorf("tags", "Conflicting runner selection", "A job's runner is chosen by egg or by tags, not both.")
		}
		if !ra.has("egg") && !ra.has("tags") {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Runner selection required",
				Detail:  "Say where the job runs: egg = \"platform\" (that egg's runners) or tags = [\"gosling-admin\"] (any egg whose runners have all these tags).",
				Subject: rb.DefRange.Ptr(),
			})
		}
	} else if j.Kind == JobCustom {
		diags = append(diags, missingBlock(b, "runner", `runner {
    egg      = "platform"
    elevated = true
  }`))
	}
	l.checkJobParams(decl, content.Attributes["params"], &diags)
	return decl, diags
}

// checkJobParams checks the parameters each job kind understands.
func (l *loader) checkJobParams(decl *jobDecl, at *hcl.Attribute, diags *hcl.Diagnostics) {
	j := decl.job
	var rng *hcl.Range
	if at != nil {
		rng = at.Expr.Range().Ptr()
	} else {
		rng = decl.def.Ptr()
	}
	bad := func(summary, format string, args ...any) {
		*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: rng})
	}
	allowed := map[string][]string{
		JobSecretRotation:    {"eggs", "backend", "grace_period"},
		JobNestUpdate:        {"ref", "reload"},
		JobRunnerImageUpdate: {"image", "eggs", "roll_percent", "username", "password"},
		JobCustom:            {"script", "command", "variables"},
	}[j.Kind]
	if allowed == nil {
		return
	}
	for k := range j.Params {
		ok := false
		for _, x := range allowed {
			ok = ok || x == k
		}
		if !ok {
			bad("Unknown parameter", "A %s job does not take %q; it takes %s.%s", j.Kind, k, quoteList(allowed), didYouMean(k, allowed))
		}
	}
	if v, ok := j.Params["eggs"]; ok {
		list, isList := v.([]any)
		if !isList {
			bad("Invalid parameter", "params.eggs is a list of egg names, such as eggs = [\"web-app\"].")
		}
		for _, x := range list {
			if _, isStr := x.(string); !isStr {
				bad("Invalid parameter", "params.eggs is a list of egg names, such as eggs = [\"web-app\"].")
				break
			}
		}
		decl.paramEggs = rng
	}
	if v, ok := j.Params["backend"]; ok {
		s, isStr := v.(string)
		if !isStr || !isSecretScheme(s) {
			bad("Invalid parameter", "params.backend names a secret backend: %s.", quoteList(SecretSchemes))
		}
		decl.backend = rng
	}
	switch j.Kind {
	case JobRunnerImageUpdate:
		if s, _ := j.Params["image"].(string); s == "" {
			bad("Missing parameter", "A runner_image_update job needs params.image, such as params = { image = \"registry.example.com/runner:17.5\" }.")
		}
		checkImageCredential(j.Params, bad)
	case JobCustom:
		_, hasScript := j.Params["script"]
		_, hasCommand := j.Params["command"]
		if hasScript == hasCommand {
			bad("Missing parameter", "A custom job needs exactly one of params.script (a shell script) or params.command (a list of arguments).")
		}
	}
}

func isSecretScheme(s string) bool {
	for _, x := range SecretSchemes {
		if x == s {
			return true
		}
	}
	return false
}
