package cli

import (
	"fmt"
	"os/exec"
	"path"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/tofu"
	"mvdan.cc/sh/v3/syntax"
)

// contractMachine is a machine of every built-in module with everything
// MG/config.fly can give it.
func contractMachine(m tofu.Module) tofu.Machine {
	return tofu.Machine{
		RunnerID: "web-0123456789", Egg: "web", Cloud: m.Cloud, Kind: m.Kind, State: tofu.PowerRunning,
		CPU: 2, MemoryMiB: 4096, DiskGiB: 20,
		MaxRunMinutes: 60, GitLabURL: "https://gitlab.example.com", TokenRef: "aws-sm://gosling/runners/web-0123456789/token",
		Agent: agentapi.Config{
			RunnerID: "web-0123456789", Egg: "web", GitLabURL: "https://gitlab.example.com", TokenRef: "aws-sm://gosling/runners/web-0123456789/token",
			AgentRef: "aws-sm://gosling/runners/web-0123456789/agent", APIURL: "https://gosling.example.com", Runner: agentapi.RunnerConfig{Executor: agentapi.ExecutorDocker, Image: "alpine:3.20"},
		},
		AgentBinary: "/opt/gosling/bin/gosling", StateDir: "/var/lib/gosling",
		AgentURL: "https://releases.example.com/gosling/{version}/gosling-{os}-{arch}", AgentVersion: "1.4.0",
		AgentImage: "cr.example.com/gosling-runner:1.4.0", RunnerVersion: "18.6.0",
		RunnerURL: "https://gitlab-runner-downloads.s3.amazonaws.com/v{version}/binaries/gitlab-runner-{os}-{arch}",
		Provider:  fly.Provider{FolderID: "b1g", Zone: "ru-central1-a", SubnetID: "e9b", Region: "eu-central-1", Subnets: []string{"subnet-1"}, Cluster: "runners"},
		Identity: tofu.Identity{ServiceAccountID: "ajerunnerweb", InstanceProfile: "gosling-runner-web",
			RoleARN: "arn:aws:iam::123456789012:role/gosling/gosling/gosling-runner-web", ExecutionRoleARN: "arn:aws:iam::123456789012:role/gosling/gosling/gosling-runner-web-exec"},
	}
}

// scriptCommands finds every gosling command line of a shell script.
func scriptCommands(t *testing.T, script string) [][]string {
	t.Helper()
	f, err := syntax.NewParser().Parse(strings.NewReader(script), "user-data")
	if err != nil {
		t.Fatalf("parse the script: %v", err)
	}
	var out [][]string
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		var words []string
		for _, w := range call.Args {
			s, ok := literal(w)
			if !ok {
				return true // not a plain command line
			}
			words = append(words, s)
		}
		if path.Base(words[0]) == "gosling" {
			out = append(out, words)
		}
		return true
	})
	return out
}

// literal is a word's value when it has no expansion.
func literal(w *syntax.Word) (string, bool) {
	var b strings.Builder
	for _, p := range w.Parts {
		switch x := p.(type) {
		case *syntax.Lit:
			b.WriteString(x.Value)
		case *syntax.SglQuoted:
			b.WriteString(x.Value)
		case *syntax.DblQuoted:
			for _, q := range x.Parts {
				l, ok := q.(*syntax.Lit)
				if !ok {
					return "", false
				}
				b.WriteString(l.Value)
			}
		default:
			return "", false
		}
	}
	return b.String(), true
}

// commandError runs argv's words (after the program) through the real
// command tree: an unknown command, an unknown flag or wrong arguments are
// errors.
func commandError(argv []string) error {
	if len(argv) < 3 || path.Base(argv[0]) != "gosling" || argv[1] != "agent" {
		return fmt.Errorf("%q: not a gosling agent command line", argv)
	}
	root := NewCmdRoot(newTestIO("", false).f)
	cmd, rest, err := root.Find(argv[1:])
	if err != nil {
		return fmt.Errorf("%q: %w", argv, err)
	}
	if cmd == root || cmd.Parent() == root || !cmd.Runnable() {
		return fmt.Errorf("%q: names no runnable command (found %q)", argv, cmd.CommandPath())
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return fmt.Errorf("%q: %w", argv, err)
	}
	if cmd.Args != nil {
		if err := cmd.Args(cmd, cmd.Flags().Args()); err != nil {
			return fmt.Errorf("%q: %w", argv, err)
		}
	}
	return nil
}

// Every module's agent contract: the command lines, environment and
// user-data its variables carry come from agentapi.MachineContract, every
// gosling command line in them exists in the command tree with its flags,
// and every rendered script passes bash -n and shellcheck.
func TestModulesAgentContract(t *testing.T) {
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is not installed: run `scripts/tools.sh shellcheck`")
	}
	mods := tofu.BuiltinModules()
	if len(mods) != 6 {
		t.Fatalf("built-in modules %v, want 6", mods)
	}
	type variant struct {
		m      tofu.Module
		lambda bool
	}
	var variants []variant
	for _, m := range mods {
		variants = append(variants, variant{m, false})
		if m.Cloud == fly.CloudAWS && m.Kind == fly.RunnerServerless {
			variants = append(variants, variant{m, true})
		}
	}
	for _, v := range variants {
		m := v.m
		name := m.String()
		if v.lambda {
			name += "/lambda"
		}
		t.Run(name, func(t *testing.T) {
			machine := contractMachine(m)
			if v.lambda {
				machine.Lambda, machine.MaxRunMinutes = true, 15
			}
			vars, err := machine.Variables()
			if err != nil {
				t.Fatal(err)
			}
			if err := tofu.CheckVariables(m, vars); err != nil {
				t.Fatal(err)
			}
			c, err := machine.Contract()
			if err != nil {
				t.Fatal(err)
			}
			var commands [][]string
			list := func(name string) []string {
				v, ok := vars[name].([]string)
				if !ok || len(v) == 0 {
					t.Fatalf("variable %s = %v, want a command line", name, vars[name])
				}
				return v
			}
			switch {
			case m.Cloud == fly.CloudLocal:
				names := []string{"launch_command", "stop_command"}
				if m.Kind == fly.RunnerVM {
					names = append(names, "power_command")
				}
				for _, n := range names {
					argv := list(n)
					commands = append(commands, append([]string{"gosling"}, argv[1:]...))
				}
			case m.Kind == fly.RunnerVM:
				script, _ := vars["user_data"].(string)
				if script == "" || script != c.UserData {
					t.Fatalf("user_data is not the contract's script")
				}
				// Without a gitlab-runner pin the script installs GitLab's
				// package instead: check that rendering too.
				unpinned := machine
				unpinned.RunnerVersion, unpinned.RunnerURL = "", ""
				uc, err := unpinned.Contract()
				if err != nil {
					t.Fatal(err)
				}
				for _, sh := range []string{script, uc.UserData} {
					if out, err := exec.Command("bash", "-n", "-c", sh).CombinedOutput(); err != nil {
						t.Errorf("bash -n: %v\n%s", err, out)
					}
					sc := exec.Command(shellcheck, "-s", "bash", "-")
					sc.Stdin = strings.NewReader(sh)
					if out, err := sc.CombinedOutput(); err != nil {
						t.Errorf("shellcheck: %v\n%s\n%s", err, out, sh)
					}
				}
				commands = append(scriptCommands(t, script), scriptCommands(t, uc.UserData)...)
				c.Commands = append(c.Commands, uc.Commands...)
				if len(commands) == 0 {
					t.Fatalf("the script runs no gosling command:\n%s", script)
				}
			default:
				name := "container_args"
				if m.Cloud == fly.CloudAWS {
					name = "container_command"
				}
				commands = append(commands, append([]string{"gosling"}, list(name)...))
				env, _ := vars["container_environment"].(map[string]string)
				if _, err := agentapi.ParseConfig([]byte(env[agentapi.EnvAgentConfig])); err != nil {
					t.Errorf("container_environment.%s: %v", agentapi.EnvAgentConfig, err)
				}
			}
			// What the modules run is what the contract lists, and more
			// (the unit's command line).
			for _, argv := range commands {
				found := false
				for _, want := range c.Commands {
					found = found || fmt.Sprint(want[1:]) == fmt.Sprint(argv[1:])
				}
				if !found {
					t.Errorf("%q is run but not in the contract's commands %q", argv, c.Commands)
				}
			}
			for _, argv := range c.Commands {
				if err := commandError(argv); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// The check fails on what does not exist.
func TestContractCheckCatchesUnknownCommands(t *testing.T) {
	for _, argv := range [][]string{
		{"gosling", "agent", "install", "--runner-id", "x"},
		{"gosling", "agent", "run", "--one-jobs"},
		{"gosling", "agent", "deploy"},
	} {
		if err := commandError(argv); err == nil {
			t.Errorf("%q passed the check", argv)
		}
	}
}

// A module that needs what MG/config.fly lacks is refused with a message
// that says what to set.
func TestContractRefusesMissingAgentDelivery(t *testing.T) {
	vm := contractMachine(tofu.Module{Cloud: fly.CloudAWS, Kind: fly.RunnerVM})
	vm.AgentURL = ""
	if _, err := vm.Variables(); err == nil || !strings.Contains(err.Error(), "agent.url") {
		t.Errorf("VM without agent URL: %v", err)
	}
	sls := contractMachine(tofu.Module{Cloud: fly.CloudYandex, Kind: fly.RunnerServerless})
	sls.AgentImage = ""
	if _, err := sls.Variables(); err == nil || !strings.Contains(err.Error(), "agent.image") {
		t.Errorf("serverless without agent image: %v", err)
	}
}
