package fly

import (
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

var eggSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "description"},
		{Name: "project"},
		{Name: "project_id"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "gitlab"}, {Type: "runner"}, {Type: "apex"}, {Type: "nadir"}, {Type: "rift"},
	},
}

var bucketSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "description"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "gitlab"}, {Type: "repositories"}, {Type: "runner"}, {Type: "apex"}, {Type: "nadir"}, {Type: "rift"},
	},
}

var gitlabSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "host", Required: true},
		{Name: "flavor"},
		{Name: "insecure"},
		{Name: "token", Required: true},
		{Name: "webhook_secret", Required: true},
	},
}

var repositoriesSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "projects"}, {Name: "group_id"}, {Name: "include_subgroups"},
	},
}

var runnerSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "clouds"}, {Name: "cpu"}, {Name: "memory"}, {Name: "disk"},
		{Name: "max_concurrent"}, {Name: "jobs_per_runner"}, {Name: "tags"}, {Name: "run_untagged"},
		{Name: "image"}, {Name: "expected_job_duration"}, {Name: "env"}, {Name: "module"},
		{Name: "capacity"}, {Name: "capacity_cooldown"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "fallback"}},
}

var poolSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "min"}, {Name: "max"}, {Name: "idle_timeout"}, {Name: "max_cpu"}, {Name: "max_memory"}, {Name: "warm_for"}},
}

var riftSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "enabled"}, {Name: "engine"}, {Name: "cache"}, {Name: "max_age"}, {Name: "endpoint"},
		{Name: "bucket"}, {Name: "access_key"}, {Name: "secret_key"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "mirror"}},
}

var riftMirrorSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "upstream", Required: true}, {Name: "username"}, {Name: "password"}},
}

// eggDecl keeps the source ranges that cross-file checks point at.
type eggDecl struct {
	egg        *Egg
	def        hcl.Range
	projects   []hcl.Range // one per Egg.Projects entry
	groupRange hcl.Range
	clouds     *hcl.Range
	tags       hcl.Range
	cloudsSet  bool
	// runner is the runner block (or the egg's when it has none); cpu and
	// memory point at those attributes when given, and memoryText is the
	// memory as written.
	runner      hcl.Range
	cpu, memory *hcl.Range
	memoryText  string
	// runnerMisspelt is set when the egg has no runner block but a block
	// of an unknown type.
	runnerMisspelt bool
	// expected is expected_job_duration, when given.
	expected *hcl.Range
	// capacity is where the runner's capacity and fallback entries are.
	capacity capacityDecl
}

// Runner clouds, in the order a new egg prefers them.
var runnerClouds = []string{CloudYandex, CloudAWS, CloudLocal}

func (l *loader) decodeEggBlock(b *hcl.Block, kind EggKind) (*eggDecl, hcl.Diagnostics) {
	schema := eggSchema
	if kind == KindBucket {
		schema = bucketSchema
	}
	content, diags := blockContent(b.Body, schema)
	e := &Egg{Name: b.Labels[0], Kind: kind}
	decl := &eggDecl{egg: e, def: b.DefRange}
	if err := validName(e.Name); err != nil {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Invalid egg name",
			Detail: fmt.Sprintf("%v. The name becomes part of runner names and workflow IDs.", err), Subject: b.LabelRanges[0].Ptr(),
		})
	}
	a := newAttrs(l.ctx, content.Attributes, &diags)
	_ = a.str("description", "")

	blocks := singleBlocks(content.Blocks, &diags)
	if g := blocks["gitlab"]; g != nil {
		e.GitLab = l.decodeGitLabBlock(g, &diags)
	} else {
		diags = append(diags, missingBlock(b, "gitlab", `gitlab {
    host           = "gitlab.com"
    token          = "vault://ci/gitlab/api_token"
    webhook_secret = "vault://ci/gitlab/webhook_secret"
  }`))
	}

	switch kind {
	case KindEgg:
		l.decodeEggProject(a, decl, b, &diags)
	case KindBucket:
		if r := blocks["repositories"]; r != nil {
			l.decodeRepositories(r, decl, &diags)
		} else {
			diags = append(diags, missingBlock(b, "repositories", `repositories {
    projects = ["acme/api", "acme/web"]   # or: group_id = 42
  }`))
		}
	}

	var runnerBody *hcl.Block
	if r := blocks["runner"]; r != nil {
		runnerBody = r
	}
	// Without a runner block but with a block the schema does not know,
	// the runner block is probably misspelt ("runer"): its "Did you mean"
	// says so, and the defaults' checks would only mislead.
	decl.runnerMisspelt = runnerBody == nil && hasUnsupportedBlock(diags)
	e.Runner = l.decodeRunnerBlock(runnerBody, decl, &diags)
	var warmFor *hcl.Range
	e.Apex = decodePoolBlock(l.ctx, blocks["apex"], Pool{Min: 0, Max: e.Runner.MaxConcurrent, IdleTimeout: Duration(15 * 60e9)}, &diags, &warmFor)
	e.Nadir = decodePoolBlock(l.ctx, blocks["nadir"], Pool{Min: 0, Max: 0, IdleTimeout: Duration(24 * 3600e9)}, &diags, nil)
	if blocks["nadir"] == nil && e.Runner.Type != RunnerServerless {
		e.Nadir.Max = min(2, e.Runner.MaxConcurrent)
	}
	l.checkPools(e, blocks, &diags)
	checkWarmFor(e, warmFor, &diags)
	if r := blocks["rift"]; r != nil {
		e.Rift = l.decodeRiftBlock(r, e.Name, &diags)
	}
	return decl, diags
}

// singleBlocks indexes blocks by type; each type may appear once.
func singleBlocks(bs hcl.Blocks, diags *hcl.Diagnostics) map[string]*hcl.Block {
	out := map[string]*hcl.Block{}
	for _, b := range bs {
		if prev, dup := out[b.Type]; dup {
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: fmt.Sprintf("Duplicate %s block", b.Type),
				Detail:  fmt.Sprintf("Only one %s block is allowed here; the first one is at %s. Merge them.", b.Type, at(prev.DefRange)),
				Subject: b.DefRange.Ptr(),
			})
			continue
		}
		out[b.Type] = b
	}
	return out
}

func missingBlock(parent *hcl.Block, name, example string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError, Summary: fmt.Sprintf("Missing %s block", name),
		Detail:  fmt.Sprintf("A %s block needs a %s block, such as:\n  %s", parent.Type, name, example),
		Subject: parent.DefRange.Ptr(),
	}
}

func (l *loader) decodeGitLabBlock(b *hcl.Block, diags *hcl.Diagnostics) GitLab {
	content, d := blockContentOf(b, gitlabSchema)
	*diags = append(*diags, d...)
	a := newAttrs(l.ctx, content.Attributes, diags)
	g := GitLab{Host: a.host("host", "")}
	g.Flavor = a.enum("flavor", inferFlavor(g.Host), "saas", "self-managed", "dedicated")
	g.Insecure = a.boolean("insecure", false)
	g.Token = l.secret(a, "token")
	g.WebhookSecret = l.secret(a, "webhook_secret")
	if g.Flavor == "saas" && g.Host != "" && g.Host != "gitlab.com" && a.has("flavor") {
		a.errorf("flavor", "Inconsistent GitLab flavor", "flavor \"saas\" means gitlab.com, but host is %q. Use \"self-managed\" or \"dedicated\".", g.Host)
	}
	return g
}

func inferFlavor(host string) string {
	switch {
	case host == "gitlab.com":
		return "saas"
	case strings.HasSuffix(host, ".gitlab-dedicated.com"):
		return "dedicated"
	}
	return "self-managed"
}

// secret reads a secret attribute and remembers where it was used, so the
// MG cross-check can point at it.
func (l *loader) secret(a *attrs, name string) SecretRef {
	ref := a.secret(name)
	if ref != "" {
		l.secretUses = append(l.secretUses, secretUse{ref: ref, rng: *a.rng(name)})
	}
	return ref
}

func (l *loader) decodeEggProject(a *attrs, decl *eggDecl, b *hcl.Block, diags *hcl.Diagnostics) {
	hasPath, hasID := a.has("project"), a.has("project_id")
	switch {
	case hasPath && hasID:
		// Both are allowed: the ID is authoritative, the path documents it.
	case !hasPath && !hasID:
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Missing project",
			Detail:  "An egg serves one GitLab project: set project = \"group/name\" (path with namespace) or project_id = 1234.",
			Subject: b.DefRange.Ptr(),
		})
		return
	}
	var p ProjectRef
	rng := b.DefRange
	if hasPath {
		p.Path = a.str("project", "")
		rng = *a.rng("project")
		if p.Path != "" {
			if err := validProjectPath(p.Path); err != nil {
				a.errorf("project", "Invalid project path", "%v.", err)
			}
		}
	}
	if hasID {
		p.ID = int64(a.integer("project_id", 0, 1, 1<<62))
		if !hasPath {
			rng = *a.rng("project_id")
		}
	}
	decl.egg.Projects = []ProjectRef{p}
	decl.projects = []hcl.Range{rng}
}

func validProjectPath(p string) error {
	if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || !strings.Contains(p, "/") {
		return fmt.Errorf("%q is not a project path: write it with its namespace, such as \"acme/web-app\"", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" {
			return fmt.Errorf("%q has an empty path segment", p)
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-", c)) {
				return fmt.Errorf("%q holds %q, which GitLab paths cannot hold", p, c)
			}
		}
	}
	return nil
}

func (l *loader) decodeRepositories(b *hcl.Block, decl *eggDecl, diags *hcl.Diagnostics) {
	content, d := blockContent(b.Body, repositoriesSchema)
	*diags = append(*diags, d...)
	a := newAttrs(l.ctx, content.Attributes, diags)
	hasProjects, hasGroup := a.has("projects"), a.has("group_id")
	if hasProjects == hasGroup {
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Projects or group required",
			Detail:  "A repositories block lists projects (projects = [\"acme/api\", 42]) or names a whole group (group_id = 42), not both and not neither.",
			Subject: b.DefRange.Ptr(),
		})
	}
	if hasGroup {
		decl.egg.Group = &GroupRef{
			ID:               int64(a.integer("group_id", 0, 1, 1<<62)),
			IncludeSubgroups: a.boolean("include_subgroups", true),
		}
		decl.groupRange = *a.rng("group_id")
	} else if a.has("include_subgroups") {
		a.errorf("include_subgroups", "Setting without a group", "include_subgroups only applies with group_id.")
	}
	if !hasProjects {
		return
	}
	v, ok := a.value("projects")
	if !ok {
		return
	}
	if !v.Type().IsListType() && !v.Type().IsTupleType() && !v.Type().IsSetType() {
		a.errorf("projects", "Incorrect attribute value type", "projects takes a list of project paths or IDs, such as projects = [\"acme/api\", 42].")
		return
	}
	if v.LengthInt() == 0 {
		a.errorf("projects", "Empty project list", "List at least one project, or use group_id for a whole group.")
	}
	rng := *a.rng("projects")
	elemRanges := listElementRanges(content.Attributes["projects"].Expr, v.LengthInt(), rng)
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, e := it.Element()
		er := elemRanges[i]
		switch {
		case e.IsNull():
			*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Null project", Detail: "Remove the null entry.", Subject: er.Ptr()})
		case e.Type() == cty.String:
			s := e.AsString()
			if err := validProjectPath(s); err != nil {
				*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid project path", Detail: err.Error() + ".", Subject: er.Ptr()})
				continue
			}
			decl.egg.Projects = append(decl.egg.Projects, ProjectRef{Path: s})
			decl.projects = append(decl.projects, er)
		case e.Type() == cty.Number:
			bf := e.AsBigFloat()
			id, acc := bf.Int64()
			if !bf.IsInt() || acc != big.Exact || id < 1 {
				*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid project ID", Detail: "A project ID is a positive whole number.", Subject: er.Ptr()})
				continue
			}
			decl.egg.Projects = append(decl.egg.Projects, ProjectRef{ID: id})
			decl.projects = append(decl.projects, er)
		default:
			*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid project", Detail: "A project is a path with namespace (\"acme/api\") or a numeric ID.", Subject: er.Ptr()})
		}
	}
}

// listElementRanges returns the source range of each element of a list
// expression, or the whole expression's range when it is not a literal list.
func listElementRanges(expr hcl.Expression, n int, whole hcl.Range) []hcl.Range {
	out := make([]hcl.Range, n)
	exprs, d := hcl.ExprList(expr)
	for i := range out {
		out[i] = whole
		if !d.HasErrors() && len(exprs) == n {
			out[i] = exprs[i].Range()
		}
	}
	return out
}

func (l *loader) decodeRunnerBlock(b *hcl.Block, decl *eggDecl, diags *hcl.Diagnostics) Runner {
	var content *hcl.BodyContent
	if b != nil {
		var d hcl.Diagnostics
		content, d = blockContent(b.Body, runnerSchema)
		*diags = append(*diags, d...)
	} else {
		content = &hcl.BodyContent{Attributes: hcl.Attributes{}}
	}
	a := newAttrs(l.ctx, content.Attributes, diags)
	// The memory as written: checkServerless explains decimal sizes.
	memory, memoryText := a.sizeText("memory", 4*GiB, 128*MiB, 512*GiB)
	r := Runner{
		Type:                a.enum("type", RunnerAuto, RunnerAuto, RunnerServerless, RunnerVM),
		Clouds:              a.enumList("clouds", nil, runnerClouds...),
		CPU:                 a.number("cpu", 2, 0.05, 64),
		Memory:              memory,
		Disk:                a.size("disk", 20*GiB, 1*GiB, 4*TiB),
		MaxConcurrent:       a.integer("max_concurrent", 10, 1, 1000),
		JobsPerRunner:       a.integer("jobs_per_runner", 1, 1, 64),
		Tags:                a.strings("tags"),
		RunUntagged:         a.boolean("run_untagged", false),
		Image:               a.str("image", "alpine:3.20"),
		ExpectedJobDuration: a.duration("expected_job_duration", Duration(30*60e9), Duration(60e9), Duration(72*3600e9)),
		Env:                 a.env("env"),
		Module:              a.str("module", ""),
		Capacity:            a.enum("capacity", CapacityOnDemand, Capacities...),
		CapacityCooldown:    a.duration("capacity_cooldown", DefaultCapacityCooldown, 0, Duration(24*3600e9)),
	}
	if r.CapacityCooldown == 0 {
		r.CapacityCooldown = -1
	}
	decl.capacity.capacity = a.rng("capacity")
	r.Fallback = l.decodeFallbackBlocks(content.Blocks.OfType("fallback"), decl, diags)
	if r.Tags == nil {
		r.Tags = []string{}
	}
	decl.cloudsSet = a.has("clouds")
	decl.clouds = a.rng("clouds")
	if n, ok := a.rawLength("clouds"); ok && n == 0 {
		a.errorf("clouds", "Empty cloud list", "List the clouds in order of preference, such as clouds = [\"yandex\", \"aws\"], or leave clouds out to use MotherGoose's cloud.")
	}
	seen := map[string]bool{}
	for _, t := range r.Tags {
		if t == "" || strings.TrimSpace(t) != t || strings.Contains(t, ",") {
			a.errorf("tags", "Invalid tag", "Tags are non-empty, have no surrounding spaces and no commas; got %q.", t)
		}
		if seen[t] {
			a.errorf("tags", "Duplicate tag", "Tag %q is listed twice.", t)
		}
		seen[t] = true
	}
	if rng := a.rng("tags"); rng != nil {
		decl.tags = *rng
	} else if b != nil {
		decl.tags = b.DefRange
	} else {
		decl.tags = decl.def
	}
	if !r.RunUntagged && len(r.Tags) == 0 && !decl.runnerMisspelt {
		rng := decl.tags
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Runner can never take a job",
			Detail:  "This runner has no tags and does not run untagged jobs, so no job can ever match it. Add tags (tags = [\"docker\"]) or set run_untagged = true.",
			Subject: rng.Ptr(),
		})
	}
	decl.runner, decl.cpu, decl.memory, decl.expected = decl.def, a.rng("cpu"), a.rng("memory"), a.rng("expected_job_duration")
	if b != nil {
		decl.runner = b.DefRange
	}
	decl.memoryText = memoryText
	if r.Type == RunnerServerless && r.ExpectedJobDuration.D() > MaxServerlessRun {
		a.errorf("expected_job_duration", "Too long for serverless", "Serverless runners live at most %s, but jobs are expected to take %s. Use type = \"vm\" or \"auto\".", Duration(MaxServerlessRun), r.ExpectedJobDuration)
	}
	return r
}

// shapeRange is where a shape error on field (cpu or memory) points: the
// attribute when it is written, else the runner block.
func (d *eggDecl) shapeRange(field string) hcl.Range {
	switch {
	case field == "cpu" && d.cpu != nil:
		return *d.cpu
	case field == "memory" && d.memory != nil:
		return *d.memory
	}
	return d.runner
}

// checkServerless checks a serverless runner's cpu and memory against the
// sizes each of its clouds makes, once its clouds are known, and records the
// shape of every cloud where its runners are serverless: all of them for
// type serverless, those where a shape fits for auto.
func checkServerless(d *eggDecl) hcl.Diagnostics {
	r := &d.egg.Runner
	r.Serverless = nil
	var diags hcl.Diagnostics
	report := func(se *ShapeError) {
		rng := d.shapeRange(se.Field)
		detail := fmt.Sprintf("On %s: %v", se.Cloud, se)
		if se.Field == "memory" && decimalSize(d.memoryText) {
			detail += fmt.Sprintf(" (%q counts in powers of 1000: it is %s, %s.)", d.memoryText, inMiB(r.Memory), inGiB(r.Memory))
		}
		detail += " Or use type = \"auto\" (VMs where no serverless size fits) or \"vm\"."
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Not a serverless size", Detail: detail, Subject: rng.Ptr()})
	}
	for _, c := range r.Clouds {
		k := r.kindOn(c, false)
		if k.Kind == RunnerServerless && k.Shape != nil {
			r.Serverless = append(r.Serverless, *k.Shape)
			if c == CloudYandex && r.ServerlessDeadline() > YandexShortRun {
				diags = append(diags, yandexLongLived(d))
			}
		}
		if r.Type == RunnerAuto && k.Kind == RunnerVM && decimalSize(d.memoryText) && d.memory != nil {
			// "4GB" where "4GiB" was meant: say so rather than quietly making VMs.
			bin := strings.TrimSuffix(strings.TrimSpace(d.memoryText), "B") + "iB"
			if m, err := ParseSize(bin); err == nil {
				alt := *r
				alt.Memory = m
				if ak := alt.kindOn(c, false); ak.Kind == RunnerServerless {
					diags = append(diags, &hcl.Diagnostic{
						Severity: hcl.DiagWarning, Summary: "Decimal size rules out serverless",
						Detail: fmt.Sprintf("%q counts in powers of 1000: it is %s, %s, which no %s size takes, so type = \"auto\" makes VMs on %s. "+
							"With memory = %q its runners would be serverless there (%s).", d.memoryText, inMiB(r.Memory), inGiB(r.Memory), ak.Shape.Service, c, bin, ak.Shape),
						Subject: d.memory,
					})
				}
			}
		}
		if r.Type != RunnerServerless {
			continue
		}
		_, err := r.ServerlessShapeOn(c)
		var se *ShapeError
		if !errors.As(err, &se) {
			continue
		}
		report(se)
		// Serverless Containers size memory apart from cores: say both.
		if se.Field == "cpu" && c == CloudYandex {
			if _, err := ServerlessShapeFor(c, 1, r.Memory); errors.As(err, &se) && se.Field == "memory" {
				report(se)
			}
		}
	}
	return diags
}

// yandexLongLived warns that an egg's Serverless Containers would need an
// execution timeout over YandexShortRun, which only Yandex's long-lived
// containers (a Preview) take.
func yandexLongLived(d *eggDecl) *hcl.Diagnostic {
	r := d.egg.Runner
	rng := d.runner
	if d.expected != nil {
		rng = *d.expected
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagWarning, Summary: "Long-lived Serverless Container (Preview)",
		Detail: fmt.Sprintf("Jobs of %q are expected to take %s, so its Serverless Containers on yandex get an execution timeout of %s. "+
			"Yandex takes a timeout over %s only for long-lived containers, a Preview feature that the folder must have access to. "+
			"Set expected_job_duration = \"10m\" or less for generally available containers, or type = \"vm\".",
			d.egg.Name, r.ExpectedJobDuration, Duration(r.ServerlessDeadline()), Duration(YandexShortRun)),
		Subject: rng.Ptr(),
	}
}

// decimalSize tells whether a size is written in powers of 1000 ("4GB").
func decimalSize(s string) bool {
	t := strings.TrimSpace(s)
	for _, u := range []string{"KB", "MB", "GB", "TB"} {
		if strings.HasSuffix(t, u) {
			return true
		}
	}
	return false
}

// inGiB writes a size in GiB with two decimals.
func inGiB(s Size) string {
	return strconv.FormatFloat(float64(s)/float64(GiB), 'f', 2, 64) + "GiB"
}

// decodePoolBlock decodes an apex or nadir block. warmFor, for the apex
// block, receives the range of its warm_for; nadir takes none.
func decodePoolBlock(ctx *hcl.EvalContext, b *hcl.Block, def Pool, diags *hcl.Diagnostics, warmFor **hcl.Range) Pool {
	if b == nil {
		return def
	}
	content, d := blockContent(b.Body, poolSchema)
	*diags = append(*diags, d...)
	a := newAttrs(ctx, content.Attributes, diags)
	p := Pool{
		Min:         a.integer("min", def.Min, 0, 1000),
		Max:         a.integer("max", def.Max, 0, 1000),
		IdleTimeout: a.duration("idle_timeout", def.IdleTimeout, Duration(60e9), Duration(30*24*3600e9)),
		MaxCPU:      a.number("max_cpu", 0, 0, 64000),
		MaxMemory:   a.size("max_memory", 0, 0, 512*1024*GiB),
	}
	if rng := a.rng("warm_for"); rng != nil {
		if warmFor == nil {
			a.errorf("warm_for", "warm_for belongs in apex", "warm_for says how long a runner promoted from Nadir ahead of announced jobs waits for one; move it to the apex block.")
		} else {
			p.WarmFor = a.duration("warm_for", 0, minWarmFor, maxWarmFor)
			*warmFor = rng
		}
	}
	if p.Min > p.Max {
		rng := a.rng("min")
		if rng == nil {
			rng = b.DefRange.Ptr()
		}
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Minimum above maximum",
			Detail:  fmt.Sprintf("The %s pool's min (%d) is greater than its max (%d).", b.Type, p.Min, p.Max),
			Subject: rng,
		})
	}
	return p
}

func (l *loader) checkPools(e *Egg, blocks map[string]*hcl.Block, diags *hcl.Diagnostics) {
	if ab := blocks["apex"]; ab != nil && e.Apex.Max > e.Runner.MaxConcurrent {
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Apex pool larger than the egg allows",
			Detail:  fmt.Sprintf("apex.max is %d but runner.max_concurrent is %d. Raise max_concurrent or lower apex.max.", e.Apex.Max, e.Runner.MaxConcurrent),
			Subject: ab.DefRange.Ptr(),
		})
	}
	for _, np := range []struct {
		name string
		p    Pool
	}{{"apex", e.Apex}, {"nadir", e.Nadir}} {
		name, p := np.name, np.p
		b := blocks[name]
		if b == nil {
			continue
		}
		if p.MaxCPU > 0 && p.MaxCPU < e.Runner.CPU || p.MaxMemory > 0 && p.MaxMemory < e.Runner.Memory {
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Pool too small for one runner",
				Detail:  fmt.Sprintf("The %s pool's max_cpu/max_memory (%s vCPU, %s) cannot hold one runner of %s vCPU and %s. Raise them or remove them.", name, fmtNum(p.MaxCPU), p.MaxMemory, fmtNum(e.Runner.CPU), e.Runner.Memory),
				Subject: b.DefRange.Ptr(),
			})
		}
	}
	if nb := blocks["nadir"]; nb != nil && e.Runner.Type == RunnerServerless && e.Nadir.Max > 0 {
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Serverless runners cannot be dormant",
			Detail:  "The Nadir pool holds stopped VMs; a serverless runner is made per job and cannot be stopped. Remove the nadir block or use type = \"vm\" or \"auto\".",
			Subject: nb.DefRange.Ptr(),
		})
	}
}

// apex.warm_for bounds.
const (
	minWarmFor = Duration(10e9)
	maxWarmFor = Duration(3600e9)
)

// checkWarmFor checks apex.warm_for against the runners it would warm: a
// serverless egg has no Nadir runners to promote (an error), and a pool
// whose Nadir holds none promotes nothing (a warning).
func checkWarmFor(e *Egg, rng *hcl.Range, diags *hcl.Diagnostics) {
	if rng == nil || e.Apex.WarmFor <= 0 {
		return
	}
	switch {
	case e.Runner.Type == RunnerServerless:
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Serverless runners cannot be warmed",
			Detail:  "warm_for promotes stopped (Nadir) VMs ahead of announced jobs; a serverless runner is made per job. Remove warm_for, or use type = \"vm\" with a nadir block.",
			Subject: rng,
		})
	case e.Nadir.Max == 0:
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning, Summary: "Nothing to warm",
			Detail:  fmt.Sprintf("warm_for = %q promotes Nadir runners ahead of announced jobs, but nadir.max is 0. Add a nadir block (nadir { min = 1  max = 2 }) or remove warm_for.", e.Apex.WarmFor),
			Subject: rng,
		})
	}
}

// Rift defaults and bounds.
const (
	DefaultRiftMaxAge = Duration(7 * 24 * 3600e9)
	minRiftMaxAge     = Duration(3600e9)
	maxRiftMaxAge     = Duration(365 * 24 * 3600e9)
)

func (l *loader) decodeRiftBlock(b *hcl.Block, egg string, diags *hcl.Diagnostics) *RiftSpec {
	content, d := blockContent(b.Body, riftSchema)
	*diags = append(*diags, d...)
	a := newAttrs(l.ctx, content.Attributes, diags)
	r := &RiftSpec{
		Enabled:  a.boolean("enabled", true),
		Engine:   a.enum("engine", "docker", "docker", "podman", "nerdctl"),
		Cache:    a.size("cache", 20*GiB, 1*GiB, 16*TiB),
		MaxAge:   a.duration("max_age", DefaultRiftMaxAge, minRiftMaxAge, maxRiftMaxAge),
		Endpoint: a.str("endpoint", ""),
		Bucket:   a.str("bucket", ""),
	}
	switch {
	case a.has("bucket"):
		if err := ValidBucketName(r.Bucket); err != nil {
			a.errorf("bucket", "Invalid bucket name", "%v.", err)
		}
	case ValidBucketName(egg) == nil:
		r.Bucket = egg
	default:
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Invalid bucket name",
			Detail:  fmt.Sprintf("The cache bucket is named after the egg, but %q is not an S3 bucket name (3 to 63 characters). Name it: bucket = \"%s-cache\".", egg, egg),
			Subject: b.DefRange.Ptr(),
		})
	}
	if a.has("access_key") {
		r.AccessKey = a.str("access_key", "")
		if strings.Contains(r.AccessKey, "://") {
			if ref, ok := a.checkSecret("access_key", r.AccessKey); ok {
				l.secretUses = append(l.secretUses, secretUse{ref: ref, rng: *a.rng("access_key")})
			}
		} else if r.AccessKey == "" || strings.ContainsAny(r.AccessKey, " /:") {
			a.errorf("access_key", "Invalid access key", "An access key ID is a word such as \"GOSLINGWEB01\" (no spaces, slashes or colons), or a secret URI holding one.")
		}
	}
	if a.has("secret_key") {
		r.SecretKey = l.secret(a, "secret_key")
	}
	if a.has("access_key") != a.has("secret_key") {
		name := "access_key" // the one that is set
		if a.has("secret_key") {
			name = "secret_key"
		}
		a.errorf(name, "Incomplete cache credentials", "Set both access_key and secret_key, or neither (Rift then derives a pair for the egg from its own key).")
	}
	blocks := singleBlocks(content.Blocks, diags)
	if m := blocks["mirror"]; m != nil {
		r.Mirror = l.decodeRiftMirror(m, diags)
	}
	return r
}

func (l *loader) decodeRiftMirror(b *hcl.Block, diags *hcl.Diagnostics) *RiftMirror {
	content, d := blockContentOf(b, riftMirrorSchema)
	*diags = append(*diags, d...)
	a := newAttrs(l.ctx, content.Attributes, diags)
	m := &RiftMirror{Upstream: a.str("upstream", ""), Username: a.str("username", "")}
	if a.has("upstream") {
		if u, err := url.Parse(m.Upstream); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			a.errorf("upstream", "Invalid registry URL", "upstream is a registry's base URL, such as \"https://registry-1.docker.io\" (scheme and host, no path); got %q.", m.Upstream)
		}
		m.Upstream = strings.TrimSuffix(m.Upstream, "/")
	}
	if a.has("password") {
		m.Password = l.secret(a, "password")
		if !a.has("username") {
			a.errorf("password", "Password without a username", "Set username too: the upstream registry is logged in to with both.")
		}
	}
	return m
}

// ValidBucketName checks the S3 bucket naming rules Rift's cache buckets
// follow: 3 to 63 characters, lower-case letters, digits, dots and dashes,
// starting and ending with a letter or digit (AWS, "Bucket naming rules").
func ValidBucketName(s string) error {
	if len(s) < 3 || len(s) > 63 {
		return fmt.Errorf("%q must be 3 to 63 characters", s)
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(s)-1 || c != '-' && c != '.') {
			return fmt.Errorf("%q may only hold lower-case letters, digits, dots and inner dashes", s)
		}
	}
	return nil
}
