package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/gosling-ci/gosling/internal/agentapi"
)

// EnvLambdaRuntimeAPI is where AWS Lambda serves its Runtime API
// (host:port), set in every function's environment.
const EnvLambdaRuntimeAPI = "AWS_LAMBDA_RUNTIME_API"

// lambdaReportMargin ends an invocation's session this long before the
// function's deadline, so the agent can stop gitlab-runner and report the
// job before Lambda ends the function.
const lambdaReportMargin = 20 * time.Second

// ServeLambda is Serve inside AWS Lambda: the agent of a short serverless
// runner on AWS. Each invocation the Lambda Runtime API
// ($AWS_LAMBDA_RUNTIME_API, https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html)
// hands the function is one agentapi.Invoke; it runs gitlab-runner
// run-single for one job, reports ready and the job to MotherGoose, and
// answers with the agentapi.InvokeResult when gitlab-runner exits. Lambda
// authenticates invokers (IAM) and runs one invocation at a time; the
// invocation's deadline (the function's timeout, the egg's job timeout)
// ends the session lambdaReportMargin early. The work directory must be
// under /tmp, Lambda's only writable place. ServeLambda returns when ctx
// ends; a Runtime API that cannot be reached ends the process.
func ServeLambda(ctx context.Context, opts RunOptions) error {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.LookupEnv
	}
	if addr, ok := getenv(EnvLambdaRuntimeAPI); !ok || addr == "" {
		return errors.New("not inside AWS Lambda: $AWS_LAMBDA_RUNTIME_API is not set")
	}
	if opts.WorkDir != "" && !filepath.IsAbs(opts.WorkDir) {
		return fmt.Errorf("work directory %q: give an absolute path under /tmp", opts.WorkDir)
	}
	a, err := newAgent(opts)
	if err != nil {
		return err
	}
	if a.cfg.Runner.Mode == "" {
		a.cfg.Runner.Mode = agentapi.ModeSingle
	}
	a.log.Info("taking invocations from the Lambda Runtime API")
	handler := func(ictx context.Context, in agentapi.Invoke) (agentapi.InvokeResult, error) {
		if in.RunnerID != "" && in.RunnerID != a.cfg.RunnerID {
			return agentapi.InvokeResult{}, fmt.Errorf("this function runs runner %s, not %s", a.cfg.RunnerID, in.RunnerID)
		}
		sctx := ictx
		if dl, ok := ictx.Deadline(); ok && time.Until(dl) > 2*lambdaReportMargin {
			var cancel context.CancelFunc
			sctx, cancel = context.WithDeadline(ictx, dl.Add(-lambdaReportMargin))
			defer cancel()
		}
		return a.session(sctx, in.WaitTimeoutSeconds, agentapi.TriggerInvoke), nil
	}
	// Start serves until the process ends (it exits the process itself
	// when the Runtime API fails); a cancelled ctx (SIGTERM) ends it too.
	go lambda.StartWithOptions(handler, lambda.WithContext(ctx))
	<-ctx.Done()
	return nil
}
