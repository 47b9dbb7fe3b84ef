package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// eachFlag calls fn with every flag of every command, hidden commands
// included.
func eachFlag(root *cobra.Command, fn func(cmd *cobra.Command, f *pflag.Flag)) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) { fn(c, f) })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// TestFlagHelp: what --help shows of each flag reads right. pflag takes
// the first `backquoted` word of a usage as the value's name, so a
// backquoted phrase ("a running `gosling dev`") became "--api gosling dev";
// a usage that says its own default must not get pflag's "(default ...)"
// as well.
func TestFlagHelp(t *testing.T) {
	root := NewCmdRoot(newTestIO("", false).f)
	eachFlag(root, func(cmd *cobra.Command, f *pflag.Flag) {
		name, _ := pflag.UnquoteUsage(f)
		if strings.ContainsAny(name, " .$'") {
			t.Errorf("%s --%s: the value is shown as %q (a backquoted phrase in its usage)", cmd.CommandPath(), f.Name, name)
		}
		if strings.Contains(f.Usage, "''") {
			t.Errorf("%s --%s: doubled quotes in its help: %s", cmd.CommandPath(), f.Name, f.Usage)
		}
		line := flagHelpLine(cmd, f)
		if strings.Count(line, "(default") > 1 {
			t.Errorf("%s --%s shows two defaults: %s", cmd.CommandPath(), f.Name, line)
		}
	})
}

// flagHelpLine is the line --help prints for a flag.
func flagHelpLine(cmd *cobra.Command, f *pflag.Flag) string {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.AddFlag(f)
	return strings.TrimSpace(fs.FlagUsages())
}

// TestWorkerFlagsOnlyOnWorkers: the flags only a worker uses (how it makes
// runner machines) are not offered by the server and by `uglyfox run`.
func TestWorkerFlagsOnlyOnWorkers(t *testing.T) {
	root := NewCmdRoot(newTestIO("", false).f)
	for _, tc := range []struct {
		path []string
		has  bool
	}{{[]string{"worker"}, true}, {[]string{"server"}, false}, {[]string{"uglyfox", "run"}, false}} {
		cmd, _, err := root.Find(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"gitlab-runner", "rift-url", "agent-api-url"} {
			if got := cmd.Flags().Lookup(name) != nil; got != tc.has {
				t.Errorf("%s --%s: offered %v, want %v", cmd.CommandPath(), name, got, tc.has)
			}
		}
	}
	server, _, _ := root.Find([]string{"server"})
	if server.Flags().Lookup("tofu") != nil {
		t.Error("gosling server offers --tofu, which only workers run")
	}
}

// TestNestFlagDefaults: every --nest reads $GOSLING_NEST; those of
// commands that need a Nest fall back to the current directory, the others
// to none, and say so.
func TestNestFlagDefaults(t *testing.T) {
	root := NewCmdRoot(withEnv(newTestIO("", false), map[string]string{"GOSLING_NEST": "/srv/nest"}).f)
	n := 0
	eachFlag(root, func(cmd *cobra.Command, f *pflag.Flag) {
		if f.Name != "nest" {
			return
		}
		n++
		if f.DefValue != "/srv/nest" || !strings.Contains(f.Usage, "$GOSLING_NEST") {
			t.Errorf("%s --nest: default %q, usage %q: want $GOSLING_NEST", cmd.CommandPath(), f.DefValue, f.Usage)
		}
	})
	root = NewCmdRoot(newTestIO("", false).f)
	eachFlag(root, func(cmd *cobra.Command, f *pflag.Flag) {
		if f.Name != "nest" {
			return
		}
		if f.DefValue != "." && (f.DefValue != "" || !strings.Contains(f.Usage, "none:")) {
			t.Errorf("%s --nest: default %q, usage %q: want \".\", or none and what none means", cmd.CommandPath(), f.DefValue, f.Usage)
		}
	})
	if n < 10 {
		t.Errorf("only %d --nest flags", n)
	}
}

// The help of init, dev and dev simulate job says what is true: no queue
// services (deploy makes none), a blank line between dev's sections, and
// the gitlab-runner a dev runs, the real one or the stand-in.
func TestHelpTexts(t *testing.T) {
	help := func(args ...string) string {
		t.Helper()
		tio := newTestIO("", false)
		if code := run(t, tio, append(args, "--help")...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, tio.err)
		}
		return tio.out.String()
	}
	if h := help("init"); strings.Contains(h, "SQS") || strings.Contains(h, "YMQ") {
		t.Errorf("init --help names queue services deploy no longer makes:\n%s", h)
	}
	if h := help("dev"); !strings.Contains(h, ".\n\nSend a job through the whole loop") {
		t.Errorf("dev --help: no blank line before \"Send a job\":\n%s", h)
	}
	for _, cmd := range [][]string{{"dev", "simulate", "job"}, {"dev", "pipeline"}} {
		h := strings.Join(strings.Fields(help(cmd...)), " ")
		if !strings.Contains(h, "real GitLab Runner") || !strings.Contains(h, "STAND-IN") {
			t.Errorf("%v --help names only one gitlab-runner:\n%s", cmd, h)
		}
	}
}
