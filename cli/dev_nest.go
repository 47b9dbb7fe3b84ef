package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/rift"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

// devNest rewrites a Nest for the embedded default: every egg's GitLab is
// the given host (the GitLab test server, or a real instance), every runner
// runs on the local provider, and MotherGoose runs here with SQLite. The
// egg names, projects, shapes and pool limits stay as written.
func devNest(n *fly.Nest, gitlabHost string, insecure bool, stateDir string) *fly.Nest {
	out := *n
	out.Eggs = make([]fly.Egg, len(n.Eggs))
	for i, e := range n.Eggs {
		e.GitLab.Host, e.GitLab.Insecure, e.GitLab.Flavor = gitlabHost, insecure, "self-managed"
		e.Runner.Clouds = []string{fly.CloudLocal}
		e.Runner.Module = ""
		if e.Rift != nil {
			// The Rift gosling dev starts, not one the egg names.
			r := *e.Rift
			r.Endpoint = ""
			e.Rift = &r
		}
		out.Eggs[i] = e
	}
	mg := n.MotherGoose
	mg.Cloud, mg.Region = fly.CloudLocal, "local"
	mg.Database = fly.Database{Engine: "sqlite", Path: filepath.Join(stateDir, "gosling.db")}
	mg.Providers = map[string]fly.Provider{fly.CloudLocal: {Name: fly.CloudLocal, StateDir: filepath.Join(stateDir, "tofu")}}
	mg.Queue.Kind, mg.Triggers.Kind = "none", "none"
	// The runners' OpenTofu states stay under the state directory (local
	// state, one worker): the block's bucket and its keys are not used.
	mg.State = fly.TofuState{Backend: fly.StateLocal}
	// Local machines run this very binary and the gitlab-runner stand-in:
	// nothing to download, no version to update to.
	mg.Agent = fly.AgentRelease{}
	// The Nest repository is a project of the GitLab test server too, read
	// with the eggs' token there (custom jobs' pipelines run in it).
	mg.Nest.Host, mg.Nest.Token = "", ""
	out.MotherGoose = mg
	return &out
}

// nestSecrets lists every secret URI a Nest references, with what it is for.
func nestSecrets(n *fly.Nest) map[fly.SecretRef]string {
	out := map[fly.SecretRef]string{}
	for _, e := range n.Eggs {
		out[e.GitLab.Token] = "gitlab-token"
		out[e.GitLab.WebhookSecret] = "webhook-secret"
		for _, v := range e.Runner.Env {
			if !v.Secret.IsZero() {
				out[v.Secret] = "env"
			}
		}
		if r := e.Rift; r != nil && r.Enabled {
			if strings.Contains(r.AccessKey, "://") {
				out[fly.SecretRef(r.AccessKey)] = "rift-access-key"
			}
			if r.SecretKey != "" {
				out[r.SecretKey] = "rift-secret-key"
			}
			if r.Mirror != nil && r.Mirror.Password != "" {
				out[r.Mirror.Password] = "rift-mirror-password"
			}
		}
	}
	mg := n.MotherGoose
	for _, t := range mg.APIGateway.Auth.Tokens {
		out[t] = "api-token"
	}
	if !mg.Temporal.APIKey.IsZero() {
		out[mg.Temporal.APIKey] = "temporal-api-key"
	}
	if !mg.Database.DSN.IsZero() {
		out[mg.Database.DSN] = "database-dsn"
	}
	// Every webhook is checked against the Nest repository's secret too.
	if !mg.Nest.WebhookSecret.IsZero() {
		out[mg.Nest.WebhookSecret] = "nest-webhook-secret"
	}
	for _, p := range mg.Providers {
		if !p.ServiceAccountKey.IsZero() {
			out[p.ServiceAccountKey] = "service-account-key"
		}
	}
	return out
}

// seedDevSecrets gives every secret URI of the Nest a value in the local
// store: GitLab API tokens get the GitLab token in use; everything else a
// random value, generated once and kept across restarts.
func seedDevSecrets(ctx context.Context, r *secretstore.Resolver, n *fly.Nest, gitlabToken string) error {
	for ref, what := range nestSecrets(n) {
		if what == "gitlab-token" {
			if cur, err := r.Resolve(ctx, ref); err == nil && cur == gitlabToken {
				continue
			}
			if _, err := r.Put(ctx, ref, gitlabToken); err != nil {
				return err
			}
			continue
		}
		_, err := r.Resolve(ctx, ref)
		if err == nil {
			continue
		}
		if !errors.Is(err, secretstore.ErrNotFound) && !errors.Is(err, secretstore.ErrKeyNotFound) {
			return err
		}
		if _, err := r.Put(ctx, ref, "dev-"+what+"-"+randomHex(12)); err != nil {
			return err
		}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// loadTestProjects creates, in the GitLab test server, the groups and
// projects the Nest's eggs serve (with the IDs the Nest names), unless a
// restored snapshot already has them.
func loadTestProjects(gl *gitlabtest.Server, n *fly.Nest) {
	ensureGroups := func(namespace string) int64 {
		var parent int64
		full := ""
		for _, seg := range strings.Split(namespace, "/") {
			if full != "" {
				full += "/"
			}
			full += seg
			if g, ok := gl.GroupByFullPath(full); ok {
				parent = g.ID
				continue
			}
			parent = gl.AddGroup(seg, parent).ID
		}
		return parent
	}
	addProject := func(p fly.ProjectRef, fallbackNS string) {
		path := p.Path
		if path == "" {
			path = fmt.Sprintf("%s/project-%d", fallbackNS, p.ID)
		}
		if _, ok := gl.ProjectByPath(path); ok {
			return
		}
		ns := path[:strings.LastIndex(path, "/")]
		gid := ensureGroups(ns)
		if p.ID != 0 {
			gl.AddProjectWithID(p.ID, path, gid)
		} else {
			gl.AddProject(path, gid)
		}
	}
	for _, e := range n.Eggs {
		for _, p := range e.Projects {
			addProject(p, e.Name)
		}
		if e.Group != nil {
			if _, ok := gl.GroupByID(e.Group.ID); !ok {
				gl.AddGroupWithID(e.Group.ID, e.Name, 0)
			}
			g, _ := gl.GroupByID(e.Group.ID)
			for _, name := range []string{"service-a", "service-b"} {
				if _, ok := gl.ProjectByPath(g.FullPath + "/" + name); !ok {
					gl.AddProject(g.FullPath+"/"+name, g.ID)
				}
			}
		}
	}
	if p := n.MotherGoose.Nest.Project; p != "" {
		addProject(fly.ProjectRef{Path: p}, "")
		putNestCIConfig(gl, p, n.Jobs)
	}
}

// putNestCIConfig commits to the Nest project the .gitlab-ci.yml that
// custom jobs' pipelines run (the one the README gives: eval
// "$GOSLING_JOB_SCRIPT" on a runner with the job's tags, in the pipelines
// that carry GOSLING_JOB only), unless the project has one. The file holds
// one job, with the tags of the first custom job.
func putNestCIConfig(gl *gitlabtest.Server, path string, jobs []fly.Job) {
	pr, ok := gl.ProjectByPath(path)
	if !ok {
		return
	}
	if _, ok := gl.File(pr.ID, "", gitlabtest.CIConfigPath); ok {
		return
	}
	for _, j := range jobs {
		if j.Kind != fly.JobCustom || len(j.Runner.Tags) == 0 {
			continue
		}
		tags, _ := json.Marshal(j.Runner.Tags) // a YAML flow sequence
		gl.PutFile(pr.ID, gitlabtest.CIConfigPath, []byte("gosling-job:\n  tags: "+string(tags)+"\n  rules:\n    - if: $GOSLING_JOB\n  script: ['eval \"$GOSLING_JOB_SCRIPT\"']\n"))
		return
	}
}

// devRiftParams is Rift in `gosling dev`: its control API and S3 endpoint
// on free loopback ports (S3 over plain HTTP, gitlab-runner's Insecure =
// true, as job scripts need not trust Rift's CA), the engine proxy only
// when this machine has a Docker or Podman socket, the image mirror only
// when an egg's rift block has a mirror block; data under
// STATE_DIR/rift; runner tokens checked against the dev store and
// secrets.
func devRiftParams(n *fly.Nest, stateDir string, res rift.SecretResolver, st rift.RunnerStore, log *slog.Logger) riftParams {
	dir := filepath.Join(stateDir, "rift")
	last := lastRiftAddrs(dir)
	p := riftParams{
		Nest: n, Dir: dir, Secrets: res, Store: st, Logger: log,
		Addr: last.pick(last.Control), S3Addr: last.pick(last.S3), S3Insecure: true,
		Hosts: []string{"127.0.0.1", "localhost"}, Engines: map[string]string{},
	}
	podman := []string{"/run/podman/podman.sock"}
	if d, ok := os.LookupEnv("XDG_RUNTIME_DIR"); ok && d != "" {
		podman = append([]string{filepath.Join(d, "podman", "podman.sock")}, podman...)
	}
	for _, s := range podman {
		if isSocket(s) {
			p.Engines["podman"], p.Engines["docker"] = s, s
			break
		}
	}
	// Docker's own socket wins for docker when both are there.
	if s := "/var/run/docker.sock"; isSocket(s) {
		p.Engines["docker"] = s
	}
	if len(p.Engines) > 0 {
		p.EngineAddr = last.pick(last.Engine)
	}
	for _, e := range n.Eggs {
		if e.Rift != nil && e.Rift.Enabled && e.Rift.Mirror != nil {
			p.MirrorAddr = last.pick(last.Mirror)
		}
	}
	return p
}

// riftAddrs are the addresses Rift listened on in the last `gosling dev`
// run, kept in STATE_DIR/rift/addresses.json: runners resumed from that run
// have the control URL in their agent's configuration, so the next run
// takes the same ports when they are free.
type riftAddrs struct {
	Control string `json:"control"`
	S3      string `json:"s3"`
	Mirror  string `json:"mirror,omitempty"`
	Engine  string `json:"engine,omitempty"`
}

const riftAddrsFile = "addresses.json"

func lastRiftAddrs(dir string) riftAddrs {
	var a riftAddrs
	if b, err := os.ReadFile(filepath.Join(dir, riftAddrsFile)); err == nil {
		_ = json.Unmarshal(b, &a)
	}
	return a
}

// pick is addr when it is a free loopback address, else a free port.
func (riftAddrs) pick(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil && host == "127.0.0.1" {
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	return "127.0.0.1:0"
}

// saveRiftAddrs keeps where a running Rift listens, for the next run.
func saveRiftAddrs(dir string, r *runningRift) error {
	a := riftAddrs{Control: r.l.Control.Addr().String()}
	for _, x := range []struct {
		ln  net.Listener
		dst *string
	}{{r.l.S3, &a.S3}, {r.l.Mirror, &a.Mirror}, {r.l.Engine, &a.Engine}} {
		if x.ln != nil {
			*x.dst = x.ln.Addr().String()
		}
	}
	b, _ := json.Marshal(a)
	return os.WriteFile(filepath.Join(dir, riftAddrsFile), b, 0o600)
}
