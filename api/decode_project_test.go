package api_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/gosling-ci/gosling/api"
)

func readCase(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeProjectAndInstance: the project's path and the instance come
// from whichever field the payload's version of GitLab used.
func TestDecodeProjectAndInstance(t *testing.T) {
	noProject := string(readCase(t, "jobhook-no-project-object.json"))
	for _, tc := range []struct {
		name, event, instance, body string
		path, host                  string
	}{
		{"GitLab's example without the project object", "Job Hook", "http://gitlab.example.com", noProject, "gitlab-org/gitlab-test", "gitlab.example.com"},
		{"old instance: Build Hook, no X-Gitlab-Instance", "Build Hook", "", noProject, "gitlab-org/gitlab-test", "gitlab.example.com"},
		{"project object", "Job Hook", "", `{"object_kind":"build","build_id":1,"build_status":"pending","project_id":5,"project_name":"Acme / Web",
			"project":{"id":5,"path_with_namespace":"acme/web","web_url":"https://git.acme.test:8443/acme/web"}}`, "acme/web", "git.acme.test:8443"},
		{"display name only: path from repository.homepage", "Job Hook", "", `{"object_kind":"build","build_id":1,"build_status":"pending","project_id":5,
			"project_name":"Acme / Platform / Web","repository":{"homepage":"https://gitlab.acme.test/acme/platform/web"}}`, "acme/platform/web", "gitlab.acme.test"},
		{"git_http_url only", "Job Hook", "", `{"object_kind":"build","build_id":1,"build_status":"pending","project_id":5,
			"project_name":"Acme / Web","repository":{"git_http_url":"https://gitlab.acme.test/acme/web.git"}}`, "acme/web", "gitlab.acme.test"},
		{"relative URL root from X-Gitlab-Instance", "Job Hook", "https://example.com/gitlab", `{"object_kind":"build","build_id":1,"build_status":"pending","project_id":5,
			"project_name":"Acme / Web","repository":{"homepage":"https://example.com/gitlab/acme/web"}}`, "acme/web", "example.com"},
		{"relative URL root told by a project_name path", "Build Hook", "", `{"object_kind":"build","build_id":1,"build_status":"pending","project_id":5,
			"project_name":"acme/web","repository":{"homepage":"http://example.com/gitlab/acme/web"}}`, "acme/web", "example.com"},
		{"project_name path, no URL at all", "Job Hook", "https://gitlab.acme.test", `{"object_kind":"build","build_id":1,"build_status":"pending","project_id":5,"project_name":"acme/web"}`, "acme/web", "gitlab.acme.test"},
		{"display name is never a path", "Job Hook", "https://gitlab.acme.test", `{"object_kind":"build","build_id":1,"build_status":"pending","project_id":5,"project_name":"Acme / Web"}`, "", "gitlab.acme.test"},
		{"group hook project_create", "Project Hook", "https://gitlab.acme.test", string(readCase(t, "group-project-create.json")), "flightjs/flight", "gitlab.acme.test"},
		{"system hook project_create, old instance", "System Hook", "", string(readCase(t, "group-project-create.json")), "flightjs/flight", ""},
		{"push: project object", "Push Hook", "", `{"object_kind":"push","ref":"refs/heads/main","project_id":9,
			"project":{"id":9,"path_with_namespace":"ops/nest","web_url":"http://gitlab.ops.test/ops/nest"},"repository":{"homepage":"http://gitlab.ops.test/ops/nest"}}`, "ops/nest", "gitlab.ops.test"},
		{"push: repository only", "Push Hook", "", `{"object_kind":"push","ref":"refs/heads/main","project_id":9,
			"repository":{"homepage":"http://gitlab.ops.test/ops/nest","git_http_url":"http://gitlab.ops.test/ops/nest.git"}}`, "ops/nest", "gitlab.ops.test"},
		{"a foreign URL is not the instance", "Job Hook", "", `{"object_kind":"build","build_id":1,"build_status":"pending","project_id":5,
			"project":{"id":5,"path_with_namespace":"acme/web","web_url":"https://gitlab.acme.test/acme/web"},"repository":{"homepage":"https://mirror.test/x/y"}}`, "acme/web", "gitlab.acme.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			h.Set("X-Gitlab-Event", tc.event)
			h.Set("X-Gitlab-Token", "secret")
			if tc.instance != "" {
				h.Set("X-Gitlab-Instance", tc.instance)
			}
			d, err := api.DecodeDelivery(h, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if d.Event.ProjectPath != tc.path || d.Host != tc.host || d.Token != "secret" {
				t.Errorf("path %q host %q, want %q %q (event %+v)", d.Event.ProjectPath, d.Host, tc.path, tc.host, d.Event)
			}
		})
	}
	d, err := api.DecodeDelivery(http.Header{"X-Gitlab-Event": {"Project Hook"}}, readCase(t, "group-project-create.json"))
	if err != nil || !d.Event.Ignored || d.Event.EventName != "project_create" || d.Event.ProjectID != 7 {
		t.Errorf("project_create: %+v %v", d.Event, err)
	}
	d, err = api.DecodeDelivery(http.Header{"X-Gitlab-Event": {"Job Hook"}}, readCase(t, "jobhook-no-project-object.json"))
	if err != nil || d.Event.ProjectID != 380 || d.Event.Job == nil || d.Event.Job.ID != 1977 || d.Event.Job.RunnerID != 380987 {
		t.Errorf("job: %+v %v", d.Event, err)
	}
}
