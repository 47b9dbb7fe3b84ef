package agent

import (
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/rift/s3"
	"github.com/pelletier/go-toml/v2"
)

// config.toml as a cloud VM's agent writes it: the docker executor with
// the egg's image, the runner's variables, and the cache section Rift's
// renderer gives, all read back by a TOML decoder as gitlab-runner would.
func TestRenderRunnerConfigDockerAndRift(t *testing.T) {
	cache, err := cacheFromRift(s3.Settings{ServerAddress: "rift.example.com:9000", AccessKey: "GRKEY", SecretKey: "sk/with\"quote", BucketName: "web", Insecure: false})
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentapi.Config{RunnerID: "web-1", Egg: "web", GitLabURL: "https://gitlab.example.com", TokenRef: "aws-sm://gosling/runners/web-1/token",
		Runner: agentapi.RunnerConfig{Executor: agentapi.ExecutorDocker, Image: "node:22", Concurrent: 3}}
	b, err := renderRunnerConfig(runnerSpec{cfg: cfg, token: "glrt-abc", environment: []string{"A=1", `QUOTED=a "b" c`}, listen: DefaultListenAddress, cache: cache, workDir: "/var/lib/gosling-agent"})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Concurrent    int    `toml:"concurrent"`
		ListenAddress string `toml:"listen_address"`
		Runners       []struct {
			Name, URL, Token, Executor string
			BuildsDir                  string   `toml:"builds_dir"`
			Environment                []string `toml:"environment"`
			Docker                     struct {
				Image string `toml:"image"`
			} `toml:"docker"`
			Cache struct {
				Type   string
				Shared bool
				S3     struct {
					ServerAddress, AccessKey, SecretKey, BucketName, BucketLocation string
					PathStyle, Insecure                                             bool
				} `toml:"s3"`
			} `toml:"cache"`
		} `toml:"runners"`
	}
	if err := toml.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	r := got.Runners[0]
	if got.Concurrent != 3 || got.ListenAddress != DefaultListenAddress || r.Name != "web-1" || r.URL != cfg.GitLabURL || r.Token != "glrt-abc" ||
		r.Executor != "docker" || r.Docker.Image != "node:22" || r.BuildsDir != "/var/lib/gosling-agent/builds" ||
		strings.Join(r.Environment, "|") != `A=1|QUOTED=a "b" c` {
		t.Errorf("config.toml read back as %+v\n%s", got, b)
	}
	c := r.Cache
	if c.Type != "s3" || !c.Shared || c.S3.ServerAddress != "rift.example.com:9000" || c.S3.SecretKey != `sk/with"quote` || c.S3.BucketName != "web" || !c.S3.PathStyle || c.S3.BucketLocation != s3.DefaultLocation {
		t.Errorf("cache = %+v", c)
	}
}

// The stand-in takes what the agent writes for the local provider.
func TestRenderRunnerConfigShellReadByTheStandIn(t *testing.T) {
	cfg := agentapi.Config{RunnerID: "web-1", Egg: "web", GitLabURL: "http://127.0.0.1:8929", TokenRef: "local://runners/web-1/token", Runner: agentapi.RunnerConfig{Executor: agentapi.ExecutorShell}}
	b, err := renderRunnerConfig(runnerSpec{cfg: cfg, token: "glrt-abc", environment: []string{"K=v"}, listen: "127.0.0.1:0", workDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sc, warnings, err := runnerstandin.ParseConfig(b)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("%v %v\n%s", err, warnings, b)
	}
	if sc.Concurrent != 1 || sc.Runners[0].Executor != "shell" || sc.Runners[0].Shell != "bash" || sc.Runners[0].Environment[0] != "K=v" {
		t.Errorf("the stand-in read %+v", sc)
	}
}
