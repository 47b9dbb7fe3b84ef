package tofu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
)

// Executor runs OpenTofu in per-runner workspaces under a state directory.
// It is safe for concurrent use; operations on one workspace are serialised
// by a lock that also holds across processes (a second worker, a retried
// activity), and that the kernel releases if a process dies.
type Executor struct {
	binary string
	dir    string
	// Backend is where states are kept (local to this worker when zero).
	// Workers that share one remote backend tear down each other's
	// machines: a workspace's configuration is rebuilt from its state
	// when this worker has no directory for it.
	Backend Backend
	// LockTimeout is how long a run waits for another's state lock
	// (DefaultLockTimeout when 0).
	LockTimeout time.Duration

	prepareMu sync.Mutex
	prepared  bool
	// Env adds environment variables to every OpenTofu run. Values are
	// never logged.
	Env map[string]string
	// Credentials, when set, returns the cloud credentials one run of a
	// module needs (the worker's own identity: see CloudCredentials). They
	// are added to that run's environment only, never to a file, a
	// variable, a plan or a state.
	Credentials func(ctx context.Context, m Module) (map[string]string, error)
	// Filter, when set, rewrites every line of OpenTofu's output, and the
	// text of its errors, before OnLine, a log or an error sees them: a
	// secret masker's Mask, so that a value reaching OpenTofu's output does
	// not reach heartbeats, logs or workflow history.
	Filter func(string) string
}

// WorkspaceMeta is what Gosling records next to a workspace, so
// reconciliation can tell whose machine it is without reading state.
type WorkspaceMeta struct {
	Workspace string            `json:"workspace"`
	Module    Module            `json:"module"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	AppliedAt time.Time         `json:"applied_at"`
}

// ApplyRequest applies a module in a workspace.
type ApplyRequest struct {
	Workspace string
	Module    Module
	Vars      map[string]any
	Labels    map[string]string
	// OnLine receives each line OpenTofu prints (for heartbeats and logs).
	OnLine func(string)
	// Locks, when set, records the state locks the run takes and
	// releases the ones earlier attempts of this same apply left (locks.go).
	Locks *LockLedger
}

// Result is the outcome of an apply.
type Result struct {
	Outputs  map[string]any
	Duration time.Duration
}

var workspaceName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)

// New returns an executor for the OpenTofu binary, keeping workspaces under stateDir.
func New(binary, stateDir string) (*Executor, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("tofu binary %s: %w (run `make tools`)", binary, err)
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(abs, "workspaces"), 0o755); err != nil {
		return nil, err
	}
	// An empty CLI configuration keeps OpenTofu from reading the user's.
	rc := filepath.Join(abs, "tofurc")
	if _, err := os.Stat(rc); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(rc, []byte("# OpenTofu CLI configuration for Gosling's workspaces.\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return &Executor{binary: binary, dir: abs}, nil
}

// Binary is the OpenTofu binary the executor runs.
func (e *Executor) Binary() string { return e.binary }

// StateDir is the executor's state directory.
func (e *Executor) StateDir() string { return e.dir }

// WorkspaceDir is the directory of a workspace.
func (e *Executor) WorkspaceDir(ws string) string { return filepath.Join(e.dir, "workspaces", ws) }

// DefaultLockTimeout bounds the wait for another run's state lock.
const DefaultLockTimeout = 10 * time.Minute

// requestOutput is the root output that makes a workspace's state
// self-describing: its module and variables (which hold no secret), so a
// worker without the workspace's directory can rebuild its configuration
// to destroy it.
const requestOutput = "gosling_request"

// Apply makes or updates the module's resources in the workspace. A crashed
// or interrupted apply is safe to repeat: the workspace's state records what
// exists and the built-in modules' provisioners are idempotent. The state
// is locked for the run (OpenTofu's own lock: the backend's, waited for up
// to LockTimeout), and, within this worker, by a lock on the workspace's
// directory.
func (e *Executor) Apply(ctx context.Context, req ApplyRequest) (*Result, error) {
	if !workspaceName.MatchString(req.Workspace) {
		return nil, fmt.Errorf("workspace name %q: use lower-case letters, digits, dots, dashes and underscores", req.Workspace)
	}
	start := time.Now()
	dir := e.WorkspaceDir(req.Workspace)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	unlock, err := lockWorkspace(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if err := e.writeWorkspace(dir, req); err != nil {
		return nil, fmt.Errorf("prepare workspace %s: %w", req.Workspace, err)
	}
	creds, err := e.credentials(ctx, req.Module)
	if err != nil {
		return nil, err
	}
	tf, out, err := e.terraform(dir, req.OnLine, creds)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	if err := e.init(ctx, tf, out, req.Workspace, true); err != nil {
		return nil, err
	}
	apply := func() error { return tf.Apply(ctx, tfexec.LockTimeout(e.lockTimeout())) }
	if err := e.locked(ctx, tf, req.Workspace, req.Locks, apply); err != nil {
		return nil, fmt.Errorf("tofu apply %s in %s: %w", req.Module, req.Workspace, lastLines(err, out))
	}
	outs, err := tf.Output(ctx)
	if err != nil {
		return nil, fmt.Errorf("tofu output in %s: %w", req.Workspace, err)
	}
	res := &Result{Outputs: map[string]any{}, Duration: time.Since(start)}
	for k, v := range outs {
		if k == requestOutput {
			continue
		}
		var x any
		if err := json.Unmarshal(v.Value, &x); err == nil {
			res.Outputs[k] = x
		}
	}
	if err := e.touchMeta(dir, req); err != nil {
		return nil, err
	}
	return res, nil
}

// Destroy removes everything the workspace made, then the workspace itself.
// A workspace that does not exist is already destroyed. On a remote
// backend, a workspace this worker has no directory for (another worker
// made it) is rebuilt from its state first.
func (e *Executor) Destroy(ctx context.Context, workspace string, onLine func(string)) error {
	return e.DestroyWith(ctx, workspace, onLine, nil)
}

// DestroyWith is Destroy with a ledger of the state locks earlier attempts
// of this same teardown took (see LockLedger).
func (e *Executor) DestroyWith(ctx context.Context, workspace string, onLine func(string), locks *LockLedger) error {
	if !workspaceName.MatchString(workspace) {
		return fmt.Errorf("workspace name %q is invalid", workspace)
	}
	dir := e.WorkspaceDir(workspace)
	_, statErr := os.Stat(filepath.Join(dir, "main.tf.json"))
	if errors.Is(statErr, fs.ErrNotExist) && !e.Backend.Remote() {
		return os.RemoveAll(dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	unlock, err := lockWorkspace(ctx, dir)
	if err != nil {
		return err
	}
	defer unlock()
	var mod Module
	if errors.Is(statErr, fs.ErrNotExist) {
		found, m, err := e.rebuild(ctx, dir, workspace, onLine)
		if err != nil {
			return fmt.Errorf("rebuild workspace %s from its state: %w", workspace, err)
		}
		if !found {
			return os.RemoveAll(dir)
		}
		mod = m
	} else if mod, err = workspaceModule(dir); err != nil {
		return fmt.Errorf("workspace %s: %w", workspace, err)
	}
	creds, err := e.credentials(ctx, mod)
	if err != nil {
		return err
	}
	tf, out, err := e.terraform(dir, onLine, creds)
	if err != nil {
		return err
	}
	defer out.Close()
	switch err := e.init(ctx, tf, out, workspace, false); {
	case errors.Is(err, errNoWorkspace):
		// Destroyed by another worker: only this worker's directory is left.
		out.Close()
		return os.RemoveAll(dir)
	case err != nil:
		return err
	}
	destroy := func() error { return tf.Destroy(ctx, tfexec.LockTimeout(e.lockTimeout())) }
	if err := e.locked(ctx, tf, workspace, locks, destroy); err != nil {
		return fmt.Errorf("tofu destroy in %s: %w", workspace, lastLines(err, out))
	}
	if e.Backend.Remote() {
		// The workspace's (now empty) state goes too.
		if err := tf.WorkspaceSelect(ctx, "default"); err != nil {
			return fmt.Errorf("tofu workspace select default: %w", lastLines(err, out))
		}
		if err := tf.WorkspaceDelete(ctx, workspace, tfexec.LockTimeout(e.lockTimeout())); err != nil {
			return fmt.Errorf("tofu workspace delete %s: %w", workspace, lastLines(err, out))
		}
	}
	// Nothing of a destroyed machine stays on the worker (one workspace per
	// serverless job would pile up); the audit log keeps its lifecycle.
	return os.RemoveAll(dir)
}

// WorkspaceNames lists the workspaces whose states the backend holds (on a
// local backend, the workspace directories on this worker's disk). On a
// remote backend it runs tofu workspace list in a directory of its own.
func (e *Executor) WorkspaceNames(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	if !e.Backend.Remote() {
		entries, err := os.ReadDir(filepath.Join(e.dir, "workspaces"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, d := range entries {
			if d.IsDir() {
				out[d.Name()] = true
			}
		}
		return out, nil
	}
	dir := filepath.Join(e.dir, "list")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	unlock, err := lockWorkspace(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	_, lw, names, err := e.backendWorkspaces(ctx, dir, nil)
	if err != nil {
		return nil, err
	}
	defer lw.Close()
	for _, n := range names {
		if n != "default" {
			out[n] = true
		}
	}
	return out, nil
}

// Workspace is one workspace found on disk.
type Workspace struct {
	Name string        `json:"name"`
	Meta WorkspaceMeta `json:"meta"`
	// Resources are the addresses in its state; empty when nothing was made.
	Resources []string `json:"resources"`
}

// Workspaces lists the workspaces and the resources each one's state holds.
func (e *Executor) Workspaces() ([]Workspace, error) {
	entries, err := os.ReadDir(filepath.Join(e.dir, "workspaces"))
	if err != nil {
		return nil, err
	}
	var out []Workspace
	for _, d := range entries {
		if !d.IsDir() {
			continue
		}
		w := Workspace{Name: d.Name(), Resources: []string{}}
		dir := e.WorkspaceDir(d.Name())
		if b, err := os.ReadFile(filepath.Join(dir, ".gosling.json")); err == nil {
			_ = json.Unmarshal(b, &w.Meta)
		}
		res, err := stateResources(filepath.Join(dir, "terraform.tfstate"))
		if err != nil {
			return nil, fmt.Errorf("workspace %s: %w", d.Name(), err)
		}
		w.Resources = res
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// stateResources reads resource addresses from a local state file.
func stateResources(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	var st struct {
		Resources []struct {
			Module    string `json:"module"`
			Mode      string `json:"mode"`
			Type      string `json:"type"`
			Name      string `json:"name"`
			Instances []any  `json:"instances"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	out := []string{}
	for _, r := range st.Resources {
		if r.Mode != "managed" || len(r.Instances) == 0 {
			continue
		}
		addr := r.Type + "." + r.Name
		if r.Module != "" {
			addr = r.Module + "." + addr
		}
		out = append(out, addr)
	}
	return out, nil
}

func (e *Executor) writeWorkspace(dir string, req ApplyRequest) error {
	source := req.Module.Source
	builtin := Module{Cloud: req.Module.Cloud, Kind: req.Module.Kind}
	sig, err := Inspect(builtin)
	if err != nil {
		return err
	}
	if source == "" {
		source = "./module"
		fsys, err := ModuleFS(builtin)
		if err != nil {
			return err
		}
		if err := os.RemoveAll(filepath.Join(dir, "module")); err != nil {
			return err
		}
		if err := copyFS(fsys, filepath.Join(dir, "module")); err != nil {
			return err
		}
	}
	// The root module forwards every variable to the runner module. It is
	// written as JSON, so no value is ever spliced into HCL text.
	variables := map[string]any{}
	call := map[string]any{"source": source}
	for name := range req.Vars {
		variables[name] = map[string]any{}
		call[name] = "${var." + name + "}"
	}
	outputs := map[string]any{}
	for _, o := range sig.Outputs {
		outputs[o] = map[string]any{"value": "${module.runner." + o + "}"}
	}
	// The request itself, so another worker can rebuild the workspace from
	// its state (rebuild): the module and every variable's value.
	varRefs := map[string]any{}
	for name := range req.Vars {
		varRefs[name] = "${var." + name + "}"
	}
	outputs[requestOutput] = map[string]any{"value": map[string]any{
		"module": map[string]any{"cloud": req.Module.Cloud, "kind": req.Module.Kind, "source": req.Module.Source},
		"vars":   varRefs,
	}}
	root := map[string]any{"module": map[string]any{"runner": call}, "output": outputs}
	if len(variables) > 0 {
		root["variable"] = variables
	}
	if e.Backend.Remote() {
		root["terraform"] = map[string]any{"backend": map[string]any{e.Backend.Kind: e.Backend.Block}}
	}
	if err := writeJSON(filepath.Join(dir, "main.tf.json"), root, 0o644); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, "terraform.tfvars.json"), req.Vars, 0o600)
}

// lockTimeout is LockTimeout as OpenTofu's -lock-timeout flag.
func (e *Executor) lockTimeout() string {
	return fmt.Sprintf("%ds", int(e.lockWait().Seconds()))
}

// lockWait is how long a run waits for a workspace's state lock.
func (e *Executor) lockWait() time.Duration {
	if e.LockTimeout <= 0 {
		return DefaultLockTimeout
	}
	return e.LockTimeout
}

// prepareBackend readies the backend's storage before the first run of
// this executor (Backend.prepare); a failure is tried again next run.
func (e *Executor) prepareBackend(ctx context.Context) error {
	if e.Backend.prepare == nil {
		return nil
	}
	e.prepareMu.Lock()
	defer e.prepareMu.Unlock()
	if e.prepared {
		return nil
	}
	if err := e.Backend.prepare(ctx); err != nil {
		return err
	}
	e.prepared = true
	return nil
}

// init runs tofu init and, on a remote backend, selects the workspace's
// own OpenTofu workspace (made when create is set and it does not exist).
func (e *Executor) init(ctx context.Context, tf *tfexec.Terraform, out *lineWriter, workspace string, create bool) error {
	if err := e.prepareBackend(ctx); err != nil {
		return err
	}
	if err := tf.Init(ctx, tfexec.Upgrade(false)); err != nil {
		return fmt.Errorf("tofu init in %s: %w", workspace, lastLines(err, out))
	}
	if !e.Backend.Remote() {
		return nil
	}
	err := tf.WorkspaceSelect(ctx, workspace)
	if err != nil && create {
		err = e.newWorkspace(ctx, tf, workspace)
	}
	if err != nil {
		if !create && strings.Contains(err.Error(), "doesn't exist") {
			return errNoWorkspace
		}
		return fmt.Errorf("tofu workspace %s: %w", workspace, lastLines(err, out))
	}
	return nil
}

// newWorkspace makes the workspace in the remote backend, or selects it
// when another worker made it meanwhile. The pg backend takes a lock of
// its own while it creates a workspace and refuses a second creator at
// once ("Already locked for workspace creation") whatever the lock
// timeout, so a refusal is retried with a growing pause for up to the
// executor's lock timeout.
func (e *Executor) newWorkspace(ctx context.Context, tf *tfexec.Terraform, workspace string) error {
	deadline := time.Now().Add(e.lockWait())
	pause := 100 * time.Millisecond
	for {
		err := tf.WorkspaceNew(ctx, workspace, tfexec.LockTimeout(e.lockTimeout()))
		if err == nil {
			return nil
		}
		if strings.Contains(err.Error(), "already exists") {
			return tf.WorkspaceSelect(ctx, workspace)
		}
		if !strings.Contains(err.Error(), "Already locked for workspace creation") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
		if err := tf.WorkspaceSelect(ctx, workspace); err == nil {
			return nil
		}
	}
}

// errNoWorkspace: the remote backend holds no state of the workspace.
var errNoWorkspace = errors.New("the backend holds no such workspace")

// rebuild writes the configuration of a workspace this worker has no
// directory for, from the request its state records (requestOutput). It
// returns false when the backend has no such workspace: nothing to
// destroy.
func (e *Executor) rebuild(ctx context.Context, dir, workspace string, onLine func(string)) (bool, Module, error) {
	tf, out, names, err := e.backendWorkspaces(ctx, dir, onLine)
	if err != nil {
		return false, Module{}, err
	}
	defer out.Close()
	if !slices.Contains(names, workspace) {
		return false, Module{}, nil
	}
	if err := tf.WorkspaceSelect(ctx, workspace); err != nil {
		return false, Module{}, fmt.Errorf("tofu workspace select: %w", lastLines(err, out))
	}
	outs, err := tf.Output(ctx)
	if err != nil {
		return false, Module{}, fmt.Errorf("tofu output: %w", lastLines(err, out))
	}
	o, ok := outs[requestOutput]
	if !ok {
		// Nothing was ever applied in it: an empty workspace.
		return true, Module{}, fmt.Errorf("its state records no %s output: it was made by another version of Gosling", requestOutput)
	}
	var recorded struct {
		Module Module         `json:"module"`
		Vars   map[string]any `json:"vars"`
	}
	if err := json.Unmarshal(o.Value, &recorded); err != nil {
		return false, Module{}, fmt.Errorf("read %s: %w", requestOutput, err)
	}
	return true, recorded.Module, e.writeWorkspace(dir, ApplyRequest{Workspace: workspace, Module: recorded.Module, Vars: recorded.Vars})
}

// workspaceModule reads the module a workspace on this worker's disk
// applies, from the request its configuration records.
func workspaceModule(dir string) (Module, error) {
	b, err := os.ReadFile(filepath.Join(dir, "main.tf.json"))
	if err != nil {
		return Module{}, err
	}
	var root struct {
		Output map[string]json.RawMessage `json:"output"`
	}
	var req struct {
		Value struct {
			Module Module `json:"module"`
		} `json:"value"`
	}
	if err := json.Unmarshal(b, &root); err != nil {
		return Module{}, fmt.Errorf("read main.tf.json: %w", err)
	}
	if raw, ok := root.Output[requestOutput]; ok {
		if err := json.Unmarshal(raw, &req); err != nil {
			return Module{}, fmt.Errorf("read main.tf.json's %s: %w", requestOutput, err)
		}
	}
	return req.Value.Module, nil
}

// credentials is Credentials for one run of m (none without the hook).
func (e *Executor) credentials(ctx context.Context, m Module) (map[string]string, error) {
	if e.Credentials == nil {
		return nil, nil
	}
	creds, err := e.Credentials(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("cloud credentials for module %s: %w", m, err)
	}
	return creds, nil
}

// backendWorkspaces writes into dir a configuration of the backend alone,
// initializes it and lists the backend's workspaces. The caller closes the
// returned writer of OpenTofu's output lines (lastLines closes it too).
func (e *Executor) backendWorkspaces(ctx context.Context, dir string, onLine func(string)) (*tfexec.Terraform, *lineWriter, []string, error) {
	root := map[string]any{"terraform": map[string]any{"backend": map[string]any{e.Backend.Kind: e.Backend.Block}}}
	if err := writeJSON(filepath.Join(dir, "main.tf.json"), root, 0o644); err != nil {
		return nil, nil, nil, err
	}
	tf, out, err := e.terraform(dir, onLine, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := e.prepareBackend(ctx); err != nil {
		out.Close()
		return nil, nil, nil, err
	}
	if err := tf.Init(ctx, tfexec.Upgrade(false)); err != nil {
		return nil, nil, nil, fmt.Errorf("tofu init: %w", lastLines(err, out))
	}
	names, _, err := tf.WorkspaceList(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tofu workspace list: %w", lastLines(err, out))
	}
	return tf, out, names, nil
}

func (e *Executor) touchMeta(dir string, req ApplyRequest) error {
	path := filepath.Join(dir, ".gosling.json")
	var meta WorkspaceMeta
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &meta)
	}
	now := time.Now().UTC()
	if meta.CreatedAt.IsZero() {
		meta.CreatedAt = now
	}
	meta.Workspace, meta.Module, meta.Labels, meta.AppliedAt = req.Workspace, req.Module, req.Labels, now
	return writeJSON(path, meta, 0o644)
}

// terraform prepares a tfexec handle whose output goes, line by line, to
// onLine, with the run's own credentials (creds) in its environment.
func (e *Executor) terraform(dir string, onLine func(string), creds map[string]string) (*tfexec.Terraform, *lineWriter, error) {
	tf, err := tfexec.NewTerraform(dir, e.binary)
	if err != nil {
		return nil, nil, err
	}
	env := map[string]string{
		"TF_CLI_CONFIG_FILE": filepath.Join(e.dir, "tofurc"),
		"CHECKPOINT_DISABLE": "1",
		"HOME":               os.Getenv("HOME"),
		"PATH":               os.Getenv("PATH"),
	}
	for k, v := range e.Backend.Env {
		env[k] = v
	}
	for k, v := range e.Env {
		env[k] = v
	}
	for k, v := range creds {
		env[k] = v
	}
	if err := tf.SetEnv(env); err != nil {
		return nil, nil, err
	}
	w := newLineWriter(onLine, e.Filter)
	tf.SetStdout(w)
	tf.SetStderr(w)
	return tf, w, nil
}

// lineWriter splits output into lines for a callback and keeps the last few
// for error messages, all passed through filter first.
type lineWriter struct {
	mu     sync.Mutex
	pw     *io.PipeWriter
	done   chan struct{}
	tail   []string
	filter func(string) string
}

func newLineWriter(onLine func(string), filter func(string) string) *lineWriter {
	pr, pw := io.Pipe()
	w := &lineWriter{pw: pw, done: make(chan struct{}), filter: filter}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			if filter != nil {
				line = filter(line)
			}
			w.mu.Lock()
			w.tail = append(w.tail, line)
			if len(w.tail) > 20 {
				w.tail = w.tail[1:]
			}
			w.mu.Unlock()
			if onLine != nil {
				onLine(line)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return w
}

func (w *lineWriter) Write(p []byte) (int, error) { return w.pw.Write(p) }

func (w *lineWriter) Close() error {
	err := w.pw.Close()
	<-w.done
	return err
}

func (w *lineWriter) lastLines() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var keep []string
	for _, l := range w.tail {
		if strings.TrimSpace(l) != "" {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return strings.Join(keep, " | ")
}

// lastLines adds OpenTofu's final output to an error; tfexec's own error
// often only says the exit status. tfexec's error may quote OpenTofu's
// stderr, so its text goes through the filter too.
func lastLines(err error, w *lineWriter) error {
	_ = w.pw.Close()
	<-w.done
	if w.filter != nil {
		err = filteredError{err: err, filter: w.filter}
	}
	if t := w.lastLines(); t != "" {
		return fmt.Errorf("%w: %s", err, t)
	}
	return err
}

// filteredError shows an error's text through a filter and keeps the error
// for errors.Is and errors.As.
type filteredError struct {
	err    error
	filter func(string) string
}

func (e filteredError) Error() string { return e.filter(e.err.Error()) }

func (e filteredError) Unwrap() error { return e.err }

// lockWorkspace takes the workspace's exclusive lock, waiting until ctx ends.
func lockWorkspace(ctx context.Context, dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock workspace: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock workspace %s: %w", filepath.Base(dir), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func copyFS(fsys fs.FS, dst string) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

func writeJSON(path string, v any, perm fs.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
