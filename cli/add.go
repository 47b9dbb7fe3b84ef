package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gosling-ci/gosling/fly"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"
)

// NewCmdAdd builds `gosling add`.
func NewCmdAdd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add <egg|bucket|job> NAME",
		Short: "Add an egg, a bucket or a job to a Nest",
		Long: `Add writes a new, valid fly file from flags. On a terminal, missing answers
are asked for; with --no-input or without a terminal, a missing answer is an
error that names its flag. The Nest is validated after writing, and the file
is removed again if it is what makes the Nest invalid.`,
	}
	cmd.AddCommand(NewCmdAddEgg(f, fly.KindEgg, nil), NewCmdAddEgg(f, fly.KindBucket, nil), NewCmdAddJob(f, nil))
	return cmd
}

// AddEggOptions are the inputs of `gosling add egg` and `gosling add bucket`.
type AddEggOptions struct {
	IO    *IOStreams
	Kind  fly.EggKind
	Dir   string
	Name  string
	Force bool

	Host             string
	Project          string
	ProjectID        int64
	Projects         []string
	GroupID          int64
	IncludeSubgroups bool
	Token            string
	WebhookSecret    string

	Type          string
	Clouds        []string
	CPU           float64
	Memory        string
	Disk          string
	MaxConcurrent int
	Tags          []string
	RunUntagged   bool
	Image         string
	ApexMin       int
	ApexMax       int
	NadirMin      int
	NadirMax      int

	// Set holds the names of the flags given on the command line.
	Set map[string]bool
}

// NewCmdAddEgg builds `gosling add egg` (kind egg) or `gosling add bucket`.
func NewCmdAddEgg(f *Factory, kind fly.EggKind, runF func(*AddEggOptions) error) *cobra.Command {
	opts := &AddEggOptions{IO: f.IO, Kind: kind}
	use, short, example := "egg NAME", "Add an egg: one GitLab project", `  # in a Nest made by gosling init --cloud yandex (its secrets in Lockbox):
  gosling add egg web-app --host gitlab.com --project acme/web-app \
    --token yc-lockbox://e6qexample/gitlab_token --webhook-secret yc-lockbox://e6qexample/webhook \
    --type auto --clouds yandex --cpu 2 --memory 4GiB --tags docker,linux`
	if kind == fly.KindBucket {
		use, short, example = "bucket NAME", "Add an eggsbucket: several projects or a whole group", `  gosling add bucket platform --projects acme/api,acme/web,42 --tags docker \
    --token aws-sm://ci/gitlab/token --webhook-secret aws-sm://ci/gitlab/webhook
  gosling add bucket data --group-id 9001 --tags data --type vm \
    --token vault://ci/gitlab/token --webhook-secret vault://ci/gitlab/webhook`
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			opts.Set = map[string]bool{}
			cmd.Flags().Visit(func(fl *pflagFlag) { opts.Set[fl.Name] = true })
			if runF != nil {
				return runF(opts)
			}
			return addEggRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Dir, "dir", ".", "the Nest's root directory")
	fl.BoolVar(&opts.Force, "force", false, "overwrite an existing file")
	fl.StringVar(&opts.Host, "host", "", "GitLab host: gitlab.com, a self-managed host or a Dedicated tenant")
	if kind == fly.KindEgg {
		fl.StringVar(&opts.Project, "project", "", "project path with namespace, such as acme/web-app")
		fl.Int64Var(&opts.ProjectID, "project-id", 0, "numeric project ID (instead of or with --project)")
	} else {
		fl.StringSliceVar(&opts.Projects, "projects", nil, "projects by path or ID, comma-separated")
		fl.Int64Var(&opts.GroupID, "group-id", 0, "serve every project of this GitLab group")
		fl.BoolVar(&opts.IncludeSubgroups, "include-subgroups", true, "with --group-id, include subgroups' projects")
	}
	fl.StringVar(&opts.Token, "token", "", "secret URI of the GitLab API token (yc-lockbox://, aws-sm://, vault://)")
	fl.StringVar(&opts.WebhookSecret, "webhook-secret", "", "secret URI of the webhook secret")
	fl.StringVar(&opts.Type, "type", fly.RunnerAuto, "runner type: serverless, vm or auto")
	fl.StringSliceVar(&opts.Clouds, "clouds", nil, "clouds in order of preference: yandex, aws, local (default: MotherGoose's cloud)")
	fl.Float64Var(&opts.CPU, "cpu", 2, "vCPUs per runner")
	fl.StringVar(&opts.Memory, "memory", "4GiB", "memory per runner")
	fl.StringVar(&opts.Disk, "disk", "20GiB", "disk per runner")
	fl.IntVar(&opts.MaxConcurrent, "max-concurrent", 10, "most runners running jobs at once")
	fl.StringSliceVar(&opts.Tags, "tags", nil, "runner tags, comma-separated")
	fl.BoolVar(&opts.RunUntagged, "run-untagged", false, "also take jobs without tags")
	fl.StringVar(&opts.Image, "image", "alpine:3.20", "default job image")
	fl.IntVar(&opts.ApexMin, "apex-min", 0, "active runners kept at all times")
	opts.ApexMax, opts.NadirMax = -1, -1
	fl.Var(unsetInt{&opts.ApexMax}, "apex-max", "most active runners (default: --max-concurrent)")
	fl.IntVar(&opts.NadirMin, "nadir-min", 0, "dormant runners kept ready to resume")
	fl.Var(unsetInt{&opts.NadirMax}, "nadir-max", "most dormant runners (default: 2, or 0 for serverless)")
	return cmd
}

// ask fills a missing string answer from a prompt, or fails naming the flag.
func ask(io *IOStreams, value *string, flag, question, def string) error {
	if *value != "" {
		return nil
	}
	if !io.CanPrompt() {
		return errMissing(flag, question)
	}
	for {
		v, err := io.Prompt(question, def)
		if err != nil {
			return err
		}
		if v != "" {
			*value = v
			return nil
		}
	}
}

func addEggRun(opts *AddEggOptions) error {
	if err := validNameArg(opts.Name); err != nil {
		return err
	}
	rel := filepath.Join("Eggs", opts.Name, "config.fly")
	path := filepath.Join(opts.Dir, rel)
	if err := checkNewFile(path, opts.Force); err != nil {
		return err
	}
	io := opts.IO
	if err := ask(io, &opts.Host, "host", "GitLab host", "gitlab.com"); err != nil {
		return err
	}
	if opts.Kind == fly.KindEgg && opts.Project == "" && opts.ProjectID == 0 {
		if err := ask(io, &opts.Project, "project", "Project path (group/name) or ID", ""); err != nil {
			return err
		}
		if id, err := strconv.ParseInt(opts.Project, 10, 64); err == nil {
			opts.Project, opts.ProjectID = "", id
		}
	}
	if opts.Kind == fly.KindBucket {
		if len(opts.Projects) > 0 && opts.GroupID != 0 {
			return flagErrorf("--projects and --group-id exclude each other")
		}
		if len(opts.Projects) == 0 && opts.GroupID == 0 {
			var answer string
			if err := ask(io, &answer, "projects", "Projects (comma-separated paths or IDs) or group:<id>", ""); err != nil {
				return err
			}
			if g, ok := strings.CutPrefix(answer, "group:"); ok {
				id, err := strconv.ParseInt(g, 10, 64)
				if err != nil {
					return flagErrorf("group:%s: a group ID is a number", g)
				}
				opts.GroupID = id
			} else {
				opts.Projects = splitList(answer)
			}
		}
	}
	if err := ask(io, &opts.Token, "token", "Secret URI of the GitLab API token", ""); err != nil {
		return err
	}
	if err := ask(io, &opts.WebhookSecret, "webhook-secret", "Secret URI of the webhook secret", ""); err != nil {
		return err
	}
	if len(opts.Tags) == 0 && !opts.RunUntagged {
		var tags string
		if !io.CanPrompt() {
			return errMissing("tags", "runner tags (or --run-untagged)")
		}
		if err := ask(io, &tags, "tags", "Runner tags (comma-separated)", "docker"); err != nil {
			return err
		}
		opts.Tags = splitList(tags)
	}

	f := hclwrite.NewEmptyFile()
	root := f.Body()
	egg := root.AppendNewBlock(string(opts.Kind), []string{opts.Name}).Body()
	gl := egg.AppendNewBlock("gitlab", nil).Body()
	gl.SetAttributeValue("host", cty.StringVal(opts.Host))
	gl.SetAttributeValue("token", cty.StringVal(opts.Token))
	gl.SetAttributeValue("webhook_secret", cty.StringVal(opts.WebhookSecret))
	egg.AppendNewline()
	if opts.Kind == fly.KindEgg {
		if opts.Project != "" {
			egg.SetAttributeValue("project", cty.StringVal(opts.Project))
		}
		if opts.ProjectID != 0 {
			egg.SetAttributeValue("project_id", cty.NumberIntVal(opts.ProjectID))
		}
	} else {
		repos := egg.AppendNewBlock("repositories", nil).Body()
		if opts.GroupID != 0 {
			repos.SetAttributeValue("group_id", cty.NumberIntVal(opts.GroupID))
			repos.SetAttributeValue("include_subgroups", cty.BoolVal(opts.IncludeSubgroups))
		} else {
			var vals []cty.Value
			for _, p := range opts.Projects {
				if id, err := strconv.ParseInt(p, 10, 64); err == nil {
					vals = append(vals, cty.NumberIntVal(id))
				} else {
					vals = append(vals, cty.StringVal(p))
				}
			}
			repos.SetAttributeValue("projects", cty.TupleVal(vals))
		}
	}
	egg.AppendNewline()
	r := egg.AppendNewBlock("runner", nil).Body()
	r.SetAttributeValue("type", cty.StringVal(opts.Type))
	if len(opts.Clouds) > 0 {
		r.SetAttributeValue("clouds", stringList(opts.Clouds))
	}
	r.SetAttributeValue("cpu", cty.NumberFloatVal(opts.CPU))
	r.SetAttributeValue("memory", cty.StringVal(opts.Memory))
	r.SetAttributeValue("disk", cty.StringVal(opts.Disk))
	r.SetAttributeValue("max_concurrent", cty.NumberIntVal(int64(opts.MaxConcurrent)))
	r.SetAttributeValue("tags", stringList(opts.Tags))
	r.SetAttributeValue("run_untagged", cty.BoolVal(opts.RunUntagged))
	r.SetAttributeValue("image", cty.StringVal(opts.Image))
	if opts.Set["apex-min"] || opts.Set["apex-max"] {
		egg.AppendNewline()
		a := egg.AppendNewBlock("apex", nil).Body()
		a.SetAttributeValue("min", cty.NumberIntVal(int64(opts.ApexMin)))
		apexMax := opts.ApexMax
		if apexMax < 0 {
			apexMax = opts.MaxConcurrent
		}
		a.SetAttributeValue("max", cty.NumberIntVal(int64(apexMax)))
	}
	if opts.Set["nadir-min"] || opts.Set["nadir-max"] {
		egg.AppendNewline()
		n := egg.AppendNewBlock("nadir", nil).Body()
		n.SetAttributeValue("min", cty.NumberIntVal(int64(opts.NadirMin)))
		nadirMax := opts.NadirMax
		if nadirMax < 0 {
			nadirMax = max(opts.NadirMin, 2)
		}
		n.SetAttributeValue("max", cty.NumberIntVal(int64(nadirMax)))
	}
	return writeAndValidate(io, opts.Dir, path, hclwrite.Format(f.Bytes()))
}

// AddJobOptions are the inputs of `gosling add job`.
type AddJobOptions struct {
	IO       *IOStreams
	Dir      string
	Name     string
	Force    bool
	Kind     string
	Schedule string
	Timezone string
	Egg      string
	Tags     []string
	Image    string
	Params   []string
}

// NewCmdAddJob builds `gosling add job`.
func NewCmdAddJob(f *Factory, runF func(*AddJobOptions) error) *cobra.Command {
	opts := &AddJobOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "job NAME",
		Short: "Add a self-management job that runs on a cron schedule",
		Long: `Kinds: secret_rotation (reset runner tokens and roll them out), nest_update
(reload the Nest), runner_image_update (roll a new runner image) and custom
(a script on a dedicated, elevated runner). Parameters are given as
--param key=value; a value that reads as an HCL literal ([...], 25, true) is
kept as one, anything else is a string.`,
		Example: `  gosling add job rotate-tokens --kind secret_rotation --schedule "0 3 * * 1"
  gosling add job prune --kind custom --schedule @daily --egg platform \
    --param script="crane gc registry.example.com"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if runF != nil {
				return runF(opts)
			}
			return addJobRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Dir, "dir", ".", "the Nest's root directory")
	fl.BoolVar(&opts.Force, "force", false, "overwrite an existing file")
	fl.StringVar(&opts.Kind, "kind", "", "secret_rotation, nest_update, runner_image_update or custom")
	fl.StringVar(&opts.Schedule, "schedule", "", `cron schedule, such as "0 3 * * 1" or @daily`)
	fl.StringVar(&opts.Timezone, "timezone", "UTC", "time zone of the schedule")
	fl.StringVar(&opts.Egg, "egg", "", "run on this egg's runners")
	fl.StringSliceVar(&opts.Tags, "tags", nil, "run on runners with all these tags")
	fl.StringVar(&opts.Image, "image", "", "job image")
	fl.StringArrayVar(&opts.Params, "param", nil, "a parameter: --param key=value (repeatable)")
	return cmd
}

func addJobRun(opts *AddJobOptions) error {
	if err := validNameArg(opts.Name); err != nil {
		return err
	}
	path := filepath.Join(opts.Dir, "Jobs", opts.Name+fly.Extension)
	if err := checkNewFile(path, opts.Force); err != nil {
		return err
	}
	if err := ask(opts.IO, &opts.Kind, "kind", "Kind (secret_rotation, nest_update, runner_image_update, custom)", "secret_rotation"); err != nil {
		return err
	}
	if err := ask(opts.IO, &opts.Schedule, "schedule", "Cron schedule", "0 3 * * 1"); err != nil {
		return err
	}
	if opts.Kind == fly.JobCustom && opts.Egg == "" && len(opts.Tags) == 0 {
		if err := ask(opts.IO, &opts.Egg, "egg", "Egg whose runners run the job", ""); err != nil {
			return err
		}
	}
	f := hclwrite.NewEmptyFile()
	job := f.Body().AppendNewBlock("job", []string{opts.Name}).Body()
	job.SetAttributeValue("kind", cty.StringVal(opts.Kind))
	job.SetAttributeValue("schedule", cty.StringVal(opts.Schedule))
	if opts.Timezone != "UTC" {
		job.SetAttributeValue("timezone", cty.StringVal(opts.Timezone))
	}
	if opts.Egg != "" || len(opts.Tags) > 0 || opts.Image != "" {
		job.AppendNewline()
		r := job.AppendNewBlock("runner", nil).Body()
		if opts.Egg != "" {
			r.SetAttributeValue("egg", cty.StringVal(opts.Egg))
		}
		if len(opts.Tags) > 0 {
			r.SetAttributeValue("tags", stringList(opts.Tags))
		}
		if opts.Image != "" {
			r.SetAttributeValue("image", cty.StringVal(opts.Image))
		}
	}
	if len(opts.Params) > 0 {
		params := map[string]cty.Value{}
		for _, p := range opts.Params {
			k, v, ok := strings.Cut(p, "=")
			if !ok || k == "" {
				return flagErrorf("--param %q: write it as key=value", p)
			}
			params[k] = paramValue(v)
		}
		job.AppendNewline()
		job.SetAttributeValue("params", cty.ObjectVal(params))
	}
	return writeAndValidate(opts.IO, opts.Dir, path, hclwrite.Format(f.Bytes()))
}

// paramValue reads a literal ([...], numbers, booleans, "quoted") or else a string.
func paramValue(s string) cty.Value {
	expr, diags := hclsyntax.ParseExpression([]byte(s), "param", hcl.InitialPos)
	if !diags.HasErrors() {
		if v, d := expr.Value(nil); !d.HasErrors() && v.IsWhollyKnown() {
			return v
		}
	}
	return cty.StringVal(s)
}

func validNameArg(name string) error {
	if name == "" || strings.ToLower(name) != name || strings.ContainsAny(name, "/\\ .") {
		return flagErrorf("%q is not a valid name: use lower-case letters, digits and dashes, such as web-app", name)
	}
	return nil
}

func checkNewFile(path string, force bool) error {
	_, err := os.Stat(path)
	switch {
	case err == nil && !force:
		return fmt.Errorf("%s exists; use --force to overwrite it", path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return nil
}

// writeAndValidate writes a new file and validates the Nest. If the new file
// has errors, it is removed again (restoring any file it replaced).
func writeAndValidate(io *IOStreams, dir, path string, data []byte) error {
	old, hadOld := os.ReadFile(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	_, diags := fly.LoadNest(dir)
	var mine, others hcl.Diagnostics
	for _, d := range diags.Diagnostics {
		if d.Subject != nil && filepath.Clean(d.Subject.Filename) == filepath.Clean(path) {
			mine = append(mine, d)
		} else if d.Severity == hcl.DiagError {
			others = append(others, d)
		}
	}
	if mine.HasErrors() {
		_ = fly.WriteText(io.ErrOut, mine, diags.Files, io.StderrTTY)
		if hadOld == nil {
			_ = os.WriteFile(path, old, 0o644)
		} else {
			_ = os.Remove(path)
			_ = os.Remove(filepath.Dir(path)) // only removes it when empty
		}
		fmt.Fprintf(io.ErrOut, "%s was not written: fix the values above and run the command again.\n", path)
		return errSilent(ExitInvalidConfig)
	}
	if len(mine) > 0 {
		_ = fly.WriteText(io.ErrOut, mine, diags.Files, io.StderrTTY)
	}
	fmt.Fprintf(io.Out, "created %s\n", path)
	if len(others) > 0 {
		fmt.Fprintf(io.ErrOut, "note: the Nest has %s in other files; run gosling validate %s\n", plural(len(others), "error"), dir)
	}
	return nil
}

func stringList(xs []string) cty.Value {
	if len(xs) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vals := make([]cty.Value, len(xs))
	for i, x := range xs {
		vals[i] = cty.StringVal(x)
	}
	return cty.ListVal(vals)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
