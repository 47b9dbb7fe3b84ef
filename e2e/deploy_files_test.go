package e2e

// The deployment files (Dockerfile, .dockerignore, docker-compose.yml,
// deploy/prometheus, deploy/grafana) are checked here by reading them: no
// Docker engine runs on the machines that test Gosling, so no image is
// built and no container started. What can be checked without one is:
// the Compose file loads with the Compose specification's own loader; every
// gosling command line in it and in the Dockerfile parses against the real
// CLI; the GOSLING_* variables it sets are ones the CLI reads; Prometheus
// scrapes the ports the processes listen on; every metric a dashboard
// queries is one Gosling registers.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/gosling-ci/gosling/cli"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/testbin"
	gworker "github.com/gosling-ci/gosling/worker"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// goslingCLI parses command lines against the real command tree and
// records the environment variables its flags read for their defaults.
type goslingCLI struct {
	env map[string]bool
}

func newGoslingCLI() *goslingCLI { return &goslingCLI{env: map[string]bool{}} }

// parse finds the command args name and parses its flags and arguments as
// cobra would before running it: an unknown command or flag, a bad value
// or a wrong number of arguments is an error. Each call builds a fresh
// tree: parsing sets the flags' values.
func (c *goslingCLI) parse(args []string) (*cobra.Command, error) {
	f := &cli.Factory{
		IO:     &cli.IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}},
		Getenv: func(k string) (string, bool) { c.env[k] = true; return "", false },
		Masker: secretstore.NewMasker(),
	}
	root := cli.NewCmdRoot(f)
	cmd, rest, err := root.Find(args)
	if err != nil {
		return nil, err
	}
	if cmd == root || !cmd.Runnable() {
		return nil, fmt.Errorf("%q names no runnable command", strings.Join(args, " "))
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if cmd.Name() == "worker" {
		q, _ := cmd.Flags().GetString("queue")
		if _, ok := gworker.Workflows(q); !ok {
			return nil, fmt.Errorf("worker --queue %q: not one of %v", q, gworker.Queues)
		}
	}
	return cmd, nil
}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root := testbin.Root()
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		// No variables: the file's own defaults apply, whatever this
		// machine's environment holds.
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("gosling", true) })
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

// dockerStage is one FROM ... AS name stage of the Dockerfile.
type dockerStage struct {
	name, from string
	// instructions in order: keyword (upper case) and the rest of the line.
	instructions [][2]string
}

func (s dockerStage) all(keyword string) []string {
	var out []string
	for _, in := range s.instructions {
		if in[0] == keyword {
			out = append(out, in[1])
		}
	}
	return out
}

func (s dockerStage) last(keyword string) string {
	all := s.all(keyword)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1]
}

// readDockerfile splits the Dockerfile into its global ARGs and its stages.
// It reads what these tests need of the Dockerfile syntax: comments,
// backslash continuations and one instruction per logical line.
func readDockerfile(t *testing.T) (args map[string]string, stages []dockerStage) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testbin.Root(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	args = map[string]string{}
	var logical []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	for _, l := range logical {
		keyword, rest, _ := strings.Cut(l, " ")
		keyword, rest = strings.ToUpper(keyword), strings.TrimSpace(rest)
		switch {
		case keyword == "FROM":
			fields := strings.Fields(rest)
			var from, name string
			for i := 0; i < len(fields); i++ {
				switch {
				case strings.HasPrefix(fields[i], "--"):
				case strings.EqualFold(fields[i], "AS") && i+1 < len(fields):
					name = fields[i+1]
					i++
				default:
					from = fields[i]
				}
			}
			stages = append(stages, dockerStage{name: name, from: from})
		case len(stages) == 0 && keyword == "ARG":
			k, v, _ := strings.Cut(rest, "=")
			args[k] = v
		case len(stages) > 0:
			s := &stages[len(stages)-1]
			s.instructions = append(s.instructions, [2]string{keyword, rest})
		}
	}
	return args, stages
}

func stageNamed(t *testing.T, stages []dockerStage, name string) dockerStage {
	t.Helper()
	for _, s := range stages {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("the Dockerfile has no stage %q", name)
	return dockerStage{}
}

// execForm reads a JSON-array (exec form) ENTRYPOINT or CMD.
func execForm(t *testing.T, what, v string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		t.Fatalf("%s %s is not in exec form (a JSON array): %v", what, v, err)
	}
	return out
}

// goModVersion reads the go directive of go.mod.
func goModVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testbin.Root(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

func TestDockerfile(t *testing.T) {
	args, stages := readDockerfile(t)
	c := newGoslingCLI()

	// The toolchain and OpenTofu are the ones the repository pins.
	if got, want := args["GO_VERSION"], goModVersion(t); got != want {
		t.Errorf("ARG GO_VERSION=%s, go.mod says go %s", got, want)
	}
	tools, err := os.ReadFile(filepath.Join(testbin.Root(), "scripts", "tools.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^TOFU_VERSION=v(\S+)$`).FindSubmatch(tools); m == nil || args["TOFU_VERSION"] != string(m[1]) {
		t.Errorf("ARG TOFU_VERSION=%s, scripts/tools.sh builds %s", args["TOFU_VERSION"], m)
	}

	build := stageNamed(t, stages, "build")
	if !strings.HasPrefix(build.from, "golang:${GO_VERSION}") {
		t.Errorf("build stage FROM %s: want golang:${GO_VERSION}-...", build.from)
	}
	var goBuild string
	for _, r := range build.all("RUN") {
		if strings.Contains(r, "go build") {
			goBuild = r
		}
	}
	main, err := os.ReadFile(filepath.Join(testbin.Root(), "cmd", "gosling", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^var version = `).Match(main) {
		t.Fatal("cmd/gosling/main.go has no version variable for -X main.version")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=${VERSION}", "./cmd/gosling"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("the build stage's go build lacks %q: %s", want, goBuild)
		}
	}

	if got := stageNamed(t, stages, "tofu").from; got != "ghcr.io/opentofu/opentofu:${TOFU_VERSION}-minimal" {
		t.Errorf("tofu stage FROM %s", got)
	}

	// The server image is the default target: the last stage.
	server := stages[len(stages)-1]
	if server.name != "server" {
		t.Fatalf("the last stage (the default target) is %q, want server", server.name)
	}
	if !strings.HasPrefix(server.from, "gcr.io/distroless/static") || !strings.HasSuffix(server.from, ":nonroot") {
		t.Errorf("server FROM %s: want distroless static, nonroot", server.from)
	}
	if u := server.last("USER"); u != "65532:65532" {
		t.Errorf("server USER %q: want 65532:65532 (distroless nonroot)", u)
	}
	if e := strings.Fields(server.last("EXPOSE")); !slices.Equal(e, []string{"8080", "9090"}) {
		t.Errorf("server EXPOSE %v: want 8080 9090", e)
	}
	if len(server.all("HEALTHCHECK")) > 0 {
		t.Error("distroless has no shell or curl: probes belong to the orchestrator")
	}
	copies := strings.Join(server.all("COPY"), "\n")
	for _, want := range []string{"--from=build /out/gosling /usr/local/bin/gosling", "--from=tofu /usr/local/bin/tofu /usr/local/bin/tofu"} {
		if !strings.Contains(copies, want) {
			t.Errorf("server stage lacks COPY %s", want)
		}
	}
	if env := strings.Join(server.all("ENV"), " "); !strings.Contains(env, "GOSLING_TOFU=/usr/local/bin/tofu") {
		t.Errorf("server ENV %s does not point GOSLING_TOFU at the copied tofu", env)
	}
	for _, name := range []string{"server", "runner"} {
		s := stageNamed(t, stages, name)
		ep := execForm(t, name+" ENTRYPOINT", s.last("ENTRYPOINT"))
		if !slices.Equal(ep, []string{"/usr/local/bin/gosling"}) {
			t.Errorf("%s ENTRYPOINT %v: want [/usr/local/bin/gosling]", name, ep)
		}
		cmd := execForm(t, name+" CMD", s.last("CMD"))
		if _, err := c.parse(cmd); err != nil {
			t.Errorf("%s CMD %v does not parse: %v", name, cmd, err)
		}
	}
	if got := stageNamed(t, stages, "runner").from; got != "gitlab/gitlab-runner:alpine-${GITLAB_RUNNER_VERSION}" {
		t.Errorf("runner FROM %s: want the official gitlab-runner image", got)
	}
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(args["GITLAB_RUNNER_VERSION"]) {
		t.Errorf("GITLAB_RUNNER_VERSION %q is not a pinned release (vX.Y.Z)", args["GITLAB_RUNNER_VERSION"])
	}
}

// .dockerignore must leave every file the build compiles or embeds in the
// build context.
func TestDockerignoreKeepsTheBuild(t *testing.T) {
	root := testbin.Root()
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}}|{{.}}{{end}}{{range .EmbedFiles}}|{{.}}{{end}}{{end}}{{end}}`,
		"./cmd/gosling")
	list.Dir = root
	var stderr bytes.Buffer
	list.Stderr = &stderr
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	files := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.Split(line, "|")
		rel, err := filepath.Rel(root, parts[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range parts[1:] {
			files = append(files, filepath.ToSlash(filepath.Join(rel, name)))
		}
	}
	if len(files) < 50 {
		t.Fatalf("go list named only %d files", len(files))
	}
	for _, file := range files {
		excluded, err := pm.MatchesOrParentMatches(file)
		if err != nil {
			t.Fatal(err)
		}
		if excluded {
			t.Errorf(".dockerignore excludes %s, which the image build needs", file)
		}
	}
	// And it keeps out what the build must not see.
	for _, file := range []string{".git/config", "bin/tofu", ".gosling/gosling.db", "e2e/stack.go", "fly/testdata/valid/minimal/MG/config.fly"} {
		if excluded, _ := pm.MatchesOrParentMatches(file); !excluded {
			t.Errorf(".dockerignore lets %s into the build context", file)
		}
	}
}

// listenPort is the port of a listen address such as ":8080".
func listenPort(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return port
}

func TestComposeFile(t *testing.T) {
	p := loadCompose(t)
	root := testbin.Root()
	_, stages := readDockerfile(t)
	c := newGoslingCLI()

	want := []string{"postgres", "temporal", "temporal-ui", "api", "mothergoose-worker", "uglyfox-worker", "prometheus", "grafana"}
	for _, name := range want {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("docker-compose.yml has no service %q", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if img := p.Services["postgres"].Image; img != "postgres:15" {
		t.Errorf("postgres image %q, want postgres:15", img)
	}

	// Published ports: host port -> container port.
	ports := map[string]string{}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if prev, dup := ports[port.Published]; dup {
				t.Errorf("host port %s published by %s and %s", port.Published, prev, name)
			}
			ports[port.Published] = fmt.Sprintf("%s:%d", name, port.Target)
		}
	}
	for host, target := range map[string]string{
		"8080": "api:8080", "8233": "temporal-ui:8080", "7233": "temporal:7233", "9090": "prometheus:9090", "3000": "grafana:3000",
	} {
		if ports[host] != target {
			t.Errorf("host port %s goes to %q, want %s", host, ports[host], target)
		}
	}

	// Health checks, and who waits for what.
	for _, name := range []string{"postgres", "temporal", "api", "mothergoose-worker", "uglyfox-worker"} {
		hc := p.Services[name].HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) < 2 {
			t.Errorf("%s has no health check", name)
		}
	}
	for svc, deps := range map[string]map[string]string{
		"temporal-schema":    {"postgres": types.ServiceConditionHealthy},
		"temporal":           {"temporal-schema": types.ServiceConditionCompletedSuccessfully},
		"temporal-ui":        {"temporal": types.ServiceConditionHealthy},
		"api":                {"postgres": types.ServiceConditionHealthy, "temporal": types.ServiceConditionHealthy},
		"mothergoose-worker": {"postgres": types.ServiceConditionHealthy, "temporal-namespace": types.ServiceConditionCompletedSuccessfully},
		"uglyfox-worker":     {"postgres": types.ServiceConditionHealthy, "temporal-namespace": types.ServiceConditionCompletedSuccessfully},
		"grafana":            {"prometheus": types.ServiceConditionHealthy},
	} {
		for dep, cond := range deps {
			if got := p.Services[svc].DependsOn[dep].Condition; got != cond {
				t.Errorf("%s depends on %s with condition %q, want %q", svc, dep, got, cond)
			}
		}
	}
	// A service_healthy condition needs a health check to wait for.
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionHealthy && p.Services[dep].HealthCheck == nil {
				t.Errorf("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
			}
		}
	}

	// Files mounted from the repository exist.
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which does not exist", name, v.Source)
			}
			if strings.HasPrefix(v.Source, root) && !v.ReadOnly {
				t.Errorf("%s mounts %s from the repository read-write", name, v.Source)
			}
		}
	}

	// Every gosling command line parses against the real CLI, and every
	// GOSLING_* variable set is one the CLI reads.
	gosling := map[string]*cobra.Command{}
	for name, s := range p.Services {
		if s.Build == nil || !strings.HasPrefix(s.Image, "gosling:") {
			continue
		}
		if s.Build.Target == "" || s.Build.Context != root {
			t.Errorf("%s builds %s target %q: want this repository's Dockerfile, target server", name, s.Build.Context, s.Build.Target)
		}
		stageNamed(t, stages, s.Build.Target)
		if len(s.Entrypoint) > 0 {
			t.Errorf("%s overrides the image's ENTRYPOINT (gosling): %v", name, s.Entrypoint)
		}
		cmd, err := c.parse(s.Command)
		if err != nil {
			t.Errorf("%s: command %v does not parse: %v", name, []string(s.Command), err)
			continue
		}
		gosling[name] = cmd
		hc := s.HealthCheck
		if hc != nil && len(hc.Test) > 2 && hc.Test[0] == "CMD" && filepath.Base(hc.Test[1]) == "gosling" {
			if _, err := c.parse(hc.Test[2:]); err != nil {
				t.Errorf("%s: health check %v does not parse: %v", name, hc.Test, err)
			}
		} else {
			t.Errorf("%s: health check %v does not run gosling (the image has no shell or curl)", name, hc)
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "GOSLING_") && !c.env[k] {
				t.Errorf("%s sets %s, which no gosling flag reads", name, k)
			}
		}
	}
	for name, cmd := range map[string]string{"api": "server", "mothergoose-worker": "worker", "uglyfox-worker": "worker"} {
		if gosling[name] == nil || gosling[name].Name() != cmd {
			t.Fatalf("%s does not run gosling %s", name, cmd)
		}
	}
	queue := func(name string) string { q, _ := gosling[name].Flags().GetString("queue"); return q }
	if queue("mothergoose-worker") != "mothergoose" || queue("uglyfox-worker") != "uglyfox" {
		t.Errorf("worker queues: %q and %q", queue("mothergoose-worker"), queue("uglyfox-worker"))
	}
	// UglyFox probes the local machines' agent processes: it must see them.
	if got := p.Services["uglyfox-worker"].Pid; got != "service:mothergoose-worker" {
		t.Errorf("uglyfox-worker pid %q: want service:mothergoose-worker", got)
	}
	// The Nest each gosling service mounts is the Compose Nest.
	for name, s := range p.Services {
		if gosling[name] == nil {
			continue
		}
		nest := s.Environment["GOSLING_NEST"]
		var mounted bool
		for _, v := range s.Volumes {
			mounted = mounted || (nest != nil && v.Target == *nest && v.Source == filepath.Join(root, "deploy", "compose", "nest"))
		}
		if !mounted {
			t.Errorf("%s does not mount deploy/compose/nest at its GOSLING_NEST", name)
		}
	}
}

// prometheusConfig is the part of prometheus.yml these tests read.
type prometheusConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// Prometheus scrapes each gosling process where it serves /metrics: the
// API's --addr and the workers' --metrics-addr, as their command lines in
// docker-compose.yml set them.
func TestPrometheusScrapesTheComposeServices(t *testing.T) {
	p := loadCompose(t)
	c := newGoslingCLI()
	b, err := os.ReadFile(filepath.Join(testbin.Root(), "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg prometheusConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if _, err := time.ParseDuration(cfg.Global.ScrapeInterval); err != nil {
		t.Errorf("scrape_interval %q: %v", cfg.Global.ScrapeInterval, err)
	}
	targets := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s; gosling serves /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				host, _, err := net.SplitHostPort(tg)
				if err != nil {
					t.Errorf("target %q: %v", tg, err)
					continue
				}
				if _, ok := p.Services[host]; !ok && host != "localhost" {
					t.Errorf("target %s names no Compose service", tg)
				}
				targets[tg] = true
			}
		}
	}
	want := map[string]string{"api": "addr", "mothergoose-worker": "metrics-addr", "uglyfox-worker": "metrics-addr"}
	for name, flag := range want {
		cmd, err := c.parse(p.Services[name].Command)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := cmd.Flags().GetString(flag)
		target := net.JoinHostPort(name, listenPort(t, addr))
		if !targets[target] {
			t.Errorf("prometheus.yml does not scrape %s (%s --%s %s)", target, name, flag, addr)
		}
		// The health check asks the same port.
		hc := p.Services[name].HealthCheck.Test
		u, err := url.Parse(hc[len(hc)-1])
		if err != nil || u.Port() != listenPort(t, addr) {
			t.Errorf("%s health check %v does not ask port %s", name, hc, listenPort(t, addr))
		}
	}
}

// goslingFamilies observes every Gosling metric once and gathers them, so
// that each family shows its name, type and label names.
func goslingFamilies(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	m := metrics.New()
	m.ObserveWebhook("job", "accepted")
	m.ObserveProvision("web", "local", "vm", time.Second)
	m.ObserveJobQueue("web", time.Second)
	m.ObserveJobDuration("web", "success", time.Second)
	m.ObserveJobCost("web", "acme/web", "run", 0.01)
	m.ObserveJobMachineSeconds("web", "acme/web", 60)
	m.ObserveRedelivery("web", "accepted")
	m.ObserveTransition("active", "draining")
	m.ObserveHTTP("GET", "/healthz", 200, time.Millisecond)
	m.ObserveOutbox("delivered")
	m.ObserveUglyFoxAction("heartbeat", "terminate", "done")
	m.SecretAccessed(context.Background(), secretstore.AccessEvent{Op: "get", Scheme: "vault"})
	if err := m.CollectStore(storeCounts{}); err != nil {
		t.Fatal(err)
	}
	if err := m.CollectPools(func(context.Context) ([]metrics.PoolSample, error) {
		return []metrics.PoolSample{{Egg: "web", Counts: map[string]int{"apex": 1}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// queryableMetrics maps each name a query may use to its family's label
// names: a histogram's _bucket, _sum and _count; a summary's own name, _sum
// and _count; a counter's or gauge's name.
func queryableMetrics(t *testing.T) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	for _, f := range goslingFamilies(t) {
		labels := map[string]bool{}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		name := f.GetName()
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = labels, labels, labels
		case dto.MetricType_SUMMARY:
			out[name], out[name+"_sum"], out[name+"_count"] = labels, labels, labels
		default:
			out[name] = labels
		}
	}
	return out
}

type storeCounts struct{}

func (storeCounts) CountRunners(context.Context) (map[string]map[store.RunnerState]int, error) {
	return map[string]map[store.RunnerState]int{"web": {store.StateActive: 1}}, nil
}

func (storeCounts) OutboxDepth(context.Context) (int64, error) { return 0, nil }

// grafanaDashboard is the part of a dashboard these tests read.
type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

var (
	goslingMetricRE = regexp.MustCompile(`\bgosling_[a-zA-Z0-9_]+`)
	// Label names in a matcher ({egg=~"$egg"}) or a grouping (by (le, egg)).
	matcherLabelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
	groupingRE     = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// Every metric a dashboard queries is one Gosling registers, and every
// label it matches or groups by is one of that metric's (or Prometheus's
// own: le, quantile, job, instance, and the scrape labels of
// prometheus.yml).
func TestDashboardsQueryRegisteredMetrics(t *testing.T) {
	registered := queryableMetrics(t)
	scrapeLabels := map[string]bool{"le": true, "quantile": true, "job": true, "instance": true, "component": true, "queue": true}
	dir := filepath.Join(testbin.Root(), "deploy", "grafana", "dashboards")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s (%v)", dir, err)
	}
	used := map[string]bool{}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d grafanaDashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s has no uid or title", file)
		}
		var exprs []string
		var walk func([]grafanaPanel)
		walk = func(ps []grafanaPanel) {
			for _, p := range ps {
				walk(p.Panels)
				if p.Type == "row" {
					continue
				}
				if p.Datasource == nil || p.Datasource.UID != "prometheus" {
					t.Errorf("%s: panel %q does not use the provisioned Prometheus (uid prometheus)", filepath.Base(file), p.Title)
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", filepath.Base(file), p.Title)
				}
				for _, tg := range p.Targets {
					exprs = append(exprs, tg.Expr)
				}
			}
		}
		walk(d.Panels)
		for _, v := range d.Templating.List {
			exprs = append(exprs, string(v.Query))
		}
		for _, expr := range exprs {
			names := goslingMetricRE.FindAllString(expr, -1)
			allowed := map[string]bool{}
			for _, name := range names {
				used[name] = true
				if _, ok := registered[name]; !ok {
					t.Errorf("%s: %s is not a metric Gosling registers (in %s)", filepath.Base(file), name, expr)
				}
				for l := range registered[name] {
					allowed[l] = true
				}
			}
			if len(names) == 0 {
				continue
			}
			var labelNames []string
			for _, m := range matcherLabelRE.FindAllStringSubmatch(expr, -1) {
				labelNames = append(labelNames, m[1])
			}
			for _, m := range groupingRE.FindAllStringSubmatch(expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); l != "" {
						labelNames = append(labelNames, l)
					}
				}
			}
			for _, l := range labelNames {
				if !allowed[l] && !scrapeLabels[l] {
					t.Errorf("%s: label %q belongs to none of %v (in %s)", filepath.Base(file), l, names, expr)
				}
			}
		}
	}
	// The dashboards cover what operators asked to see.
	for _, want := range []string{
		"gosling_webhooks_total", "gosling_runner_provision_seconds_bucket", "gosling_pool_demand_to_runner_seconds_sum",
		"gosling_pool_runners", "gosling_runners", "gosling_uglyfox_actions_total", "gosling_outbox_depth",
		"gosling_outbox_deliveries_total", "gosling_secret_backend_calls_total", "gosling_http_request_duration_seconds_bucket",
		"gosling_job_queue_seconds_bucket", "gosling_job_cost_total", "gosling_job_machine_seconds_total", "gosling_webhook_redeliveries_total",
	} {
		if !used[want] {
			t.Errorf("no dashboard queries %s", want)
		}
	}
}

// The datasource and dashboard provisioning files parse and point where
// docker-compose.yml mounts the dashboards and runs Prometheus.
func TestGrafanaProvisioning(t *testing.T) {
	p := loadCompose(t)
	root := filepath.Join(testbin.Root(), "deploy", "grafana", "provisioning")
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, Access, URL string
			IsDefault                    bool `yaml:"isDefault"`
			Editable                     bool `yaml:"editable"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(root, "datasources", "prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].UID != "prometheus" || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("datasources: %+v", ds.Datasources)
	}
	u, err := url.Parse(ds.Datasources[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Services[u.Hostname()]; !ok || u.Port() != "9090" {
		t.Errorf("datasource URL %s is not the prometheus service", u)
	}
	var dash struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Folder, Type    string
			DisableDeletion       bool `yaml:"disableDeletion"`
			AllowUIUpdates        bool `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int  `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `yaml:"path"`
				FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(root, "dashboards", "gosling.yml"), &dash)
	if len(dash.Providers) != 1 || dash.Providers[0].Type != "file" {
		t.Fatalf("dashboard providers: %+v", dash.Providers)
	}
	var mounted bool
	for _, v := range p.Services["grafana"].Volumes {
		mounted = mounted || (v.Target == dash.Providers[0].Options.Path && v.Source == filepath.Join(testbin.Root(), "deploy", "grafana", "dashboards"))
	}
	if !mounted {
		t.Errorf("grafana does not mount deploy/grafana/dashboards at %s", dash.Providers[0].Options.Path)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// *metrics.Metrics is what resolvers report their backend calls to.
var _ secretstore.AccessObserver = (*metrics.Metrics)(nil)
