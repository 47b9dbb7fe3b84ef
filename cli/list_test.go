package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// listCommands are the commands that print a list (or one record of a
// list): each shares --json FIELDS and --jq.
var listCommands = [][]string{
	{"runners", "list"}, {"runners", "get"}, {"jobs", "list"}, {"jobs", "schedule", "list"},
	{"audit"}, {"pool", "status"}, {"secrets", "versions"}, {"secrets", "rotate"}, {"uglyfox", "run"}, {"cost"},
}

func TestEveryListCommandHasJSONFieldsAndJQ(t *testing.T) {
	root := NewCmdRoot(newTestIO("", false).f)
	for _, path := range listCommands {
		cmd, _, err := root.Find(path)
		if err != nil || cmd.Name() != path[len(path)-1] {
			t.Fatalf("%v: %v", path, err)
		}
		json, jq := cmd.Flags().Lookup("json"), cmd.Flags().Lookup("jq")
		if json == nil || jq == nil || json.Value.Type() != "stringSlice" {
			t.Errorf("%v: --json %v, --jq %v: want --json FIELDS and --jq", path, json, jq)
			continue
		}
		if !strings.Contains(cmd.Long, "JSON fields (--json): ") {
			t.Errorf("%v: the help does not list the JSON fields", path)
		}
	}
	// A command that prints records by hand would not be in the list.
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if fl := c.Flags().Lookup("json"); fl != nil && fl.Value.Type() == "stringSlice" {
			found := false
			for _, p := range listCommands {
				found = found || strings.Join(p, " ") == strings.TrimPrefix(c.CommandPath(), "gosling ")
			}
			if !found {
				t.Errorf("%s has --json FIELDS but is not in listCommands", c.CommandPath())
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func TestJSONFieldsListAndSelect(t *testing.T) {
	url, _ := apiServer(t)

	// --json alone lists the fields, as gh does, and fails.
	tio := apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "list", "--json"); code != ExitError {
		t.Errorf("--json alone: exit %d", code)
	}
	if e := tio.err.String(); !strings.Contains(e, "Specify one or more comma-separated fields for `--json`:") ||
		!strings.Contains(e, "\n  gitlab_runner_id\n") || !strings.Contains(e, "\n  state\n") {
		t.Errorf("--json alone: %q", e)
	}
	if tio.out.Len() != 0 {
		t.Errorf("--json alone printed data: %q", tio.out)
	}

	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "audit", "--json", "acton"); code != ExitError || !strings.Contains(tio.err.String(), `Unknown JSON field: "acton"`) ||
		!strings.Contains(tio.err.String(), "\n  action\n") {
		t.Errorf("unknown field: exit %d: %q", code, tio.err)
	}

	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "jobs", "list", "--jq", ".[]"); code != ExitError || !strings.Contains(tio.err.String(), "--jq needs --json") {
		t.Errorf("--jq without --json: exit %d: %q", code, tio.err)
	}

	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "list", "--json", "id,egg", "--jq", ".[] | .id"); code != 0 {
		t.Fatalf("--jq: exit %d: %s", code, tio.err)
	}
	if got := tio.out.String(); got != "web-a\nweb-b\nweb-c\n" {
		t.Errorf("--jq strings are printed raw, one a line: %q", got)
	}
	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "list", "--json", "id,egg", "--jq", `map(select(.id == "web-b"))`); code != 0 {
		t.Fatalf("--jq: exit %d: %s", code, tio.err)
	}
	if got := tio.out.String(); got != `[{"egg":"web","id":"web-b"}]`+"\n" {
		t.Errorf("--jq values are compact JSON of the selected fields: %q", got)
	}
	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "list", "--json", "id", "--jq", ".[] | .nope("); code != ExitError || !strings.Contains(tio.err.String(), "--jq") {
		t.Errorf("a bad --jq: exit %d: %q", code, tio.err)
	}
}

func TestListHeaderOnTerminalOnly(t *testing.T) {
	url, _ := apiServer(t)
	for _, tc := range []struct {
		args   []string
		header string
	}{
		{[]string{"runners", "list"}, "ID  "},
		{[]string{"jobs", "list"}, "JOB  "},
		{[]string{"audit", "--since", "7d"}, ""},
	} {
		tio := apiIO("", true, url, testAPIToken)
		if code := run(t, tio, tc.args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, tio.err)
		}
		if tc.header != "" && !strings.HasPrefix(tio.out.String(), tc.header) {
			t.Errorf("%v on a terminal: no header row:\n%s", tc.args, tio.out)
		}
		tio = apiIO("", false, url, testAPIToken)
		if code := run(t, tio, tc.args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, tio.err)
		}
		if tc.header != "" && strings.HasPrefix(tio.out.String(), strings.TrimSpace(tc.header)) {
			t.Errorf("%v in a pipe: a header row:\n%s", tc.args, tio.out)
		}
	}
}
