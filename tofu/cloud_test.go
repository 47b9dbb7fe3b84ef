package tofu

import (
	"bufio"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/gosling-ci/gosling/fly"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// moduleBodies parses every .tf file of a built-in module.
func moduleBodies(t *testing.T, m Module) []*hclsyntax.Body {
	t.Helper()
	fsys, err := ModuleFS(m)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(fsys, "*.tf")
	var out []*hclsyntax.Body
	for _, name := range names {
		src, _ := fs.ReadFile(fsys, name)
		f, diags := hclsyntax.ParseConfig(src, m.String()+"/"+name, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		out = append(out, f.Body.(*hclsyntax.Body))
	}
	return out
}

// walkBlocks calls fn for every block of bodies, nested ones included.
func walkBlocks(bodies []*hclsyntax.Body, fn func(parents []*hclsyntax.Block, b *hclsyntax.Block)) {
	var walk func(parents []*hclsyntax.Block, body *hclsyntax.Body)
	walk = func(parents []*hclsyntax.Block, body *hclsyntax.Body) {
		for _, b := range body.Blocks {
			fn(parents, b)
			walk(append(slices.Clone(parents), b), b.Body)
		}
	}
	for _, b := range bodies {
		walk(nil, b)
	}
}

// varRefs collects the variables an expression refers to (var.NAME).
func varRefs(e hclsyntax.Expression, out map[string]bool) {
	for _, tr := range e.Variables() {
		if tr.RootName() == "var" && len(tr) > 1 {
			if a, ok := tr[1].(hcl.TraverseAttr); ok {
				out[a.Name] = true
			}
		}
	}
}

// Every variable a module declares is used by it: what Gosling passes
// reaches the machine (image, concurrent and tags were declared and
// never read).
func TestModulesUseEveryVariable(t *testing.T) {
	for _, m := range BuiltinModules() {
		bodies := moduleBodies(t, m)
		used := map[string]bool{}
		var visit func(body *hclsyntax.Body, inVariable bool)
		visit = func(body *hclsyntax.Body, inVariable bool) {
			for _, a := range body.Attributes {
				if !inVariable {
					varRefs(a.Expr, used)
				}
			}
			for _, b := range body.Blocks {
				visit(b.Body, inVariable || b.Type == "variable")
			}
		}
		for _, b := range bodies {
			visit(b, false)
		}
		sig, err := Inspect(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range sig.Variables {
			if !used[v.Name] {
				t.Errorf("%s declares variable %s and never uses it", m, v.Name)
			}
		}
	}
}

// Every cloud module runs as the egg's runner identity: without it the
// machine is refused before anything is applied, naming what is missing.
func TestCloudModulesNeedIdentity(t *testing.T) {
	cases := []struct {
		cloud, kind string
		lambda      bool
		clear       func(*Identity)
		missing     string
	}{
		{fly.CloudYandex, fly.RunnerVM, false, func(i *Identity) { i.ServiceAccountID = "" }, "service_account_id"},
		{fly.CloudYandex, fly.RunnerServerless, false, func(i *Identity) { i.ServiceAccountID = "" }, "service_account_id"},
		{fly.CloudAWS, fly.RunnerVM, false, func(i *Identity) { i.InstanceProfile = "" }, "instance_profile"},
		{fly.CloudAWS, fly.RunnerServerless, false, func(i *Identity) { i.ExecutionRoleARN = "" }, "execution_role_arn"},
		{fly.CloudAWS, fly.RunnerServerless, false, func(i *Identity) { i.RoleARN = "" }, "task_role_arn"},
		{fly.CloudAWS, fly.RunnerServerless, true, func(i *Identity) { i.RoleARN = "" }, "task_role_arn"},
	}
	for _, c := range cases {
		m := machineFor(c.cloud, c.kind)
		m.Lambda = c.lambda
		if c.lambda {
			m.MaxRunMinutes = 10
		}
		vars, err := m.Variables()
		if err != nil {
			t.Fatalf("%s/%s: %v", c.cloud, c.kind, err)
		}
		if vars[c.missing] == "" {
			t.Errorf("%s/%s: %s not passed: %v", c.cloud, c.kind, c.missing, vars[c.missing])
		}
		c.clear(&m.Identity)
		_, err = m.Variables()
		if !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), c.missing) || !strings.Contains(err.Error(), "gosling deploy") {
			t.Errorf("%s/%s without %s: %v", c.cloud, c.kind, c.missing, err)
		}
	}
	// A Lambda runner needs no execution role; the local provider no identity.
	m := machineFor(fly.CloudAWS, fly.RunnerServerless)
	m.Lambda, m.MaxRunMinutes, m.Identity.ExecutionRoleARN = true, 15, ""
	if _, err := m.Variables(); err != nil {
		t.Errorf("lambda without an execution role: %v", err)
	}
	m.MaxRunMinutes = 16
	if _, err := m.Variables(); err == nil {
		t.Error("a 16-minute Lambda runner accepted")
	}
	for _, kind := range []string{fly.RunnerVM, fly.RunnerServerless} {
		lm := machineFor(fly.CloudLocal, kind)
		lm.Identity = Identity{}
		if _, err := lm.Variables(); err != nil {
			t.Errorf("local/%s: %v", kind, err)
		}
	}
}

// secretValueSources are data sources and resources whose state holds a
// secret's value (a payload, a secret string).
var secretValueSources = []string{
	"yandex_lockbox_secret_version", "aws_secretsmanager_secret_version", "aws_ssm_parameter_secure",
	"vault_generic_secret", "vault_kv_secret", "vault_kv_secret_v2",
}

// No module reads a secret's value into its state: the Serverless
// Container's token version comes from the secret's metadata
// (yandex_lockbox_secret), the ECS task's token from its secrets. And no
// cloud module runs a provisioner: nothing needs a shell or a cloud CLI.
func TestModulesHoldNoSecretValue(t *testing.T) {
	for _, m := range BuiltinModules() {
		walkBlocks(moduleBodies(t, m), func(parents []*hclsyntax.Block, b *hclsyntax.Block) {
			if (b.Type == "data" || b.Type == "resource") && len(b.Labels) > 0 && slices.Contains(secretValueSources, b.Labels[0]) {
				t.Errorf("%s: %s %s holds a secret's value in the state", m, b.Type, b.Labels[0])
			}
			if b.Type == "provisioner" && m.Cloud != fly.CloudLocal {
				t.Errorf("%s: a %s provisioner: cloud modules run none (the worker image has no shell or cloud CLI)", m, b.Labels[0])
			}
		})
	}
}

// imageFiles reads the files a Dockerfile stage holds that programs can be
// run from: what it COPYs in, on a base whose programs are known
// (distroless images have none, not even /bin/sh).
func imageFiles(t *testing.T, dockerfile, stage string) []string {
	t.Helper()
	f, err := os.Open(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var files []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			if in {
				return files
			}
			in = len(fields) >= 4 && strings.EqualFold(fields[len(fields)-2], "AS") && fields[len(fields)-1] == stage
			if in && !strings.Contains(fields[1], "distroless") {
				t.Fatalf("stage %s is FROM %s, whose programs this test does not know", stage, fields[1])
			}
		case "COPY":
			if in {
				files = append(files, fields[len(fields)-1])
			}
		}
	}
	if !in {
		t.Fatalf("%s has no stage %s", dockerfile, stage)
	}
	return files
}

// provisionerPrograms lists the program each provisioner of a module
// runs, with the module's variables as vars: a local-exec's interpreter's
// first element (from the variable or resource input it names), else
// OpenTofu's default interpreter, /bin/sh.
func provisionerPrograms(t *testing.T, m Module, vars map[string]any) []string {
	t.Helper()
	var out []string
	walkBlocks(moduleBodies(t, m), func(parents []*hclsyntax.Block, b *hclsyntax.Block) {
		if b.Type != "provisioner" {
			return
		}
		if b.Labels[0] != "local-exec" {
			out = append(out, b.Labels[0]+" (needs SSH)")
			return
		}
		interp, ok := b.Body.Attributes["interpreter"]
		if !ok {
			out = append(out, "/bin/sh")
			return
		}
		refs := map[string]bool{}
		varRefs(interp.Expr, refs)
		// self.input.KEY: the resource's input object's KEY.
		for _, tr := range interp.Expr.Variables() {
			if tr.RootName() != "self" || len(tr) < 3 {
				continue
			}
			key, _ := tr[2].(hcl.TraverseAttr)
			res := parents[len(parents)-1]
			if in, ok := res.Body.Attributes["input"]; ok {
				if obj, ok := in.Expr.(*hclsyntax.ObjectConsExpr); ok {
					for _, item := range obj.Items {
						if k, d := item.KeyExpr.Value(nil); !d.HasErrors() && k.AsString() == key.Name {
							varRefs(item.ValueExpr, refs)
						}
					}
				}
			}
		}
		if len(refs) == 0 {
			out = append(out, "an interpreter this test cannot read")
		}
		for name := range refs {
			list, _ := vars[name].([]string)
			if len(list) == 0 {
				out = append(out, "var."+name+" (empty)")
				continue
			}
			out = append(out, list[0])
		}
	})
	sort.Strings(out)
	return out
}

// The worker image runs every provisioner of every module: each program a
// provisioner needs is a file of the Dockerfile's server target (the
// workers' image: distroless, gosling and tofu only). A module that ran
// `yc` or a shell fails this.
func TestProvisionersRunInTheWorkerImage(t *testing.T) {
	files := imageFiles(t, filepath.Join("..", "Dockerfile"), "server")
	gosling := ""
	for _, f := range files {
		if filepath.Base(f) == "gosling" {
			gosling = f
		}
	}
	if gosling == "" {
		t.Fatalf("the server image holds no gosling: %v", files)
	}
	for _, mod := range BuiltinModules() {
		m := machineFor(mod.Cloud, mod.Kind)
		m.AgentBinary = gosling
		vars, err := m.Variables()
		if err != nil {
			t.Fatal(err)
		}
		for _, prog := range provisionerPrograms(t, mod, vars) {
			if !slices.Contains(files, prog) {
				t.Errorf("%s: a provisioner runs %s, which the server image (%v) lacks", mod, prog, files)
			}
		}
	}
	// The test reads what it should: a shell provisioner is caught.
	if progs := provisionerPrograms(t, Module{Cloud: "local", Kind: "vm"}, map[string]any{"launch_command": []string{"/bin/sh", "-c", "x"}, "stop_command": []string{gosling}, "power_command": []string{gosling}}); !slices.Contains(progs, "/bin/sh") {
		t.Errorf("programs = %v", progs)
	}
}

// EC2 types fly picks are types the AWS SDK knows.
func TestAWSInstanceTypesKnownToTheSDK(t *testing.T) {
	known := ec2types.InstanceType("").Values()
	for _, name := range fly.AWSInstanceTypeNames() {
		if !slices.Contains(known, ec2types.InstanceType(name)) {
			t.Errorf("instance type %s is not one of the SDK's %d", name, len(known))
		}
	}
}

func TestCloudCredentials(t *testing.T) {
	env := []string{
		"AWS_ACCESS_KEY_ID=AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/abc",
		"AWS_ENDPOINT_URL_EC2=http://127.0.0.1:1", "AWS_EMPTY=", "YC_IAM_TOKEN=t1.iam", "YC_ENDPOINT=api.example:443",
		"VAULT_TOKEN=hvs.x", "PG_CONN_STR=postgres://u:p@db/x", "HOME=/root",
	}
	aws := CloudCredentials(fly.CloudAWS, env, "")
	if len(aws) != 4 || aws["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] != "/v2/credentials/abc" || aws["AWS_ENDPOINT_URL_EC2"] == "" {
		t.Errorf("aws = %v", aws)
	}
	yc := CloudCredentials(fly.CloudYandex, env, "")
	if len(yc) != 2 || yc["YC_TOKEN"] != "t1.iam" || yc["YC_ENDPOINT"] != "api.example:443" {
		t.Errorf("yandex = %v", yc)
	}
	yc = CloudCredentials(fly.CloudYandex, env, `{"id":"aje","private_key":"k"}`)
	if yc["YC_SERVICE_ACCOUNT_KEY_FILE"] != `{"id":"aje","private_key":"k"}` || yc["YC_TOKEN"] != "" {
		t.Errorf("yandex with a key = %v", yc)
	}
	if l := CloudCredentials(fly.CloudLocal, env, ""); len(l) != 0 {
		t.Errorf("local = %v", l)
	}
}

// The worker's credentials reach OpenTofu for the run of a module of
// their cloud, apply and destroy (a remote backend's rebuild too), and
// nothing else of the worker's environment does; no state, variable or
// configuration file holds them.
func TestCredentialsOnlyPerRun(t *testing.T) {
	ex := newExecutor(t)
	secret := "s3cr3t-value-4f9a"
	workerEnv := []string{"AWS_ACCESS_KEY_ID=AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/" + secret,
		"YC_TOKEN=t1.yc-" + secret, "VAULT_TOKEN=hvs." + secret}
	runs := 0
	ex.Credentials = func(_ context.Context, m Module) (map[string]string, error) {
		runs++
		return CloudCredentials(m.Cloud, workerEnv, ""), nil
	}
	src, _ := filepath.Abs(filepath.Join("testdata", "envmodule"))
	out := filepath.Join(t.TempDir(), "env")
	mod := Module{Cloud: fly.CloudAWS, Kind: fly.RunnerVM, Source: src}
	if _, err := ex.Apply(context.Background(), ApplyRequest{Workspace: "web-env-1", Module: mod, Vars: map[string]any{"out": out}}); err != nil {
		t.Fatal(err)
	}
	// Every file OpenTofu and Gosling wrote for the workspace.
	leak := func(root string) {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if b, _ := os.ReadFile(p); strings.Contains(string(b), secret) {
				t.Errorf("%s holds a credential", p)
			}
			return nil
		})
	}
	leak(ex.WorkspaceDir("web-env-1"))
	if err := ex.Destroy(context.Background(), "web-env-1", nil); err != nil {
		t.Fatal(err)
	}
	leak(ex.StateDir())
	for _, phase := range []string{"apply", "destroy"} {
		b, err := os.ReadFile(out + "." + phase)
		if err != nil {
			t.Fatal(err)
		}
		env := string(b)
		for _, want := range []string{"AWS_ACCESS_KEY_ID=AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/"} {
			if !strings.Contains(env, want) {
				t.Errorf("%s: OpenTofu's environment lacks %s", phase, want)
			}
		}
		for _, not := range []string{"YC_TOKEN", "VAULT_TOKEN"} {
			if strings.Contains(env, not) {
				t.Errorf("%s: OpenTofu's environment holds %s", phase, not)
			}
		}
	}
	if runs != 2 {
		t.Errorf("credentials asked %d times, want once per run (2)", runs)
	}
}
