package gitlabtest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// CIConfigPath is where GitLab reads a project's pipeline configuration.
const CIConfigPath = ".gitlab-ci.yml"

// defaultStages are GitLab's stages when .gitlab-ci.yml names none.
var defaultStages = []string{".pre", "build", "test", "deploy", ".post"}

// CIConfig is what the test server understands of a .gitlab-ci.yml.
type CIConfig struct {
	// Stages are the declared stages, with .pre first and .post last as
	// GitLab adds them.
	Stages []string
	// Jobs are in file order, each with its stage, scripts, variables
	// (global ones first, then the job's) and image.
	Jobs []JobSpec
}

// Keywords the test server understands; anything else is refused with a
// hint rather than silently ignored.
var (
	ciGlobalKeys  = []string{"stages", "variables", "default", "image", "before_script", "after_script", "cache"}
	ciDefaultKeys = []string{"image", "before_script", "after_script", "tags", "timeout", "cache"}
	ciJobKeys     = []string{"stage", "tags", "script", "before_script", "after_script", "variables", "image", "allow_failure", "timeout", "when", "cache", "rules"}
	ciCacheKeys   = []string{"key", "paths", "untracked", "policy", "when", "fallback_keys", "unprotect"}
	// ciReserved are GitLab's top-level keywords that are not jobs.
	ciReserved = []string{"include", "workflow", "services", "types", "pages:deploy", "spec"}
)

// CIKeywords lists, one line per place, the .gitlab-ci.yml keywords the
// test server understands: the one list `gosling dev pipeline --help`,
// the README and every "unknown keys" error are made from. ciRuleKeys is
// rules.go's.
func CIKeywords() string {
	var b strings.Builder
	for _, l := range []struct {
		where string
		keys  []string
	}{
		{"top level", append(slices.Clone(ciGlobalKeys), "and jobs")},
		{"default:", ciDefaultKeys},
		{"a job", ciJobKeys},
		{"rules:", ciRuleKeys},
		{"cache:", ciCacheKeys},
	} {
		fmt.Fprintf(&b, "%-10s %s\n", l.where, strings.Join(l.keys, ", "))
	}
	return b.String()
}

// ParseCIConfig reads the subset of GitLab's CI/CD YAML syntax
// (docs.gitlab.com/ci/yaml) the test server runs:
//
//	stages: [build, test]            # default .pre, build, test, deploy, .post
//	variables: {KEY: value}          # or KEY: {value: v, description: d}
//	default: {image, before_script, after_script, tags, timeout}
//	image / before_script / after_script at the top level (old style)
//	<job>:                           # names starting with "." are hidden
//	  stage: test                    # test when absent
//	  tags: [docker]
//	  script: "one line" or [lines]  # required
//	  before_script / after_script / variables / image ("name" or {name})
//	  allow_failure: true
//	  timeout: 1h 30m                # or "90 minutes", "3600"
//	  when: on_success               # the only value supported
//	  rules:                         # the first rule that matches decides;
//	    - if: $CI_PIPELINE_SOURCE == "api"  # when none does, the job is left out
//	      when: on_success           # the default; always, never
//	    - if: $JOB && ($A == "x" || $B != null) && $C =~ /^v\d+/i
//	    - when: never                # a rule without if: always matches
//	  cache:                         # a hash or a list of up to 4; also
//	    key: deps-$CI_COMMIT_REF_SLUG  # in default: or at the top level
//	    paths: [vendor/]
//	    untracked: false
//	    policy: pull-push            # pull, push
//	    when: on_success             # on_failure, always
//	    fallback_keys: [deps-main]
//	    unprotect: false
//
// A rule's if: is a CI/CD variable expression
// (docs.gitlab.com/ci/jobs/job_rules/#cicd-variable-expressions): $VAR
// (defined and not empty), ==, != against a 'string', "string", null or
// another $VAR, =~ and !~ against a /regexp/ (RE2, flags i, m, s, U) or a
// variable holding one, && before ||, and parentheses. Rules are kept in
// JobSpec.Rules and evaluated when a pipeline is made (see CreatePipeline).
// Errors read like GitLab's ("jobs:build config should implement the
// script: keyword") and name the unsupported keyword, such as include:, or
// rule key, such as changes:, when the file uses one.
func ParseCIConfig(src []byte) (CIConfig, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return CIConfig{}, fmt.Errorf("invalid YAML: %w", err)
	}
	if len(root.Content) == 0 {
		return CIConfig{}, errors.New("please provide content of .gitlab-ci.yml")
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return CIConfig{}, errors.New("root config should be a hash")
	}

	var (
		cfg         CIConfig
		global      []Variable
		def         ciDefaults
		stagesGiven bool
		jobNodes    [][2]*yaml.Node
	)
	for i := 0; i+1 < len(top.Content); i += 2 {
		key, val := top.Content[i].Value, top.Content[i+1]
		switch {
		case key == "stages":
			if err := val.Decode(&cfg.Stages); err != nil {
				return CIConfig{}, errors.New("stages config should be an array of strings")
			}
			stagesGiven = true
		case key == "variables":
			vars, err := decodeVariables(val)
			if err != nil {
				return CIConfig{}, fmt.Errorf("variables config %w", err)
			}
			global = vars
		case key == "default":
			if err := checkKeys(val, ciDefaultKeys, "default"); err != nil {
				return CIConfig{}, err
			}
			if err := val.Decode(&def); err != nil {
				return CIConfig{}, fmt.Errorf("default config: %w", err)
			}
			if c := mapValue(val, "cache"); c != nil {
				cache, err := decodeCache(c, "default:cache")
				if err != nil {
					return CIConfig{}, err
				}
				def.Cache = &cache
			}
		case key == "image":
			if err := val.Decode(&def.Image); err != nil {
				return CIConfig{}, fmt.Errorf("image config: %w", err)
			}
		case key == "before_script":
			if err := val.Decode(&def.BeforeScript); err != nil {
				return CIConfig{}, fmt.Errorf("before_script config: %w", err)
			}
		case key == "after_script":
			if err := val.Decode(&def.AfterScript); err != nil {
				return CIConfig{}, fmt.Errorf("after_script config: %w", err)
			}
		case key == "cache":
			c, err := decodeCache(val, "cache")
			if err != nil {
				return CIConfig{}, err
			}
			def.Cache = &c
		case slices.Contains(ciReserved, key):
			return CIConfig{}, fmt.Errorf("%s: is not supported by the GitLab test server; it understands %s and jobs (every keyword it reads: gosling dev pipeline --help)", key, strings.Join(ciGlobalKeys, ", "))
		case strings.HasPrefix(key, "."):
			// A hidden job: a template for anchors, never run.
		default:
			jobNodes = append(jobNodes, [2]*yaml.Node{top.Content[i], val})
		}
	}
	if !stagesGiven {
		cfg.Stages = slices.Clone(defaultStages)
	} else {
		cfg.Stages = append(append([]string{".pre"}, slices.DeleteFunc(cfg.Stages, func(s string) bool { return s == ".pre" || s == ".post" })...), ".post")
	}

	for _, kv := range jobNodes {
		spec, err := decodeJob(kv[0].Value, kv[1], def, global, cfg.Stages)
		if err != nil {
			return CIConfig{}, err
		}
		cfg.Jobs = append(cfg.Jobs, spec)
	}
	if len(cfg.Jobs) == 0 {
		return CIConfig{}, errors.New("jobs config should contain at least one visible job")
	}
	return cfg, nil
}

// ciDefaults are the default: keyword's values (or the old top-level ones).
type ciDefaults struct {
	Image        ciImage      `yaml:"image"`
	BeforeScript ciScript     `yaml:"before_script"`
	AfterScript  ciScript     `yaml:"after_script"`
	Tags         []string     `yaml:"tags"`
	Timeout      ciDuration   `yaml:"timeout"`
	Cache        *[]CacheSpec `yaml:"-"`
}

type ciJob struct {
	Stage        string     `yaml:"stage"`
	Tags         []string   `yaml:"tags"`
	Script       ciScript   `yaml:"script"`
	BeforeScript *ciScript  `yaml:"before_script"`
	AfterScript  *ciScript  `yaml:"after_script"`
	Image        *ciImage   `yaml:"image"`
	AllowFailure bool       `yaml:"allow_failure"`
	Timeout      ciDuration `yaml:"timeout"`
	When         string     `yaml:"when"`
}

func decodeJob(name string, node *yaml.Node, def ciDefaults, global []Variable, stages []string) (JobSpec, error) {
	where := "jobs:" + name
	if node.Kind != yaml.MappingNode {
		return JobSpec{}, fmt.Errorf("%s config should be a hash", where)
	}
	if err := checkKeys(node, ciJobKeys, where); err != nil {
		return JobSpec{}, err
	}
	var j ciJob
	if err := node.Decode(&j); err != nil {
		return JobSpec{}, fmt.Errorf("%s config: %w", where, err)
	}
	var cache []CacheSpec
	if def.Cache != nil {
		cache = slices.Clone(*def.Cache)
	}
	if c := mapValue(node, "cache"); c != nil {
		var err error
		if cache, err = decodeCache(c, where+":cache"); err != nil {
			return JobSpec{}, err
		}
	}
	if len(j.Script) == 0 {
		return JobSpec{}, fmt.Errorf("%s config should implement the script: keyword", where)
	}
	if j.Stage == "" {
		j.Stage = "test"
	}
	if !slices.Contains(stages, j.Stage) {
		return JobSpec{}, fmt.Errorf("%s chosen stage %s does not exist; available stages are %s", where, j.Stage, strings.Join(stages, ", "))
	}
	if j.When != "" && j.When != "on_success" {
		return JobSpec{}, fmt.Errorf("%s when: %s is not supported by the GitLab test server; use on_success", where, j.When)
	}
	var rules []Rule
	if r := mapValue(node, "rules"); r != nil {
		var err error
		if rules, err = decodeRules(r, where+":rules"); err != nil {
			return JobSpec{}, err
		}
	}
	spec := JobSpec{
		Name: name, Stage: j.Stage, Tags: j.Tags, Script: j.Script,
		BeforeScript: def.BeforeScript, AfterScript: def.AfterScript, Image: def.Image.Name,
		AllowFailure: j.AllowFailure, Timeout: time.Duration(j.Timeout),
		Variables: slices.Clone(global), Cache: cache, Rules: rules,
	}
	if spec.Tags == nil {
		spec.Tags = def.Tags
	}
	if spec.Timeout == 0 {
		spec.Timeout = time.Duration(def.Timeout)
	}
	if j.BeforeScript != nil {
		spec.BeforeScript = *j.BeforeScript
	}
	if j.AfterScript != nil {
		spec.AfterScript = *j.AfterScript
	}
	if j.Image != nil {
		spec.Image = j.Image.Name
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value != "variables" {
			continue
		}
		vars, err := decodeVariables(node.Content[i+1])
		if err != nil {
			return JobSpec{}, fmt.Errorf("%s variables config %w", where, err)
		}
		spec.Variables = append(spec.Variables, vars...)
	}
	return spec, nil
}

// checkKeys refuses keywords outside known, naming them as GitLab does.
func checkKeys(node *yaml.Node, known []string, where string) error {
	if node.Kind != yaml.MappingNode {
		return fmt.Errorf("%s config should be a hash", where)
	}
	var unknown []string
	for i := 0; i+1 < len(node.Content); i += 2 {
		if k := node.Content[i].Value; k != "<<" && !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%s config contains unknown keys: %s (the GitLab test server understands %s; every keyword it reads: gosling dev pipeline --help)",
			where, strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return nil
}

// decodeVariables reads a variables: hash, in file order. Values are
// scalars or {value: ..., description: ...}.
func decodeVariables(node *yaml.Node) ([]Variable, error) {
	if node.Kind != yaml.MappingNode {
		return nil, errors.New("should be a hash of key value pairs")
	}
	var out []Variable
	for i := 0; i+1 < len(node.Content); i += 2 {
		key, val := node.Content[i].Value, node.Content[i+1]
		v := Variable{Key: key, Public: true}
		switch val.Kind {
		case yaml.ScalarNode:
			v.Value = val.Value
		case yaml.MappingNode:
			var full struct {
				Value       string `yaml:"value"`
				Description string `yaml:"description"`
			}
			if err := val.Decode(&full); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			v.Value = full.Value
		default:
			return nil, fmt.Errorf("variable %s should be a string, a number or a hash with a value: key", key)
		}
		out = append(out, v)
	}
	return out, nil
}

// ciScript is a script: a string, or a list of strings and nested lists.
type ciScript []string

func (s *ciScript) UnmarshalYAML(n *yaml.Node) error {
	var flat []string
	var walk func(*yaml.Node) error
	walk = func(n *yaml.Node) error {
		switch n.Kind {
		case yaml.ScalarNode:
			flat = append(flat, n.Value)
		case yaml.SequenceNode:
			for _, c := range n.Content {
				if err := walk(c); err != nil {
					return err
				}
			}
		case yaml.AliasNode:
			return walk(n.Alias)
		default:
			return fmt.Errorf("line %d: script should be a string or an array of strings", n.Line)
		}
		return nil
	}
	if err := walk(n); err != nil {
		return err
	}
	*s = flat
	return nil
}

// ciImage is image: "name:tag" or {name: "name:tag", ...}.
type ciImage struct{ Name string }

func (i *ciImage) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		i.Name = n.Value
		return nil
	}
	var full struct {
		Name string `yaml:"name"`
	}
	if err := n.Decode(&full); err != nil {
		return fmt.Errorf("line %d: image should be a string or a hash with a name: key", n.Line)
	}
	i.Name = full.Name
	return nil
}

// ciDuration is timeout: in GitLab's human form: "1h 30m", "90 minutes",
// "2 hours 10 minutes" or a number of seconds.
type ciDuration time.Duration

func (d *ciDuration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseCIDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: timeout %q: %w", n.Line, n.Value, err)
	}
	*d = ciDuration(v)
	return nil
}

func parseCIDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	if d, err := time.ParseDuration(strings.ReplaceAll(s, " ", "")); err == nil {
		return d, nil
	}
	units := map[string]time.Duration{
		"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
		"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
		"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	}
	f := strings.Fields(strings.ReplaceAll(s, "and", " "))
	if len(f) == 0 || len(f)%2 != 0 {
		return 0, errors.New(`use a duration such as "1h 30m" or "90 minutes"`)
	}
	var total time.Duration
	for i := 0; i < len(f); i += 2 {
		n, err := strconv.Atoi(f[i])
		u, ok := units[f[i+1]]
		if err != nil || !ok {
			return 0, errors.New(`use a duration such as "1h 30m" or "90 minutes"`)
		}
		total += time.Duration(n) * u
	}
	return total, nil
}

// mapValue is the value of key in a mapping node, nil when absent.
func mapValue(node *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == key {
			return node.Content[i+1]
		}
	}
	return nil
}

// maxCaches is GitLab's limit of cache entries per job.
const maxCaches = 4

// decodeCache reads a cache: value, a hash or a list of up to four
// (docs.gitlab.com/ci/yaml/#cache); an empty one turns the cache off.
func decodeCache(node *yaml.Node, where string) ([]CacheSpec, error) {
	items := []*yaml.Node{node}
	if node.Kind == yaml.SequenceNode {
		items = node.Content
	}
	if len(items) > maxCaches {
		return nil, fmt.Errorf("%s config no more than %d caches can be created", where, maxCaches)
	}
	out := []CacheSpec{}
	for _, it := range items {
		if it.Kind == yaml.MappingNode && len(it.Content) == 0 {
			continue
		}
		if err := checkKeys(it, ciCacheKeys, where); err != nil {
			return nil, err
		}
		if k := mapValue(it, "key"); k != nil && k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s:key config: key:files and key:prefix are not supported by the GitLab test server; give the key as a string", where)
		}
		var c CacheSpec
		if err := it.Decode(&c); err != nil {
			return nil, fmt.Errorf("%s config: %w", where, err)
		}
		switch c.Policy {
		case "", "pull", "push", "pull-push":
		default:
			return nil, fmt.Errorf("%s:policy config should be one of: pull, push, pull-push", where)
		}
		switch c.When {
		case "", "on_success", "on_failure", "always":
		default:
			return nil, fmt.Errorf("%s:when config should be one of: on_success, on_failure, always", where)
		}
		if strings.Contains(c.Key, "/") || strings.Contains(strings.ToUpper(c.Key), "%2F") {
			return nil, fmt.Errorf("%s:key config cannot contain the \"/\" character", where)
		}
		if c.Key == "." || c.Key == ".." {
			return nil, fmt.Errorf("%s:key config cannot be \".\" or \"..\"", where)
		}
		out = append(out, c)
	}
	return out, nil
}
