package activities

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/lambdatest"
	"github.com/gosling-ci/gosling/internal/testbin"
	"github.com/gosling-ci/gosling/tofu"
	"go.temporal.io/sdk/temporal"
)

// ecsServer speaks ECS's JSON protocol (awsJson1_1: POST /, X-Amz-Target
// AmazonEC2ContainerServiceV20141113.<Operation>) as far as InvokeRunner
// uses it, keeping each request it decodes.
type ecsServer struct {
	mu       sync.Mutex
	calls    []string
	run      map[string]any
	stop     map[string]any
	running  []string // task ARNs ListTasks finds
	describe int      // DescribeTasks answers RUNNING this many times, then STOPPED
	exitCode int
}

func (s *ecsServer) handler(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.Header.Get("X-Amz-Target")
		op, ok := strings.CutPrefix(target, "AmazonEC2ContainerServiceV20141113.")
		if r.Method != http.MethodPost || !ok || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" || !strings.Contains(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256") {
			t.Errorf("not an ECS JSON request: %s %s %q %q", r.Method, target, r.Header.Get("Content-Type"), r.Header.Get("Authorization"))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("%s: body %s: %v", op, b, err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.calls = append(s.calls, op)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		arn := "arn:aws:ecs:eu-central-1:123456789012:task/runners/0f1e2d3c"
		switch op {
		case "ListTasks":
			_ = json.NewEncoder(w).Encode(map[string]any{"taskArns": s.running})
		case "RunTask":
			s.run = body
			_ = json.NewEncoder(w).Encode(map[string]any{"tasks": []any{map[string]any{"taskArn": arn, "lastStatus": "PROVISIONING"}}, "failures": []any{}})
		case "DescribeTasks":
			status := "STOPPED"
			if s.describe > 0 {
				s.describe--
				status = "RUNNING"
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"tasks": []any{map[string]any{
				"taskArn": arn, "lastStatus": status, "stoppedReason": "Essential container in task exited",
				"containers": []any{map[string]any{"name": "runner", "exitCode": s.exitCode}},
			}}, "failures": []any{}})
		case "StopTask":
			s.stop = body
			_ = json.NewEncoder(w).Encode(map[string]any{"task": map[string]any{"taskArn": arn, "lastStatus": "STOPPING"}})
		default:
			t.Errorf("unexpected ECS operation %s", op)
			w.WriteHeader(http.StatusBadRequest)
		}
	})
}

func ecsActivities(t *testing.T, s *ecsServer) *Activities {
	srv := httptest.NewServer(s.handler(t))
	t.Cleanup(srv.Close)
	return &Activities{Invokers: Invokers{
		PollInterval: 10 * time.Millisecond,
		ECS: func(ctx context.Context, p fly.Provider) (*ecs.Client, error) {
			return ecs.New(ecs.Options{
				Region: p.Region, BaseEndpoint: aws.String(srv.URL),
				Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
			}), nil
		},
	}}
}

var awsInvoke = InvokeRunnerInput{
	RunnerID: "web-0a1b2c3d4e", Cloud: fly.CloudAWS, Provider: fly.Provider{Region: "eu-central-1", Cluster: "runners", Subnets: []string{"subnet-9"}},
	Outputs: map[string]any{"task_definition": "arn:aws:ecs:eu-central-1:123456789012:task-definition/gosling-web-0a1b2c3d4e:1", "cluster": "runners", "subnets": []any{"subnet-1", "subnet-2"}},
}

// On AWS a serverless runner is an ECS RunTask on Fargate, watched until
// the task stops; the request is the one the AWS SDK sends.
func TestInvokeRunnerECSRunTask(t *testing.T) {
	s := &ecsServer{describe: 2}
	a := ecsActivities(t, s)
	res, err := a.InvokeRunner(context.Background(), awsInvoke)
	if err != nil {
		t.Fatal(err)
	}
	if res.Via != "ecs-run-task" || res.ExitCode != 0 || res.Error != "" || !strings.HasSuffix(res.TaskARN, "task/runners/0f1e2d3c") {
		t.Errorf("result = %+v", res)
	}
	if got := strings.Join(s.calls, ","); got != "ListTasks,RunTask,DescribeTasks,DescribeTasks,DescribeTasks" {
		t.Errorf("calls = %s", got)
	}
	run := s.run
	net, _ := run["networkConfiguration"].(map[string]any)
	vpc, _ := net["awsvpcConfiguration"].(map[string]any)
	for k, want := range map[string]any{
		"cluster": "runners", "taskDefinition": awsInvoke.Outputs["task_definition"], "launchType": "FARGATE", "count": float64(1),
		"startedBy": "web-0a1b2c3d4e", "referenceId": "web-0a1b2c3d4e", "clientToken": "gosling-web-0a1b2c3d4e", "propagateTags": "TASK_DEFINITION",
	} {
		if run[k] != want {
			t.Errorf("RunTask %s = %v, want %v", k, run[k], want)
		}
	}
	if subnets, _ := vpc["subnets"].([]any); len(subnets) != 2 || subnets[0] != "subnet-1" || vpc["assignPublicIp"] != "DISABLED" {
		t.Errorf("RunTask awsvpcConfiguration = %v", vpc)
	}
}

// A runner bought as spot starts on the FARGATE_SPOT capacity provider,
// with no launch type (RunTask refuses both).
func TestInvokeRunnerECSFargateSpot(t *testing.T) {
	s := &ecsServer{}
	a := ecsActivities(t, s)
	in := awsInvoke
	in.Outputs = map[string]any{"capacity_provider": "FARGATE_SPOT"}
	for k, v := range awsInvoke.Outputs {
		in.Outputs[k] = v
	}
	if _, err := a.InvokeRunner(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	strategy, _ := s.run["capacityProviderStrategy"].([]any)
	item, _ := func() (map[string]any, bool) {
		if len(strategy) != 1 {
			return nil, false
		}
		m, ok := strategy[0].(map[string]any)
		return m, ok
	}()
	if _, has := s.run["launchType"]; has || item["capacityProvider"] != "FARGATE_SPOT" || item["weight"] != float64(1) {
		t.Errorf("RunTask = %v", s.run)
	}
}

// A retried invocation joins the task an earlier attempt started; a
// failing task is a result, not an error; a cancelled invocation stops the
// task.
func TestInvokeRunnerECSJoinsStopsAndFails(t *testing.T) {
	s := &ecsServer{running: []string{"arn:aws:ecs:eu-central-1:123456789012:task/runners/0f1e2d3c"}, exitCode: 1}
	a := ecsActivities(t, s)
	res, err := a.InvokeRunner(context.Background(), awsInvoke)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(s.calls, ","), "RunTask") || res.ExitCode != 1 || !strings.Contains(res.Error, "exit code 1") {
		t.Errorf("calls %v, result %+v", s.calls, res)
	}

	s = &ecsServer{describe: 1 << 30}
	a = ecsActivities(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = a.InvokeRunner(ctx, awsInvoke)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled invocation: %v", err)
	}
	if s.stop == nil || !strings.HasSuffix(s.stop["task"].(string), "0f1e2d3c") || s.stop["cluster"] != "runners" {
		t.Errorf("StopTask = %v", s.stop)
	}
}

// On Yandex a serverless runner is invoked by an HTTPS request with an IAM
// token (here from $YC_IAM_TOKEN through internal/yandexauth), whose
// answer comes when the job is done.
func TestInvokeRunnerYandexHTTPS(t *testing.T) {
	t.Setenv("YC_IAM_TOKEN", "t1.test-iam-token")
	var got agentapi.Invoke
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/invoke" || r.Header.Get("Authorization") != "Bearer t1.test-iam-token" {
			t.Errorf("request %s %s %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&got)
		_ = json.NewEncoder(w).Encode(agentapi.InvokeResult{RunnerID: got.RunnerID, Jobs: []agentapi.JobReport{{JobID: 7, Status: agentapi.JobSuccess}}})
	}))
	t.Cleanup(srv.Close)
	a := &Activities{Invokers: Invokers{HTTP: srv.Client()}}
	res, err := a.InvokeRunner(context.Background(), InvokeRunnerInput{
		RunnerID: "web-1", Cloud: fly.CloudYandex, Outputs: map[string]any{"invoke_url": srv.URL + "/"}, WaitTimeoutSeconds: 300,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.RunnerID != "web-1" || got.WaitTimeoutSeconds != 300 || res.Via != "http" || len(res.Jobs) != 1 || res.Jobs[0].JobID != 7 {
		t.Errorf("sent %+v, result %+v", got, res)
	}
	// No invoke_url: refused, not retried.
	if _, err := a.InvokeRunner(context.Background(), InvokeRunnerInput{RunnerID: "web-1", Cloud: fly.CloudYandex}); err == nil || !strings.Contains(err.Error(), "invoke_url") {
		t.Errorf("without invoke_url: %v", err)
	}
}

// A module that needs what MG/config.fly does not give is refused before
// OpenTofu runs, with an error retrying cannot fix and that says what to
// set.
func TestApplyMachineRefusesMissingAgentDelivery(t *testing.T) {
	ex, err := tofu.New(testbin.Tofu(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := &Activities{Tofu: ex, Agent: AgentSettings{Release: fly.AgentRelease{Image: "cr.example.com/runner:1"}}}
	egg := fly.Egg{Name: "web", GitLab: fly.GitLab{Host: "gitlab.example.com"}, Runner: fly.Runner{CPU: 2, Memory: 4 * fly.GiB, Disk: 20 * fly.GiB, Image: "alpine:3.20"}}
	_, err = a.ApplyMachine(context.Background(), ApplyMachineInput{
		RunnerID: "web-1", Egg: egg, Cloud: fly.CloudAWS, Kind: fly.RunnerVM, Running: true,
		Provider: fly.Provider{Region: "eu-central-1", Subnets: []string{"subnet-1"}}, TokenRef: "aws-sm://gosling/runners/web-1/token",
	})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || !strings.Contains(err.Error(), "agent.url") {
		t.Errorf("a cloud VM without agent.url: %v", err)
	}
}

// An invocation whose gitlab-runner failed before taking a job (here the
// FATAL of a run-single flag its version lacks) is an error the workflow
// retries and then reports, not a quiet "no job came": the job the runner
// was made for is still pending. One whose wait for a job simply ran out
// is not.
func TestInvokeRunnerCrashWithoutJobIsAnError(t *testing.T) {
	t.Setenv("YC_IAM_TOKEN", "t1.test-iam-token")
	answer := agentapi.InvokeResult{RunnerID: "web-1", Jobs: []agentapi.JobReport{}, ExitCode: 1,
		Error: "gitlab-runner exited with status 1 before it took a job: FATAL: flag provided but not defined: -config"}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(srv.Close)
	a := &Activities{Invokers: Invokers{HTTP: srv.Client()}}
	in := InvokeRunnerInput{RunnerID: "web-1", Cloud: fly.CloudYandex, Outputs: map[string]any{"invoke_url": srv.URL}}
	if _, err := a.InvokeRunner(context.Background(), in); err == nil || !strings.Contains(err.Error(), "flag provided but not defined") {
		t.Errorf("crashed invocation: %v, want its error", err)
	}
	answer = agentapi.InvokeResult{RunnerID: "web-1", Jobs: []agentapi.JobReport{}, ExitCode: 0}
	if res, err := a.InvokeRunner(context.Background(), in); err != nil || len(res.Jobs) != 0 {
		t.Errorf("no job within the wait: %+v %v, want an empty result", res, err)
	}
}

// runtime plays a function's runtime against the Lambda stand-in's Runtime
// API for one event: it takes the event, then answers with answer(event)
// as a response, or as an error when fail is set.
func runtime(t *testing.T, rt *lambdatest.Server, fail bool, answer func([]byte) any) {
	go func() {
		resp, err := http.Get("http://" + rt.Addr() + "/2018-06-01/runtime/invocation/next")
		if err != nil {
			return
		}
		ev, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		kind := "response"
		if fail {
			kind = "error"
		}
		b, _ := json.Marshal(answer(ev))
		r, err := http.Post("http://"+rt.Addr()+"/2018-06-01/runtime/invocation/"+id+"/"+kind, "application/json", strings.NewReader(string(b)))
		if err == nil {
			r.Body.Close()
		}
	}()
}

// A short AWS job runs as a Lambda function: InvokeRunner invokes it
// (RequestResponse, SigV4) with the runner and its wait, and the function's
// answer is the invocation's result; a function that fails is the
// invocation's error; a function that does not exist is refused for good.
func TestInvokeRunnerLambda(t *testing.T) {
	rt := lambdatest.New("gosling-web-0a1b2c3d4e", time.Minute)
	t.Cleanup(rt.Close)
	a := &Activities{Invokers: Invokers{Lambda: func(ctx context.Context, p fly.Provider) (*lambda.Client, error) {
		return lambda.New(lambda.Options{Region: p.Region, BaseEndpoint: aws.String(rt.URL),
			Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")}), nil
	}}}
	in := InvokeRunnerInput{RunnerID: "web-0a1b2c3d4e", Cloud: fly.CloudAWS, Provider: fly.Provider{Region: "eu-central-1"}, WaitTimeoutSeconds: 120,
		Outputs: map[string]any{"platform": "lambda", "function_name": "gosling-web-0a1b2c3d4e", "task_definition": ""}}
	var got agentapi.Invoke
	runtime(t, rt, false, func(ev []byte) any {
		_ = json.Unmarshal(ev, &got)
		return agentapi.InvokeResult{RunnerID: got.RunnerID, ExitCode: 0, Jobs: []agentapi.JobReport{{JobID: 7, Status: agentapi.JobSuccess}}}
	})
	res, err := a.InvokeRunner(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if got.RunnerID != in.RunnerID || got.WaitTimeoutSeconds != 120 || res.Via != "lambda-invoke" || len(res.Jobs) != 1 || res.Jobs[0].JobID != 7 || res.Error != "" {
		t.Errorf("sent %+v, result %+v", got, res)
	}
	runtime(t, rt, true, func([]byte) any {
		return map[string]string{"errorMessage": "gitlab-runner: exec format error", "errorType": "Runtime.ExitError"}
	})
	res, err = a.InvokeRunner(context.Background(), in)
	if err != nil || !strings.Contains(res.Error, "Unhandled") || !strings.Contains(res.Error, "exec format error") {
		t.Errorf("a failed function: %+v, %v", res, err)
	}
	in.Outputs["function_name"] = "gosling-other"
	_, err = a.InvokeRunner(context.Background(), in)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() {
		t.Errorf("a function that does not exist: %v", err)
	}
	if rt.Invocations() != 2 {
		t.Errorf("%d invocations reached the function, want 2", rt.Invocations())
	}
}
