package activities

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/lambdatest"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/testbin"
)

// readyClock is MotherGoose's agent API as a timing point: it answers
// every agent call and notes when the first ready report came.
type readyClock struct {
	*httptest.Server
	mu    sync.Mutex
	ready time.Time
}

func newReadyClock(b *testing.B) *readyClock {
	c := &readyClock{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, "/ready") {
			c.mu.Lock()
			if c.ready.IsZero() {
				c.ready = time.Now()
			}
			c.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	b.Cleanup(c.Close)
	return c
}

func (c *readyClock) readyAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// processECS is an ECS stand-in for the benchmark that runs a task as
// Fargate would, as a process on this machine: RunTask starts the task
// definition's container command (what internal/agentapi.MachineContract
// renders for a Fargate runner: gosling agent run --one-job), DescribeTasks
// says RUNNING until it exits, then STOPPED with its exit code. Its
// protocol is ECS's JSON 1.1, as InvokeRunner's SDK client speaks it.
type processECS struct {
	*httptest.Server
	command []string
	env     []string

	mu   sync.Mutex
	proc *exec.Cmd
	done chan struct{}
	code int
}

func newProcessECS(b *testing.B, command, env []string) *processECS {
	s := &processECS{command: command, env: env}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonEC2ContainerServiceV20141113.")
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		arn := "arn:aws:ecs:eu-central-1:123456789012:task/runners/bench"
		s.mu.Lock()
		defer s.mu.Unlock()
		switch op {
		case "ListTasks":
			_ = json.NewEncoder(w).Encode(map[string]any{"taskArns": []string{}})
		case "RunTask":
			cmd := exec.Command(s.command[0], s.command[1:]...)
			cmd.Env = s.env
			if err := cmd.Start(); err != nil {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			s.proc, s.done = cmd, make(chan struct{})
			go func(done chan struct{}) {
				_ = cmd.Wait()
				s.mu.Lock()
				s.code = cmd.ProcessState.ExitCode()
				s.mu.Unlock()
				close(done)
			}(s.done)
			_ = json.NewEncoder(w).Encode(map[string]any{"tasks": []any{map[string]any{"taskArn": arn, "lastStatus": "PROVISIONING"}}, "failures": []any{}})
		case "DescribeTasks":
			status := "RUNNING"
			select {
			case <-s.done:
				status = "STOPPED"
			default:
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"tasks": []any{map[string]any{
				"taskArn": arn, "lastStatus": status, "stoppedReason": "Essential container in task exited",
				"containers": []any{map[string]any{"name": "runner", "exitCode": s.code}},
			}}, "failures": []any{}})
		case "StopTask":
			if s.proc != nil {
				_ = s.proc.Process.Kill()
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"task": map[string]any{"taskArn": arn, "lastStatus": "STOPPING"}})
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	b.Cleanup(s.Close)
	return s
}

// BenchmarkLambdaVsFargateStart times a short AWS serverless runner's
// start each way, from InvokeRunner's call to the agent's ready report and
// to the job's first trace line in the GitLab test server: on Lambda, the
// Invoke API and the Runtime API (lambdatest) to an agent started as the
// function (gosling-agent agent serve --lambda); on Fargate, ECS RunTask
// to a stand-in that starts the task's container command as a process
// (gosling-agent agent run --one-job), watched with DescribeTasks.
//
// What it shows: the agent's and the protocols' share of a start on each
// path, the same binary and the same job. What it cannot show: the
// clouds' own provisioning, which dominates a real start: a Fargate task
// waits for a host, an ENI in the subnet and the image's pull (tens of
// seconds), a Lambda function's cold start for a container image is a few
// seconds and a warm one none. Here both start a local process at once.
func BenchmarkLambdaVsFargateStart(b *testing.B) {
	const rounds = 3
	gosling, agentBin := testbin.Gosling(b), testbin.GoslingAgent(b)
	gl := gitlabtest.New(gitlabtest.WithLongPolling(5 * time.Second))
	b.Cleanup(gl.Close)
	project := gl.AddProject("acme/web", gl.AddGroup("acme", 0).ID)
	runner := gl.AddRunner(gitlabtest.Runner{ProjectID: project.ID, Type: "project_type", RunUntagged: true, Description: "gosling/web/r1"})
	local, err := secretstore.OpenLocal(filepath.Join(b.TempDir(), "secrets"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := secretstore.NewResolver(local).Put(context.Background(), "local://runners/r1/token", runner.Token); err != nil {
		b.Fatal(err)
	}
	// The machine's own agent credential, as MintAgentCredential writes it.
	if _, err := secretstore.NewResolver(local).Put(context.Background(), "local://runners/r1/agent", AgentCredentialPrefix+"bench"); err != nil {
		b.Fatal(err)
	}
	wrapper, err := runnerstandin.WriteWrapper(filepath.Join(b.TempDir(), "bin"), gosling)
	if err != nil {
		b.Fatal(err)
	}
	config := func(api string) string {
		cfg, _ := json.Marshal(agentapi.Config{
			RunnerID: "r1", Egg: "web", GitLabURL: gl.URL(), TokenRef: "local://runners/r1/token", AgentRef: "local://runners/r1/agent", SecretsDir: local.Dir(), APIURL: api, HeartbeatSeconds: 1,
			Runner: agentapi.RunnerConfig{Binary: wrapper, Executor: agentapi.ExecutorShell, Concurrent: 1, Mode: agentapi.ModeSingle, WaitTimeoutSeconds: 60},
		})
		return string(cfg)
	}
	creds := credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")
	// firstLine waits for the job's first trace line.
	firstLine := func(jobID int64) time.Time {
		for deadline := time.Now().Add(2 * time.Minute); len(gl.Trace(jobID)) == 0; time.Sleep(2 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("job %d never logged", jobID)
			}
		}
		return time.Now()
	}
	pending := func() int64 {
		p, err := gl.CreatePipeline(project.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "timed", Script: []string{"true"}}}})
		if err != nil {
			b.Fatal(err)
		}
		return gl.PipelineJobs(p.ID)[0].ID
	}
	type timing struct{ ready, line time.Duration }
	lambdaStart := func() timing {
		clock := newReadyClock(b)
		rt := lambdatest.New("gosling-r1", 15*time.Minute)
		defer rt.Close()
		a := &Activities{Invokers: Invokers{Lambda: func(ctx context.Context, p fly.Provider) (*lambda.Client, error) {
			return lambda.New(lambda.Options{Region: p.Region, BaseEndpoint: aws.String(rt.URL), Credentials: creds}), nil
		}}}
		job := pending()
		start := time.Now()
		// Lambda starts the function's execution environment for an
		// invocation that finds none.
		fn := exec.Command(agentBin, "agent", "serve", "--lambda", "--work-dir", filepath.Join(b.TempDir(), "fn"), "--config-env", agentapi.EnvAgentConfig, "--auth", agentapi.InvokeAuthPlatform)
		fn.Env = append(os.Environ(), agent.EnvLambdaRuntimeAPI+"="+rt.Addr(), agentapi.EnvAgentConfig+"="+config(clock.URL))
		if err := fn.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = fn.Process.Kill(); _ = fn.Wait() }()
		// A function that never answers (its agent refused its config,
		// say) fails the benchmark instead of waiting out Lambda's timeout.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		res, err := a.InvokeRunner(ctx, InvokeRunnerInput{RunnerID: "r1", Cloud: fly.CloudAWS, Provider: fly.Provider{Region: "eu-central-1"}, WaitTimeoutSeconds: 60,
			Outputs: map[string]any{"platform": "lambda", "function_name": "gosling-r1"}})
		if err != nil || res.Error != "" || len(res.Jobs) != 1 {
			b.Fatalf("lambda invocation: %+v %v", res, err)
		}
		return timing{ready: clock.readyAt().Sub(start), line: firstLine(job).Sub(start)}
	}
	fargateStart := func() timing {
		clock := newReadyClock(b)
		c, err := agentapi.MachineContract(agentapi.ContractInput{Cloud: "aws", Kind: "serverless", MaxRun: time.Hour, AgentImage: "runner", Config: agentapi.Config{RunnerID: "r1", Egg: "web", GitLabURL: gl.URL(), TokenRef: "local://runners/r1/token", AgentRef: "local://runners/r1/agent"}})
		if err != nil {
			b.Fatal(err)
		}
		args := append([]string{agentBin}, c.Args...)
		for i, a := range args {
			if a == agentapi.ContainerWorkDir {
				args[i] = filepath.Join(b.TempDir(), "task")
			}
		}
		ecsSrv := newProcessECS(b, args, append(os.Environ(), agentapi.EnvAgentConfig+"="+config(clock.URL)))
		a := &Activities{Invokers: Invokers{PollInterval: 50 * time.Millisecond, ECS: func(ctx context.Context, p fly.Provider) (*ecs.Client, error) {
			return ecs.New(ecs.Options{Region: p.Region, BaseEndpoint: aws.String(ecsSrv.URL), Credentials: creds}), nil
		}}}
		job := pending()
		start := time.Now()
		res, err := a.InvokeRunner(context.Background(), InvokeRunnerInput{RunnerID: "r1", Cloud: fly.CloudAWS, Provider: fly.Provider{Region: "eu-central-1", Cluster: "runners", Subnets: []string{"subnet-1"}},
			Outputs: map[string]any{"platform": "fargate", "task_definition": "arn:aws:ecs:eu-central-1:123456789012:task-definition/gosling-r1:1", "cluster": "runners"}})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("fargate task: %+v %v", res, err)
		}
		return timing{ready: clock.readyAt().Sub(start), line: firstLine(job).Sub(start)}
	}
	for b.Loop() {
		var lam, far timing
		for range rounds {
			t := lambdaStart()
			lam.ready, lam.line = lam.ready+t.ready, lam.line+t.line
			t = fargateStart()
			far.ready, far.line = far.ready+t.ready, far.line+t.line
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / rounds }
		b.ReportMetric(ms(lam.ready), "lambda-ready-ms")
		b.ReportMetric(ms(far.ready), "fargate-ready-ms")
		b.ReportMetric(ms(lam.line), "lambda-first-line-ms")
		b.ReportMetric(ms(far.line), "fargate-first-line-ms")
		b.ReportMetric(float64(lam.line)/float64(far.line), "lambda/fargate")
	}
}
