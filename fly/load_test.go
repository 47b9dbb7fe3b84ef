package fly

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func loadExample(t *testing.T, opts Options) *Nest {
	t.Helper()
	if opts.Getenv == nil {
		opts.Getenv = testEnv
	}
	nest, diags := LoadNest(filepath.Join("..", "examples", "nest"), opts)
	if diags.HasErrors() {
		var b strings.Builder
		_ = WriteText(&b, diags.Diagnostics, diags.Files, false)
		t.Fatalf("example Nest invalid:\n%s", b.String())
	}
	return nest
}

func TestExampleNestValues(t *testing.T) {
	n := loadExample(t, Options{})
	if got := len(n.Eggs); got != 4 {
		t.Fatalf("eggs = %d, want 4", got)
	}
	web, ok := n.Egg("web-app")
	if !ok {
		t.Fatal("web-app missing")
	}
	if web.Kind != KindEgg || web.File != "Eggs/web-app/config.fly" || len(web.Version) != 12 {
		t.Errorf("web-app kind/file/version = %s %s %q", web.Kind, web.File, web.Version)
	}
	if web.GitLab.Host != "gitlab.com" || web.GitLab.Flavor != "saas" {
		t.Errorf("gitlab = %+v", web.GitLab)
	}
	if web.GitLab.Token != "yc-lockbox://e6qexamplelockbox0001/gitlab_api_token" {
		t.Errorf("token ref = %q (locals not interpolated?)", web.GitLab.Token)
	}
	if !reflect.DeepEqual(web.Projects, []ProjectRef{{Path: "acme/web-app"}}) {
		t.Errorf("projects = %+v", web.Projects)
	}
	r := web.Runner
	if r.Type != RunnerAuto || !reflect.DeepEqual(r.Clouds, []string{"yandex", "aws"}) || r.CPU != 2 || r.Memory != 4*GiB || r.Disk != 20*GiB {
		t.Errorf("runner = %+v", r)
	}
	if r.ExpectedJobDuration.D().Minutes() != 10 || r.MaxConcurrent != 20 || !r.RunUntagged {
		t.Errorf("runner = %+v", r)
	}
	if r.Env["NPM_TOKEN"].Secret != "aws-sm://ci/npm/token" || r.Env["NODE_OPTIONS"].Value != "--max-old-space-size=3072" {
		t.Errorf("env = %+v", r.Env)
	}
	if web.Apex != (Pool{Min: 1, Max: 20, IdleTimeout: Duration(15 * 60e9)}) || web.Nadir.Min != 2 || web.Nadir.Max != 5 {
		t.Errorf("pools = %+v %+v", web.Apex, web.Nadir)
	}
	if web.Rift == nil || web.Rift.Cache != 50*GiB || web.Rift.MaxAge.D().Hours() != 14*24 || web.Rift.Bucket != "web-app" {
		t.Errorf("rift = %+v", web.Rift)
	}

	pay, _ := n.Egg("payments-api")
	if pay.GitLab.Flavor != "self-managed" || pay.Projects[0] != (ProjectRef{ID: 4821, Path: "payments/api"}) {
		t.Errorf("payments-api = %+v %+v", pay.GitLab, pay.Projects)
	}
	if !reflect.DeepEqual(pay.Runner.Tags, []string{"payments", "integration", "PCI"}) {
		t.Errorf("tags = %v (upper() not applied?)", pay.Runner.Tags)
	}
	// The Nadir idle timeout keeps its default when the block omits it.
	if pay.Nadir.IdleTimeout.D().Hours() != 24 {
		t.Errorf("nadir idle = %s", pay.Nadir.IdleTimeout)
	}

	plat, _ := n.Egg("platform")
	if plat.Kind != KindBucket || len(plat.Projects) != 3 || plat.Projects[2].ID != 51234 {
		t.Errorf("platform = %+v", plat.Projects)
	}
	if plat.Nadir.Max != 0 {
		t.Errorf("serverless bucket got a Nadir pool: %+v", plat.Nadir)
	}
	data, _ := n.Egg("data-group")
	if data.Group == nil || data.Group.ID != 9001 || !data.Group.IncludeSubgroups {
		t.Errorf("group = %+v", data.Group)
	}
	// Clouds default to MotherGoose's cloud.
	if !reflect.DeepEqual(data.Runner.Clouds, []string{"yandex"}) {
		t.Errorf("default clouds = %v", data.Runner.Clouds)
	}

	if len(n.Jobs) != 4 || n.Jobs[0].Name != "nest-update" {
		t.Fatalf("jobs = %+v", n.Jobs)
	}
	rot, _ := n.Job("rotate-runner-tokens")
	if rot.Kind != JobSecretRotation || rot.Timezone != "Europe/Moscow" || rot.Timeout.D().Minutes() != 30 {
		t.Errorf("rotate = %+v", rot)
	}
	if eggs, _ := rot.Params["eggs"].([]any); len(eggs) != 4 {
		t.Errorf("params = %+v", rot.Params)
	}
	prune, _ := n.Job("prune-registry")
	if !prune.Runner.Elevated || prune.Runner.Tags[0] != "gosling-admin" {
		t.Errorf("prune = %+v", prune.Runner)
	}

	mg := n.MotherGoose
	if mg.Cloud != CloudYandex || mg.Queue.Kind != "none" || mg.Triggers.Kind != "none" || mg.Database.Engine != "ydb" {
		t.Errorf("mg = %+v", mg)
	}
	if mg.APIGateway.Name != "gosling-prod" || len(mg.APIGateway.Auth.Tokens) != 2 {
		t.Errorf("gateway = %+v", mg.APIGateway)
	}
	if mg.Containers.UglyFox.CPU != 0.5 || mg.Containers.Worker.Memory != 2*GiB {
		t.Errorf("containers = %+v", mg.Containers)
	}
	if mg.Secrets.Backend != SchemeLockbox || mg.Secrets.Backends[SchemeAWSSM].CacheTTL.D().Minutes() != 10 {
		t.Errorf("secrets = %+v", mg.Secrets)
	}
	if mg.Providers["aws"].Cluster != "gosling-prod-runners" || mg.Providers["yandex"].FolderID != "b1gexamplefolder0001" {
		t.Errorf("providers = %+v", mg.Providers)
	}
	if n.UglyFox.Old.NadirMaxAge.D().Hours() != 168 || n.UglyFox.Reconcile.Action != ActionReap {
		t.Errorf("uglyfox = %+v", n.UglyFox)
	}
}

func TestVariablesFromFlagsAndEnv(t *testing.T) {
	env := func(name string) (string, bool) {
		if name == "GOSLING_VAR_yc_folder_id" {
			return "b1gfromenv", true
		}
		return "", false
	}
	n := loadExample(t, Options{Vars: map[string]string{"environment": "staging"}, Getenv: env})
	if n.MotherGoose.APIGateway.Name != "gosling-staging" {
		t.Errorf("--var not applied: %q", n.MotherGoose.APIGateway.Name)
	}
	if n.MotherGoose.Providers["yandex"].FolderID != "b1gfromenv" {
		t.Errorf("GOSLING_VAR_ not applied: %q", n.MotherGoose.Providers["yandex"].FolderID)
	}
	// --var wins over the environment.
	n = loadExample(t, Options{Vars: map[string]string{"yc_folder_id": "b1gflag"}, Getenv: env})
	if n.MotherGoose.Providers["yandex"].FolderID != "b1gflag" {
		t.Errorf("--var does not win: %q", n.MotherGoose.Providers["yandex"].FolderID)
	}
}

func TestValidVariablesFixture(t *testing.T) {
	n, diags := LoadNest(filepath.Join("testdata", "valid", "variables"), Options{Getenv: testEnv})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	svc, _ := n.Egg("svc")
	if svc.Runner.MaxConcurrent != 8 || svc.Apex.Max != 4 {
		t.Errorf("number variable: %+v %+v", svc.Runner.MaxConcurrent, svc.Apex)
	}
	if !reflect.DeepEqual(svc.Runner.Tags, []string{"docker", "linux", "svc"}) {
		t.Errorf("concat: %v", svc.Runner.Tags)
	}
	if svc.Runner.Memory != 1536*MiB {
		t.Errorf("fractional size: %s", svc.Runner.Memory)
	}
	if svc.GitLab.Token != "vault://ci/gosling-eu-central-1/gitlab_token" {
		t.Errorf("local chain: %q", svc.GitLab.Token)
	}
	mg := n.MotherGoose
	if mg.Region != "eu-north-1" || mg.Providers["aws"].Cluster != "PROD" {
		t.Errorf("env(): region %q cluster %q", mg.Region, mg.Providers["aws"].Cluster)
	}
	if mg.Secrets.Backend != SchemeVault || mg.Secrets.Backends[SchemeVault].Role != "gosling-eu-central-1-runners" {
		t.Errorf("secrets = %+v", mg.Secrets)
	}
}

func TestNestIsPlainJSON(t *testing.T) {
	n := loadExample(t, Options{})
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	var back Nest
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	// Params decode as generic JSON on both sides; compare through JSON.
	b2, _ := json.Marshal(&back)
	if string(b) != string(b2) {
		t.Errorf("JSON round trip changed the Nest:\n%s\n%s", b, b2)
	}
	if !strings.Contains(string(b), `"memory":"4GiB"`) || !strings.Contains(string(b), `"idle_timeout":"15m"`) {
		t.Errorf("sizes and durations should read as in fly: %s", b)
	}
}

func TestMissingPieces(t *testing.T) {
	_, diags := LoadNest(filepath.Join(t.TempDir(), "nope"))
	if !diags.HasErrors() || diags.Diagnostics[0].Summary != "Nest not found" {
		t.Errorf("missing dir: %v", diags.Diagnostics)
	}

	dir := t.TempDir()
	writeFile(t, dir, "Eggs/x/config.fly", `egg "x" {
  gitlab { host = "gitlab.com" }
}`)
	writeFile(t, dir, "Eggs/stray.fly", "")
	_, diags = LoadNest(dir)
	var summaries []string
	for _, d := range diags.Diagnostics {
		summaries = append(summaries, d.Summary)
	}
	got := strings.Join(summaries, "|")
	// All problems at once: missing MG, missing attributes, stray file.
	for _, want := range []string{"Missing MG/config.fly", "Missing token", "Missing project", "File ignored"} {
		if !strings.Contains(got, want) {
			t.Errorf("diagnostics %q lack %q", got, want)
		}
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	secrets := []string{"glpat-AbCdEfGhIjKlMnOpQrSt", "s3cr3t-webhook-value", "AKIAABCDEFGHIJKLMNOP"}
	_, diags := LoadNest(filepath.Join("testdata", "invalid", "plaintext"))
	var text, js strings.Builder
	if err := WriteText(&text, diags.Diagnostics, diags.Files, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, diags.Diagnostics, diags.Files); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(text.String(), s) || strings.Contains(js.String(), s) || strings.Contains(diags.Error(), s) {
			t.Errorf("secret %q printed", s)
		}
	}
	if !strings.Contains(text.String(), `"********"`) {
		t.Errorf("masked snippet missing:\n%s", text.String())
	}
}

func writeFile(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The sweep's hooks default to the gateway's domain; a webhook_url on
// another host is a warning, as deploy and the sweep would keep two hooks.
func TestSweepWebhookURLAgreesWithDomain(t *testing.T) {
	n := loadExample(t, Options{})
	if got := n.MotherGoose.Sweep.WebhookURL; got != "https://ci-runners.example.com/webhooks/gitlab" {
		t.Errorf("sweep webhook URL %q", got)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "examples", "nest"))); err != nil {
		t.Fatal(err)
	}
	mg := filepath.Join(dir, "MG", "config.fly")
	b, err := os.ReadFile(mg)
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(b), `    interval = "1m"`, `    interval = "1m"
    webhook_url = "https://gosling.example.com/webhooks/gitlab"`, 1)
	if src == string(b) {
		t.Fatal("the example's sweep block changed: update this test")
	}
	writeFile(t, dir, "MG/config.fly", src)
	_, diags := LoadNest(dir, Options{Getenv: testEnv})
	found := false
	for _, d := range diags.Diagnostics {
		if d.Summary == "Webhook URL off the gateway's domain" {
			found = true
			if d.Severity != hcl.DiagWarning || d.Subject == nil || !strings.Contains(d.Detail, "ci-runners.example.com") {
				t.Errorf("diagnostic %+v", d)
			}
		}
	}
	if !found || diags.HasErrors() {
		t.Errorf("want one warning and no error: %v", diags.Diagnostics)
	}
}

// Both parts of a sweep pass are on unless the sweep block turns one off.
func TestSweepParts(t *testing.T) {
	n := loadExample(t, Options{})
	if sw := n.MotherGoose.Sweep; sw.NoResend || sw.NoPendingJobs {
		t.Errorf("example's sweep %+v: both parts on by default", sw)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "examples", "nest"))); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "MG", "config.fly"))
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(b), `    interval = "1m"`, `    interval      = "1m"
    resend_failed = true
    pending_jobs  = false`, 1)
	writeFile(t, dir, "MG/config.fly", src)
	got, diags := LoadNest(dir, Options{Getenv: testEnv})
	if diags.HasErrors() {
		t.Fatal(diags.Diagnostics)
	}
	if sw := got.MotherGoose.Sweep; sw.NoResend || !sw.NoPendingJobs {
		t.Errorf("sweep %+v: want resend on, pending jobs off", sw)
	}
}
