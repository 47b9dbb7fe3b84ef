package fly

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// crossCheck finds problems that no single file shows: duplicate names,
// projects claimed twice, tags no runner has, and references to clouds and
// secret backends that MotherGoose does not configure.
func (l *loader) crossCheck(eggs []*eggDecl, jobs []*jobDecl, mg *mgDecl) hcl.Diagnostics {
	var diags hcl.Diagnostics
	errAt := func(rng hcl.Range, summary, format string, args ...any) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: rng.Ptr()})
	}

	// Egg names are unique across eggs and buckets.
	byName := make(map[string]*eggDecl, len(eggs))
	for _, e := range eggs {
		if prev, dup := byName[e.egg.Name]; dup {
			errAt(e.def, "Duplicate egg name", "%q is already the name of the %s at %s. Egg names are unique across the Nest; rename one of them.", e.egg.Name, prev.egg.Kind, at(prev.def))
			continue
		}
		byName[e.egg.Name] = e
	}
	jobNames := map[string]*jobDecl{}
	for _, j := range jobs {
		if prev, dup := jobNames[j.job.Name]; dup {
			errAt(j.def, "Duplicate job name", "%q is already the name of the job at %s; rename one of them.", j.job.Name, at(prev.def))
			continue
		}
		jobNames[j.job.Name] = j
	}

	// A project or group belongs to one egg only: its jobs must have one home.
	type claim struct {
		egg *eggDecl
		rng hcl.Range
	}
	// A project by ID or by path, or a group, on one GitLab host.
	type claimKey struct {
		host, kind, path string
		id               int64
	}
	projects := 0
	for _, e := range eggs {
		projects += len(e.egg.Projects)
	}
	claims := make(map[claimKey]claim, projects)
	for _, e := range eggs {
		for i, p := range e.egg.Projects {
			var keys [2]claimKey
			n := 0
			if p.ID != 0 {
				keys[n] = claimKey{host: e.egg.GitLab.Host, kind: "id", id: p.ID}
				n++
			}
			if p.Path != "" {
				keys[n] = claimKey{host: e.egg.GitLab.Host, kind: "path", path: strings.ToLower(p.Path)}
				n++
			}
			for _, k := range keys[:n] {
				if prev, dup := claims[k]; dup {
					where := fmt.Sprintf("%s %q at %s", prev.egg.egg.Kind, prev.egg.egg.Name, at(prev.rng))
					if prev.egg == e {
						where = fmt.Sprintf("this %s already, at %s", e.egg.Kind, at(prev.rng))
					}
					errAt(e.projects[i], "Project claimed twice", "Project %s on %s is already served by %s. A project's jobs go to one egg: remove it from one of them.", p, e.egg.GitLab.Host, where)
					break
				}
				claims[k] = claim{e, e.projects[i]}
			}
		}
		if g := e.egg.Group; g != nil {
			k := claimKey{host: e.egg.GitLab.Host, kind: "group", id: g.ID}
			if prev, dup := claims[k]; dup {
				errAt(e.groupRange, "Group claimed twice", "Group %d on %s is already served by %s %q at %s; remove it from one of them.", g.ID, e.egg.GitLab.Host, prev.egg.egg.Kind, prev.egg.egg.Name, at(prev.rng))
			} else {
				claims[k] = claim{e, e.groupRange}
			}
		}
	}

	// The Nest repository's hook secret is its own: with an egg's, that
	// egg's secret could make MotherGoose apply the Nest.
	if mg != nil && mg.nestSecret != nil {
		for _, e := range eggs {
			if e.egg.GitLab.WebhookSecret == mg.mg.Nest.WebhookSecret {
				errAt(*mg.nestSecret, "Nest webhook secret shared with an egg", "nest.webhook_secret is %s, the webhook secret of %s %q too: whoever holds an egg's secret could then make MotherGoose apply the Nest. Give the Nest repository's hook a secret of its own.", mg.mg.Nest.WebhookSecret, e.egg.Kind, e.egg.Name)
				break
			}
		}
	}

	// Clouds: an egg's clouds default to MotherGoose's, and each needs a provider.
	if mg != nil {
		for _, e := range eggs {
			if !e.cloudsSet {
				e.egg.Runner.Clouds = []string{mg.mg.Cloud}
			}
			for _, c := range e.egg.Runner.Clouds {
				if _, ok := mg.mg.Providers[c]; ok {
					continue
				}
				rng := e.def
				if e.clouds != nil {
					rng = *e.clouds
				}
				errAt(rng, "Cloud not configured", "Egg %q runs on %s, but %s configures no provider %q. Add provider %q { ... } there or remove %s from clouds.", e.egg.Name, c, mg.mg.File, c, c, c)
			}
		}
	}

	// Capacity types and fallback entries depend on the clouds, now known.
	var providers map[string]Provider
	if mg != nil {
		providers = mg.mg.Providers
	}
	for _, e := range eggs {
		diags = append(diags, checkCapacity(e, providers)...)
	}

	// Serverless and VM sizes depend on the clouds, now known.
	for _, e := range eggs {
		diags = append(diags, checkServerless(e)...)
		diags = append(diags, checkVM(e)...)
	}

	// EC2 instances and Fargate tasks start in the aws provider's subnets.
	if mg != nil {
		if rng, ok := mg.providers[CloudAWS]; ok && len(mg.mg.Providers[CloudAWS].Subnets) == 0 {
			var need []string
			for _, e := range eggs {
				if e.egg.Runner.needsSubnets() {
					need = append(need, e.egg.Name)
				}
			}
			if len(need) > 0 {
				errAt(rng, "No subnets for AWS runners", "Runners of %s start as EC2 instances or Fargate tasks, which AWS places in a subnet, but provider \"aws\" names none. Set subnets = [\"subnet-...\"] (private subnets with a route to GitLab).", quoteNames(need))
			}
		}
	}

	// Secret URIs must use a backend MotherGoose can reach.
	if mg != nil {
		for _, u := range l.secretUses {
			scheme := u.ref.Scheme()
			if _, ok := mg.mg.Secrets.Backends[scheme]; ok {
				continue
			}
			errAt(u.rng, "Secret backend not configured", "This secret is read from %s, but %s configures no %s backend. Add `%s { ... }` to its secrets block.", scheme, mg.mg.File, scheme, blockForScheme(scheme))
		}
	}

	// Jobs: their runners must exist and their needs must be met. The egg
	// names and the tag index are built once for all jobs, not per job.
	var names []string
	eggNames := func() []string {
		if names == nil {
			names = sortedEggNames(eggs)
		}
		return names
	}
	var tags eggTags
	for _, j := range jobs {
		r := j.job.Runner
		if r.Egg != "" && j.runnerEgg != nil {
			if _, ok := byName[r.Egg]; !ok {
				errAt(*j.runnerEgg, "Unknown egg", "Job %q runs on egg %q, which the Nest does not declare.%s", j.job.Name, r.Egg, didYouMean(r.Egg, eggNames()))
			}
		}
		if len(r.Tags) > 0 && tags == nil {
			tags = indexEggTags(eggs)
		}
		if len(r.Tags) > 0 && j.tags != nil && !tags.anyHasAll(r.Tags) {
			errAt(*j.tags, "No runner has these tags", "Job %q needs a runner with tags %s, but no egg's runners carry all of them. Add the tags to an egg or change the job's tags.", j.job.Name, quoteList(r.Tags))
		}
		if list, ok := j.job.Params["eggs"].([]any); ok && j.paramEggs != nil {
			for _, x := range list {
				if name, ok := x.(string); ok {
					if _, known := byName[name]; !known {
						errAt(*j.paramEggs, "Unknown egg", "params.eggs names %q, which the Nest does not declare.%s", name, didYouMean(name, eggNames()))
					}
				}
			}
		}
		if mg == nil {
			continue
		}
		if j.job.Kind == JobSecretRotation {
			backend := mg.mg.Secrets.Backend
			if b, ok := j.job.Params["backend"].(string); ok {
				backend = b
			}
			if _, ok := mg.mg.Secrets.Backends[backend]; !ok || backend == "" {
				rng := j.kind
				if j.backend != nil {
					rng = *j.backend
				}
				what := "a secret backend"
				if backend != "" {
					what = fmt.Sprintf("the %s backend", backend)
				}
				errAt(rng, "Secret backend required", "A secret_rotation job writes new runner tokens to %s, but %s does not define it. Add a secrets block with a backend to %s.", what, mg.mg.File, mg.mg.File)
			}
		}
	}
	return diags
}

func sortedEggNames(eggs []*eggDecl) []string {
	names := make([]string, 0, len(eggs))
	for _, e := range eggs {
		names = append(names, e.egg.Name)
	}
	sort.Strings(names)
	return names
}

// eggTags maps each runner tag to the eggs whose runners carry it, by their
// index in the eggs slice, in ascending order.
type eggTags map[string][]int

func indexEggTags(eggs []*eggDecl) eggTags {
	idx := eggTags{}
	for i, e := range eggs {
		for _, t := range e.egg.Runner.Tags {
			if l := idx[t]; len(l) == 0 || l[len(l)-1] != i {
				idx[t] = append(l, i)
			}
		}
	}
	return idx
}

// anyHasAll tells whether one egg's runners carry every tag: it intersects
// the tags' egg lists, so it costs the eggs that carry the tags, not every
// egg of the Nest.
func (idx eggTags) anyHasAll(tags []string) bool {
	common := idx[tags[0]]
	for _, t := range tags[1:] {
		if len(common) == 0 {
			return false
		}
		common = intersectSorted(common, idx[t])
	}
	return len(common) > 0
}

func intersectSorted(a, b []int) []int {
	var out []int
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}
