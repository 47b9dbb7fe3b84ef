package agent

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/internal/agentapi"
)

// ServeOptions are the inputs of Serve beside RunOptions.
type ServeOptions struct {
	// Listen is host:port to serve on; :0 picks a port. A served agent of
	// a work directory writes its URL to serve.url there.
	Listen string
	// Auth is InvokeAuthToken (default) or InvokeAuthPlatform.
	Auth string
}

// Serve is the agent of a serverless runner: an HTTP server that runs
// gitlab-runner once per invocation (POST /invoke, agentapi.Invoke): the
// request verifies the token, writes config.toml, runs `gitlab-runner
// run-single --max-builds 1 --wait-timeout N`, reports ready and the job
// to MotherGoose, and answers with an agentapi.InvokeResult when
// gitlab-runner exits. The request lasts the job, as Yandex Serverless
// Containers run work. One invocation runs at a time (409 otherwise). An
// invoker that goes away (its deadline, a cancelled workflow) stops
// gitlab-runner forcefully: the job is reported failed to GitLab. Serve
// returns when ctx ends or MaxRun passes.
func Serve(ctx context.Context, opts RunOptions, so ServeOptions) error {
	if opts.MaxRun > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.MaxRun)
		defer cancel()
	}
	a, err := newAgent(opts)
	if err != nil {
		return err
	}
	if a.cfg.Runner.Mode == "" {
		a.cfg.Runner.Mode = agentapi.ModeSingle
	}
	ln, err := net.Listen("tcp", so.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (choose another with --listen)", so.Listen, err)
	}
	defer ln.Close()
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.PathHealth, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST "+agentapi.PathInvoke, func(w http.ResponseWriter, r *http.Request) {
		if !mu.TryLock() {
			writeJSON(w, http.StatusConflict, map[string]string{"error": "busy", "detail": "this runner is running an invocation already"})
			return
		}
		defer mu.Unlock()
		var in agentapi.Invoke
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request", "detail": "the body must be an agentapi.Invoke"})
			return
		}
		if in.RunnerID != "" && in.RunnerID != a.cfg.RunnerID {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found", "detail": "this container runs runner " + a.cfg.RunnerID})
			return
		}
		if so.Auth != agentapi.InvokeAuthPlatform && !a.invokerAuthorized(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized", "detail": "send the runner token as a bearer token"})
			return
		}
		// The request's context ends when the invoker goes away, and when
		// the agent is told to stop: gitlab-runner never outlives it.
		ictx, cancel := context.WithCancelCause(r.Context())
		defer cancel(nil)
		stopInvocation := context.AfterFunc(ctx, func() { cancel(errors.New("the agent is stopping")) })
		defer stopInvocation()
		res := a.session(ictx, in.WaitTimeoutSeconds, agentapi.TriggerInvoke)
		writeJSON(w, http.StatusOK, res)
	})
	// An invocation's answer comes when its job is over: at most the
	// serverless limit of 60 minutes, with room for the runner's teardown.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 65 * time.Minute, IdleTimeout: 2 * time.Minute}
	url := "http://" + ln.Addr().String()
	if opts.WorkDir != "" {
		if err := writeFileAtomic(filepath.Join(opts.WorkDir, serveURLFile), []byte(url+"\n"), 0o600); err != nil {
			return err
		}
		b, _ := json.Marshal(State{PID: os.Getpid(), Phase: PhaseServing, Version: opts.Version, At: time.Now().UTC()})
		_ = writeFileAtomic(filepath.Join(opts.WorkDir, stateFile), b, 0o600)
	}
	a.log.Info("serving invocations", "url", url)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// An invocation under way stops its gitlab-runner (abort: up to 45 s)
	// and answers before the server goes.
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

func (a *agent) invokerAuthorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || got == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	token, _, err := a.tokens.current(ctx, a.cfg)
	if err != nil {
		a.log.Warn("invoke: cannot read the runner token", "error", err)
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// session runs gitlab-runner run-single for one job: verify the token,
// write config.toml, start, report ready, report the job, wait for the
// exit. ctx ending stops gitlab-runner forcefully. A gitlab-runner that
// exits non-zero without a job makes the result an error, never a quiet
// "no job": the invoker retries or reports it.
func (a *agent) session(ctx context.Context, waitSeconds int, trigger string) agentapi.InvokeResult {
	res := agentapi.InvokeResult{RunnerID: a.cfg.RunnerID, Jobs: []agentapi.JobReport{}, StartedAt: time.Now().UTC(), ExitCode: -1}
	fail := func(err error) agentapi.InvokeResult {
		res.Error, res.FinishedAt = err.Error(), time.Now().UTC()
		a.log.Warn("invocation failed", "error", err)
		return res
	}
	token, version, err := a.verifiedToken(ctx, trigger)
	if err != nil {
		return fail(err)
	}
	a.ran = nil
	if err := a.startRunner(ctx, token, a.runSingleFlags(waitSeconds)); err != nil {
		return fail(err)
	}
	a.setPhase(PhaseServing)
	if err := a.ready(ctx, token, version, trigger); err != nil {
		a.log.Warn("ready not reported; the runner runs all the same", "error", err)
	}
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-a.sup.exited():
			res.ExitCode = a.sup.code
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			a.drainOutput(rctx)
			a.report(rctx, a.watch.finishAll(""))
			cancel()
			res.Jobs = append(res.Jobs, a.ran...)
			res.FinishedAt = time.Now().UTC()
			a.sup.done = nil
			a.sup.removeConfig()
			a.setPhase(PhaseStarting)
			if res.ExitCode != 0 && len(res.Jobs) == 0 {
				// Not "no job": gitlab-runner failed (a flag its
				// version lacks, a bad configuration...), and the job
				// the runner was made for is still pending.
				return fail(fmt.Errorf("gitlab-runner exited with status %d before it took a job: %s", res.ExitCode, a.opts.Masker.Mask(a.sup.lastWords(3))))
			}
			a.log.Info("gitlab-runner is done", "exit_code", res.ExitCode, "jobs", len(res.Jobs))
			return res
		case r := <-a.output.events:
			a.report(ctx, []agentapi.JobReport{r})
		case <-poll.C:
			if reps, err := a.watch.poll(ctx, a.sup.listen); err == nil {
				a.report(ctx, reps)
			}
		case <-ctx.Done():
			a.log.Warn("the invocation ended before gitlab-runner: stopping it (SIGTERM)", "cause", context.Cause(ctx))
			a.sup.abort(45*time.Second, a.idle)
			res.ExitCode = a.sup.code
			a.sup.done = nil
			a.sup.removeConfig()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			a.drainOutput(rctx)
			a.report(rctx, a.watch.finishAll(""))
			cancel()
			res.Jobs = append(res.Jobs, a.ran...)
			return fail(errors.New("stopped: " + context.Cause(ctx).Error()))
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
