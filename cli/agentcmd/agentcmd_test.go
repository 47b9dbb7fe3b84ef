package agentcmd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/spf13/cobra"
)

// parse runs argv (after the program) through the agent binary's command
// tree as Main builds it: an unknown command or flag, or wrong arguments,
// are errors.
func parse(argv []string) error {
	root := &cobra.Command{Use: "gosling-agent"}
	root.AddCommand(New(Deps{Masker: secretstore.NewMasker(), Getenv: os.LookupEnv, Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}))
	cmd, rest, err := root.Find(argv[1:])
	if err != nil {
		return err
	}
	if cmd == root || !cmd.Runnable() {
		return fmt.Errorf("%q names no runnable command", argv)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return err
	}
	if cmd.Args != nil {
		return cmd.Args(cmd, cmd.Flags().Args())
	}
	return nil
}

// Every command line the machine contract renders, for every cloud and
// kind (Lambda included), is one the agent binary runs: the contract is
// the same whichever binary a machine gets.
func TestContractCommandsRunInTheAgentBinary(t *testing.T) {
	cfg := agentapi.Config{RunnerID: "web-1", Egg: "web", GitLabURL: "https://gitlab.example.com", TokenRef: "aws-sm://gosling/prod/runners/web/web-1/token",
		AgentRef: "aws-sm://gosling/prod/runners/web/web-1/agent", APIURL: "https://gosling.example.com"}
	n := 0
	for _, in := range []agentapi.ContractInput{
		{Cloud: "local", Kind: "vm", State: agentapi.PowerRunning, Binary: "/usr/local/bin/gosling", WorkDir: "/tmp/m"},
		{Cloud: "local", Kind: "serverless", MaxRun: time.Hour, Binary: "/usr/local/bin/gosling", WorkDir: "/tmp/m"},
		{Cloud: "aws", Kind: "vm", State: agentapi.PowerRunning, AgentURL: "https://releases.example.com/gosling-agent", RunnerVersion: "18.6.0", RunnerURL: "https://example.com/gitlab-runner"},
		{Cloud: "yandex", Kind: "vm", State: agentapi.PowerRunning, AgentURL: "https://releases.example.com/gosling-agent"},
		{Cloud: "aws", Kind: "serverless", MaxRun: time.Hour, AgentImage: "cr.example.com/runner:1"},
		{Cloud: "aws", Kind: "serverless", MaxRun: 15 * time.Minute, AgentImage: "cr.example.com/runner:1", Lambda: true},
		{Cloud: "yandex", Kind: "serverless", MaxRun: 5 * time.Minute, AgentImage: "cr.example.com/runner:1"},
	} {
		in.Config = cfg
		c, err := agentapi.MachineContract(in)
		if err != nil {
			t.Fatalf("%s/%s: %v", in.Cloud, in.Kind, err)
		}
		for _, argv := range c.Commands {
			n++
			if err := parse(argv); err != nil {
				t.Errorf("%s/%s: %q: %v", in.Cloud, in.Kind, argv, err)
			}
		}
	}
	if n < 10 {
		t.Errorf("%d command lines checked", n)
	}
	if err := parse([]string{"gosling", "agent", "run", "--one-jobs"}); err == nil {
		t.Error("an unknown flag passed")
	}
}

// Main masks what it knows is secret, and maps errors onto exit codes.
func TestMainExitCodesAndMasking(t *testing.T) {
	var out, errOut bytes.Buffer
	env := map[string]string{"GOSLING_RUNNER_TOKEN": "glrt-secret-token-value", "CFG": `{"runner_id":"x"`}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if code := Main(context.Background(), "gosling-agent", "1.2.3", []string{"--version"}, &out, &errOut, getenv); code != 0 || !strings.Contains(out.String(), "1.2.3") {
		t.Errorf("--version: %d %q", code, out.String())
	}
	errOut.Reset()
	if code := Main(context.Background(), "gosling-agent", "1.2.3", []string{"agent", "run", "--work-dir", t.TempDir(), "--config-env", "CFG"}, &out, &errOut, getenv); code != 3 {
		t.Errorf("a bad configuration: exit %d: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := Main(context.Background(), "gosling-agent", "1.2.3", []string{"agent", "run", "--work-dir", "glrt-secret-token-value"}, &out, &errOut, getenv); code == 0 || strings.Contains(errOut.String(), "glrt-secret-token-value") {
		t.Errorf("exit %d, stderr shows the token: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := Main(context.Background(), "gosling-agent", "1.2.3", []string{"agent", "run", "--nope"}, &out, &errOut, getenv); code != 1 || !strings.Contains(errOut.String(), "--help") {
		t.Errorf("an unknown flag: exit %d: %s", code, errOut.String())
	}
}
