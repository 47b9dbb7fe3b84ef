package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/yandexauth"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Invokers are how InvokeRunner reaches each cloud; tests replace them
// with clients of local test servers that speak the same protocols.
type Invokers struct {
	// HTTP sends invocations (local and Yandex); nil: a client without a
	// timeout (an invocation lasts the job).
	HTTP *http.Client
	// YandexToken returns an IAM token for invoking a Yandex Serverless
	// Container as the worker (default: internal/yandexauth from the
	// environment: a key file, a fixed token or the instance's account).
	YandexToken func(ctx context.Context, p fly.Provider) (string, error)
	// ECS returns a client of the provider's ECS (default: the AWS SDK's
	// default chain in the provider's region, assuming its role).
	ECS func(ctx context.Context, p fly.Provider) (*ecs.Client, error)
	// Lambda returns a client of the provider's Lambda, likewise.
	Lambda func(ctx context.Context, p fly.Provider) (*lambda.Client, error)
	// PollInterval is how often a started ECS task is looked at (5s).
	PollInterval time.Duration
}

// InvokeRunnerInput names a serverless runner to invoke.
type InvokeRunnerInput struct {
	RunnerID string       `json:"runner_id"`
	Cloud    string       `json:"cloud"`
	Provider fly.Provider `json:"provider"`
	TokenRef string       `json:"token_ref"`
	// Outputs are the machine's apply outputs: invoke_url (Yandex),
	// task_definition, cluster and subnets (AWS).
	Outputs map[string]any `json:"outputs"`
	// WaitTimeoutSeconds bounds gitlab-runner's wait for a job.
	WaitTimeoutSeconds int `json:"wait_timeout_seconds,omitempty"`
}

// InvokeRunnerResult is how the invocation ended.
type InvokeRunnerResult struct {
	agentapi.InvokeResult
	// Via says how it was invoked: http (local, Yandex), ecs-run-task or
	// lambda-invoke.
	Via string `json:"via"`
	// TaskARN is the ECS task's ARN (AWS).
	TaskARN string `json:"task_arn,omitempty"`
}

// InvokeRunner runs a serverless runner for one job, the way its platform
// runs work, and returns when the runner is done: on Yandex (and the local
// provider, which copies it), an HTTPS request whose answer comes when the
// job is done (agentapi.Invoke); on AWS, ECS RunTask on Fargate, then the
// task is watched until it stops. It heartbeats while it waits; a
// cancelled activity (the workflow's deadline or cancellation) aborts the
// request or stops the task (ECS StopTask). A retried attempt joins the
// task an earlier one started (ECS clientToken and startedBy).
func (a *Activities) InvokeRunner(ctx context.Context, in InvokeRunnerInput) (InvokeRunnerResult, error) {
	stop := invokeHeartbeats(ctx)
	defer stop()
	if a.Simulate != nil {
		return a.Simulate.invoke(ctx)
	}
	switch in.Cloud {
	case fly.CloudLocal:
		u, err := agent.ServeURL(MachineDir(a.Tofu.StateDir(), in.RunnerID))
		if err != nil || u == "" {
			return InvokeRunnerResult{}, fmt.Errorf("the serverless runner %s serves no URL yet: %v", in.RunnerID, err)
		}
		token, err := a.Secrets.Resolve(ctx, fly.SecretRef(in.TokenRef))
		if err != nil {
			return InvokeRunnerResult{}, fmt.Errorf("read the token of runner %s: %w", in.RunnerID, err)
		}
		return a.invokeHTTP(ctx, u, token, in)
	case fly.CloudYandex:
		u, _ := in.Outputs["invoke_url"].(string)
		if u == "" {
			return InvokeRunnerResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("the serverless container of runner %s has no invoke_url output", in.RunnerID), ErrTypeBadInput, nil)
		}
		tokenOf := a.Invokers.YandexToken
		if tokenOf == nil {
			tokenOf = yandexIAMToken
		}
		token, err := tokenOf(ctx, in.Provider)
		if err != nil {
			return InvokeRunnerResult{}, fmt.Errorf("an IAM token to invoke runner %s: %w", in.RunnerID, err)
		}
		return a.invokeHTTP(ctx, u, token, in)
	case fly.CloudAWS:
		if platform, _ := in.Outputs["platform"].(string); platform == "lambda" {
			return a.invokeLambda(ctx, in)
		}
		return a.runTask(ctx, in)
	}
	return InvokeRunnerResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("cloud %q has no serverless runners", in.Cloud), ErrTypeBadInput, nil)
}

// invokeHeartbeats heartbeats every few seconds until stopped, so a
// cancellation reaches the activity within its heartbeat timeout.
func invokeHeartbeats(ctx context.Context) func() {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, "invoked")
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// invokeHTTP posts an invocation to base/invoke with a bearer token and
// decodes the result.
func (a *Activities) invokeHTTP(ctx context.Context, base, bearer string, in InvokeRunnerInput) (InvokeRunnerResult, error) {
	u, err := url.JoinPath(base, agentapi.PathInvoke)
	if err != nil {
		return InvokeRunnerResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("invoke URL %q: %v", base, err), ErrTypeBadInput, err)
	}
	body, _ := json.Marshal(agentapi.Invoke{RunnerID: in.RunnerID, WaitTimeoutSeconds: in.WaitTimeoutSeconds})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return InvokeRunnerResult{}, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	hc := a.Invokers.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return InvokeRunnerResult{}, fmt.Errorf("invoke runner %s: %w", in.RunnerID, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("invoke runner %s: %s: %s", in.RunnerID, resp.Status, strings.TrimSpace(string(b)))
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound {
			return InvokeRunnerResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
		}
		return InvokeRunnerResult{}, err
	}
	res := InvokeRunnerResult{Via: "http"}
	if err := json.Unmarshal(b, &res.InvokeResult); err != nil {
		return InvokeRunnerResult{}, fmt.Errorf("invoke runner %s: the answer is not an invocation result: %w", in.RunnerID, err)
	}
	if res.Error != "" && len(res.Jobs) == 0 {
		// The runner failed without running a job (gitlab-runner
		// crashed, the token was refused): not "no job came", which
		// would leave the job it was made for pending unseen. Retried,
		// then the workflow reports the invocation failed.
		return res, fmt.Errorf("invoke runner %s: %s", in.RunnerID, res.Error)
	}
	return res, nil
}

func yandexIAMToken(ctx context.Context, _ fly.Provider) (string, error) {
	ts, err := yandexauth.NewTokenSource(yandexauth.FromEnv(os.Getenv))
	if err != nil {
		return "", err
	}
	defer ts.Close(context.WithoutCancel(ctx))
	return ts.Token(ctx)
}

// providerConfig is the worker's AWS configuration in the provider's
// region, through the provider's role when it names one.
func providerConfig(ctx context.Context, p fly.Provider) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(p.Region))
	if err != nil {
		return aws.Config{}, err
	}
	if p.RoleARN != "" {
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), p.RoleARN))
	}
	return cfg, nil
}

func defaultECS(ctx context.Context, p fly.Provider) (*ecs.Client, error) {
	cfg, err := providerConfig(ctx, p)
	if err != nil {
		return nil, err
	}
	return ecs.NewFromConfig(cfg), nil
}

func defaultLambda(ctx context.Context, p fly.Provider) (*lambda.Client, error) {
	cfg, err := providerConfig(ctx, p)
	if err != nil {
		return nil, err
	}
	return lambda.NewFromConfig(cfg), nil
}

// invokeLambda invokes the runner's Lambda function synchronously
// (RequestResponse) with an agentapi.Invoke: the agent takes the event
// from the Runtime API, runs one job and answers with its
// agentapi.InvokeResult, all within the function's timeout (the egg's job
// timeout, at most 15 minutes). A function error (X-Amz-Function-Error:
// its crash or its timeout) is the invocation's error, not the activity's.
// A cancelled activity stops waiting; Lambda ends the function at its
// timeout.
func (a *Activities) invokeLambda(ctx context.Context, in InvokeRunnerInput) (InvokeRunnerResult, error) {
	fn, _ := in.Outputs["function_name"].(string)
	if fn == "" {
		return InvokeRunnerResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("runner %s: Lambda Invoke needs the function_name output (outputs %v)", in.RunnerID, in.Outputs), ErrTypeBadInput, nil)
	}
	newClient := a.Invokers.Lambda
	if newClient == nil {
		newClient = defaultLambda
	}
	c, err := newClient(ctx, in.Provider)
	if err != nil {
		return InvokeRunnerResult{}, err
	}
	payload, _ := json.Marshal(agentapi.Invoke{RunnerID: in.RunnerID, WaitTimeoutSeconds: in.WaitTimeoutSeconds})
	res := InvokeRunnerResult{Via: "lambda-invoke"}
	res.RunnerID, res.StartedAt, res.ExitCode, res.Jobs = in.RunnerID, time.Now().UTC(), -1, []agentapi.JobReport{}
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: payload, InvocationType: lambdatypes.InvocationTypeRequestResponse})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && (ae.ErrorCode() == "ResourceNotFoundException" || ae.ErrorCode() == "AccessDeniedException" || ae.ErrorCode() == "InvalidParameterValueException") {
			return InvokeRunnerResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("invoke runner %s: %v", in.RunnerID, err), ErrTypeBadInput, err)
		}
		return InvokeRunnerResult{}, fmt.Errorf("invoke runner %s: %w", in.RunnerID, err)
	}
	if out.FunctionError != nil {
		res.FinishedAt = time.Now().UTC()
		res.Error = fmt.Sprintf("the function failed (%s): %s", aws.ToString(out.FunctionError), strings.TrimSpace(string(out.Payload)))
		return res, nil
	}
	if err := json.Unmarshal(out.Payload, &res.InvokeResult); err != nil {
		return InvokeRunnerResult{}, fmt.Errorf("invoke runner %s: the answer is not an invocation result: %w", in.RunnerID, err)
	}
	return res, nil
}

// ecsStartedBy is RunTask's startedBy (at most 36 characters).
func ecsStartedBy(runnerID string) string {
	if len(runnerID) > 36 {
		return runnerID[:36]
	}
	return runnerID
}

// runTask starts the runner's task definition on Fargate and waits for
// the task to stop.
func (a *Activities) runTask(ctx context.Context, in InvokeRunnerInput) (InvokeRunnerResult, error) {
	taskDef, _ := in.Outputs["task_definition"].(string)
	cluster, _ := in.Outputs["cluster"].(string)
	if cluster == "" {
		cluster = in.Provider.Cluster
	}
	var subnets []string
	if raw, ok := in.Outputs["subnets"].([]any); ok {
		for _, s := range raw {
			if v, ok := s.(string); ok {
				subnets = append(subnets, v)
			}
		}
	}
	if len(subnets) == 0 {
		subnets = in.Provider.Subnets
	}
	if taskDef == "" || cluster == "" || len(subnets) == 0 {
		return InvokeRunnerResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("runner %s: ECS RunTask needs the task definition, cluster and subnets (outputs %v)", in.RunnerID, in.Outputs), ErrTypeBadInput, nil)
	}
	newClient := a.Invokers.ECS
	if newClient == nil {
		newClient = defaultECS
	}
	c, err := newClient(ctx, in.Provider)
	if err != nil {
		return InvokeRunnerResult{}, err
	}
	res := InvokeRunnerResult{Via: "ecs-run-task"}
	res.RunnerID, res.StartedAt, res.ExitCode, res.Jobs = in.RunnerID, time.Now().UTC(), -1, []agentapi.JobReport{}
	startedBy := ecsStartedBy(in.RunnerID)

	// An earlier attempt's task, if one runs, is this invocation's.
	arn := ""
	listed, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: &cluster, StartedBy: &startedBy})
	if err != nil {
		return InvokeRunnerResult{}, fmt.Errorf("list the tasks of runner %s: %w", in.RunnerID, err)
	}
	if len(listed.TaskArns) > 0 {
		arn = listed.TaskArns[0]
	} else {
		run := &ecs.RunTaskInput{
			Cluster: &cluster, TaskDefinition: &taskDef, LaunchType: ecstypes.LaunchTypeFargate, Count: aws.Int32(1),
			StartedBy: &startedBy, ReferenceId: aws.String(in.RunnerID), ClientToken: aws.String("gosling-" + in.RunnerID),
			NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
				Subnets: subnets, AssignPublicIp: ecstypes.AssignPublicIpDisabled,
			}},
			PropagateTags: ecstypes.PropagateTagsTaskDefinition,
			Tags:          []ecstypes.Tag{{Key: aws.String("gosling:runner"), Value: aws.String(in.RunnerID)}},
		}
		// A runner bought as spot runs on the FARGATE_SPOT capacity
		// provider (the module's capacity_provider output); RunTask takes
		// a capacity provider strategy or a launch type, not both.
		if cp, _ := in.Outputs["capacity_provider"].(string); cp == "FARGATE_SPOT" {
			run.LaunchType = ""
			run.CapacityProviderStrategy = []ecstypes.CapacityProviderStrategyItem{{CapacityProvider: aws.String(cp), Weight: 1}}
		}
		out, err := c.RunTask(ctx, run)
		if err != nil {
			return InvokeRunnerResult{}, fmt.Errorf("ECS RunTask for runner %s: %w", in.RunnerID, err)
		}
		if len(out.Tasks) == 0 || out.Tasks[0].TaskArn == nil {
			reasons := []string{}
			for _, f := range out.Failures {
				reasons = append(reasons, aws.ToString(f.Reason))
			}
			return InvokeRunnerResult{}, fmt.Errorf("ECS RunTask for runner %s started no task: %s", in.RunnerID, strings.Join(reasons, "; "))
		}
		arn = *out.Tasks[0].TaskArn
	}
	res.TaskARN = arn
	every := a.Invokers.PollInterval
	if every <= 0 {
		every = 5 * time.Second
	}
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_, err := c.StopTask(sctx, &ecs.StopTaskInput{Cluster: &cluster, Task: &arn, Reason: aws.String("gosling: the runner's workflow ended its invocation")})
			cancel()
			return res, errors.Join(ctx.Err(), err)
		case <-time.After(every):
		}
		d, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: &cluster, Tasks: []string{arn}})
		if err != nil {
			continue // transient; the next look may work
		}
		if len(d.Tasks) == 0 || aws.ToString(d.Tasks[0].LastStatus) != "STOPPED" {
			continue
		}
		t := d.Tasks[0]
		res.FinishedAt = time.Now().UTC()
		for _, ct := range t.Containers {
			if ct.ExitCode != nil {
				res.ExitCode = int(*ct.ExitCode)
			}
		}
		if res.ExitCode != 0 {
			res.Error = fmt.Sprintf("the task stopped: %s (exit code %d)", aws.ToString(t.StoppedReason), res.ExitCode)
		}
		return res, nil
	}
}
