package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/bootstrap"
	"github.com/gosling-ci/gosling/bootstrap/awstest"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestDeployFlagsToOptions(t *testing.T) {
	tio := withEnv(newTestIO("", false), map[string]string{"GOSLING_NEST": "/srv/nest"})
	var got *DeployOptions
	capture := func(o *DeployOptions) error { got = o; return nil }

	cmd := NewCmdPlan(tio.f, capture)
	cmd.SetArgs([]string{"--json", "--var", "environment=staging"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Nest != "/srv/nest" || !got.JSON || got.Vars["environment"] != "staging" || got.Yes {
		t.Errorf("plan options = %+v", got)
	}

	cmd = NewCmdDeploy(tio.f, capture)
	cmd.SetArgs([]string{"--nest", "n", "--yes", "--keep-partial", "--force-unlock"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Nest != "n" || !got.Yes || !got.KeepPartial || !got.ForceUnlock {
		t.Errorf("deploy options = %+v", got)
	}

	cmd = NewCmdRollback(tio.f, capture)
	cmd.SetArgs([]string{"--nest", "n", "--to", "0", "-y"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.To != 0 || !got.ToSet || !got.Yes {
		t.Errorf("rollback options = %+v", got)
	}
	cmd = NewCmdRollback(tio.f, capture)
	cmd.SetArgs([]string{})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.ToSet {
		t.Error("--to was not given")
	}
	if code := run(t, newTestIO("", false), "rollback", "--to", "-1"); code != ExitError {
		t.Errorf("--to -1: exit %d", code)
	}
}

// TestDeployCommand runs plan, deploy and rollback against moto.
func TestDeployCommand(t *testing.T) {
	srv := awstest.New(t)
	gl := gitlabtest.New()
	t.Cleanup(gl.Close)
	web := gl.AddProject("acme/web", 0)
	memory := "1GiB"
	certificate := "" // one for every open
	testOpen := func(ctx context.Context, opts *DeployOptions) (*bootstrap.Deployment, error) {
		nest, err := loadNest(opts.Nest, opts.Vars, opts.Getenv, opts.IO)
		if err != nil {
			return nil, err
		}
		nest.MotherGoose.Containers.API.Memory, _ = fly.ParseSize(memory)
		nest.Eggs[0].GitLab.Host, nest.Eggs[0].GitLab.Insecure = strings.TrimPrefix(gl.URL(), "http://"), true
		if certificate == "" {
			certificate = srv.Certificate(t, nest.MotherGoose.APIGateway.Domain)
		}
		p := nest.MotherGoose.Providers[fly.CloudAWS]
		p.VPCID, p.Subnets = srv.VPC, srv.Subnets
		nest.MotherGoose.Providers[fly.CloudAWS] = p
		nest.MotherGoose.APIGateway.CertificateARN = certificate
		cfg := srv.Config()
		return bootstrap.Open(ctx, nest, bootstrap.Options{AWSConfig: &cfg,
			Resolve: func(_ context.Context, ref fly.SecretRef) (string, error) {
				if ref == nest.Eggs[0].GitLab.Token {
					return gl.Token(), nil
				}
				return "webhook-secret", nil
			}})
	}
	exec := func(tio *testIO, args ...string) int {
		t.Helper()
		root := NewCmdRoot(tio.f)
		for _, c := range root.Commands() {
			switch c.Name() {
			case "plan", "deploy", "rollback":
				root.RemoveCommand(c)
			}
		}
		root.AddCommand(
			NewCmdPlan(tio.f, func(o *DeployOptions) error { o.open = testOpen; return planRun(context.Background(), o) }),
			NewCmdDeploy(tio.f, func(o *DeployOptions) error { o.open = testOpen; return deployRun(context.Background(), o) }),
			NewCmdRollback(tio.f, func(o *DeployOptions) error { o.open = testOpen; return rollbackRun(context.Background(), o) }),
		)
		root.SetArgs(args)
		root.SetOut(tio.f.IO.Out)
		root.SetErr(tio.f.IO.ErrOut)
		if err := root.Execute(); err != nil {
			tio.f.IO.ErrOut.Write([]byte("error: " + err.Error() + "\n"))
			if ce, ok := err.(*CodeError); ok {
				return ce.Code
			}
			return ExitError
		}
		return 0
	}
	const nest = "../bootstrap/testdata/aws-nest"

	tio := newTestIO("", false)
	if code := exec(tio, "deploy", "--nest", nest); code != ExitError || !strings.Contains(tio.err.String(), "--yes") {
		t.Fatalf("deploy without a terminal or --yes: exit %d: %s", code, tio.err)
	}
	if n := len(srv.Calls()); srv.Calls()["iam:CreateRole"] != 0 {
		t.Fatalf("changes before confirmation: %d ops", n)
	}
	tio = newTestIO("yes\n", true)
	if code := exec(tio, "deploy", "--nest", nest); code != 0 {
		t.Fatalf("deploy: exit %d: %s", code, tio.err)
	}
	if !strings.Contains(tio.out.String(), "Plan: 45 to add, 0 to change, 0 to destroy.") || !strings.Contains(tio.err.String(), "Apply complete! Resources: 45 added") {
		t.Errorf("deploy output:\n%s\n%s", tio.out, tio.err)
	}
	if !regexp.MustCompile(`Point DNS for ci-runners\.example\.com at d-[0-9a-f]+\.execute-api\.eu-central-1\.amazonaws\.com: a CNAME, or a Route 53 alias record \(hosted zone Z\w+\)\.`).MatchString(tio.err.String()) {
		t.Errorf("deploy does not say where the domain's DNS points:\n%s", tio.err)
	}
	if hooks := gl.Hooks(web.ID); len(hooks) != 1 || hooks[0].Token != "webhook-secret" || strings.Contains(tio.out.String(), "webhook-secret") {
		t.Errorf("hooks: %+v", hooks)
	}
	tio = newTestIO("", false)
	if code := exec(tio, "deploy", "--nest", nest); code != 0 || !strings.HasPrefix(tio.out.String(), "No changes.") {
		t.Fatalf("second deploy: exit %d: %s %s", code, tio.out, tio.err)
	}
	memory = "2GiB"
	tio = newTestIO("", false)
	if code := exec(tio, "plan", "--nest", nest); code != 0 || !strings.Contains(tio.out.String(), "~ task.memory = 1024 -> 2048") {
		t.Fatalf("plan: exit %d:\n%s", code, tio.out)
	}
	if code := exec(newTestIO("", false), "deploy", "--nest", nest, "--yes"); code != 0 {
		t.Fatal("deploy of the memory change failed")
	}
	memory = "1GiB" // the Nest is unchanged; rollback puts 1 GiB back
	tio = newTestIO("", false)
	if code := exec(tio, "rollback", "--nest", nest, "--yes"); code != 0 || !strings.Contains(tio.out.String(), "~ task.memory = 2048 -> 1024") {
		t.Fatalf("rollback: exit %d:\n%s\n%s", code, tio.out, tio.err)
	}
	tio = newTestIO("", false)
	if code := exec(tio, "plan", "--nest", nest, "--json"); code != 0 || !strings.Contains(tio.out.String(), `"changes": []`) {
		t.Fatalf("plan after rollback: exit %d:\n%s", code, tio.out)
	}
}

// Missing or refused credentials exit 4, whichever cloud or backend says so.
func TestDeployAuthFailureExitCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{&bootstrap.CredentialsError{Cloud: "aws", Hint: "set AWS_PROFILE", Err: errors.New("no credentials")}, ExitAuth},
		{fmt.Errorf("resolve key: %w", secretstore.ErrAuth), ExitAuth},
		{fmt.Errorf("list folders: %w", status.Error(codes.Unauthenticated, "the IAM token has expired")), ExitAuth},
		{fmt.Errorf("list folders: %w", status.Error(codes.Unavailable, "no route")), 0},
	} {
		var ce *CodeError
		got := authFailure(c.err)
		if errors.As(got, &ce) != (c.code != 0) || (ce != nil && ce.Code != c.code) {
			t.Errorf("%v: %#v", c.err, got)
		}
	}
}

// TestPlanYandexWithoutCredentials: `gosling plan` on a Yandex Nest with no
// credentials in the environment (and, here, no Yandex Cloud or metadata
// service to reach: both point at a closed port) exits 4 with a hint that
// says where credentials come from.
func TestPlanYandexWithoutCredentials(t *testing.T) {
	t.Setenv(secrets.YandexMetadataEnv, "127.0.0.1:1") // the SDK reads it itself
	tio := withEnv(newTestIO("", false), map[string]string{
		"YC_ENDPOINT": "127.0.0.1:1", secrets.YandexMetadataEnv: "127.0.0.1:1",
	})
	if code := run(t, tio, "plan", "--nest", filepath.Join("..", "examples", "nest")); code != ExitAuth {
		t.Fatalf("exit %d, want %d: %s", code, ExitAuth, tio.err)
	}
	if e := tio.err.String(); !strings.Contains(e, "$YC_SERVICE_ACCOUNT_KEY_FILE") || !strings.Contains(e, "$YC_IAM_TOKEN") {
		t.Errorf("no hint: %s", e)
	}
}
