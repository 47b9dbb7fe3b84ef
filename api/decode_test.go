package api_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/mothergoose"
)

var hookProject = gitlabtest.HookProject{ID: 42, PathWithNamespace: "acme/web", BaseURL: "https://gitlab.example.com"}

func TestDecodeJobHookTimestamps(t *testing.T) {
	created := time.Date(2024, 6, 11, 3, 2, 25, 0, time.UTC)
	started := created.Add(90 * time.Second)
	for _, spec := range []gitlabtest.JobHookSpec{
		{Project: hookProject, JobID: 7, Status: "running", CreatedAt: created, StartedAt: &started, QueuedDuration: 90 * time.Second},
		{Project: hookProject, JobID: 7, Status: "running", CreatedAt: created, StartedAt: &started, QueuedDuration: 90 * time.Second, NoISO: true},
		{Project: hookProject, JobID: 7, Status: "running", CreatedAt: created, StartedAt: &started, QueuedDuration: 90 * time.Second, NoISO: true, OldTimestamps: true},
	} {
		for _, event := range []string{"Job Hook", "Build Hook"} {
			w, err := api.DecodeWebhook(event, gitlabtest.JobHookPayload(spec))
			if err != nil {
				t.Fatal(err)
			}
			j := w.Job
			if w.Event != api.EventJob || w.ProjectID != 42 || w.ProjectPath != "acme/web" || j == nil || j.ID != 7 || j.Status != "running" ||
				j.CreatedAt == nil || !j.CreatedAt.Equal(created) || j.StartedAt == nil || !j.StartedAt.Equal(started) ||
				j.FinishedAt != nil || j.QueuedDuration != 90*time.Second || j.Duration != 0 || j.RunnerID != 0 {
				t.Errorf("%s (iso %v, old %v): %+v %+v", event, !spec.NoISO, spec.OldTimestamps, w, j)
			}
		}
	}
	w, err := api.DecodeWebhook("Job Hook", []byte(`{"object_kind":"build","build_id":1,"build_status":"success","project_id":3,
		"build_created_at":"2021-02-23T02:41:37.886Z","build_started_at":"not a time","build_finished_at":"2021-02-23 02:45:00 +0200",
		"build_duration":-5,"runner":{"id":9,"tags":["runner-tag"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if j := w.Job; j.CreatedAt == nil || j.CreatedAt.Nanosecond() != 886000000 || j.StartedAt != nil || j.FinishedAt == nil ||
		j.FinishedAt.Hour() != 0 || j.Duration != 0 || j.RunnerID != 9 {
		t.Errorf("odd values: %+v", j)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		event, body string
		unknown     bool
	}{
		{"", `{}`, true},
		{"job hook", `{}`, true},
		{"Job Hook", ``, false},
		{"Job Hook", `[]`, false},
		{"Job Hook", `{"object_kind":"build","build_id":1,"build_status":"pending"}`, false},
		{"Job Hook", `{"object_kind":"pipeline","build_id":1,"build_status":"pending","project_id":1}`, false},
		{"Pipeline Hook", `{"object_kind":"pipeline","project":{"id":1}}`, false},
		{"Push Hook", `{"object_kind":"push"}`, false},
		{"Merge Request Hook", `{"project":{"id":1}}`, false},
		{"Merge Request Hook", `{"object_kind":"merge_request","project":{"id":1}}`, false},
		{"Merge Request Hook", `{"object_kind":"merge_request","project":{"id":1},"object_attributes":{"iid":0}}`, false},
	} {
		_, err := api.DecodeWebhook(tc.event, []byte(tc.body))
		var pe *api.PayloadError
		switch {
		case tc.unknown && !errors.Is(err, api.ErrUnknownEvent):
			t.Errorf("%q %s: %v, want ErrUnknownEvent", tc.event, tc.body, err)
		case !tc.unknown && !errors.As(err, &pe):
			t.Errorf("%q %s: %v, want a PayloadError", tc.event, tc.body, err)
		}
	}
	w, err := api.DecodeWebhook("Issue Hook", []byte(`{"object_kind":"issue","project":{"id":5,"path_with_namespace":"a/b"}}`))
	if err != nil || !w.Ignored || w.ProjectID != 5 || w.Job != nil {
		t.Errorf("ignored event: %+v %v", w, err)
	}
}

// Merge Request Hooks are decoded from object_attributes: the merge
// request, its source head, the head before an update that brought
// commits (absent otherwise), its head pipeline (null before one).
func TestDecodeMergeRequestHook(t *testing.T) {
	mr := gitlabtest.HookMergeRequest{ID: 501, IID: 12, Title: "Speed up the build", SourceBranch: "fast"}
	for _, tc := range []struct {
		spec gitlabtest.MergeRequestHookSpec
		want mothergoose.MergeRequestHook
	}{
		{gitlabtest.MergeRequestHookSpec{Project: hookProject, MergeRequest: mr, Action: "open", LastCommit: "aaa111"},
			mothergoose.MergeRequestHook{ID: 501, IID: 12, Action: "open", State: "opened", SourceBranch: "fast", TargetBranch: "main", LastCommit: "aaa111",
				URL: "https://gitlab.example.com/acme/web/-/merge_requests/12"}},
		{gitlabtest.MergeRequestHookSpec{Project: hookProject, MergeRequest: mr, Action: "update", LastCommit: "bbb222", OldRev: "aaa111", HeadPipelineID: 9001},
			mothergoose.MergeRequestHook{ID: 501, IID: 12, Action: "update", State: "opened", SourceBranch: "fast", TargetBranch: "main", LastCommit: "bbb222",
				OldRev: "aaa111", HeadPipelineID: 9001, URL: "https://gitlab.example.com/acme/web/-/merge_requests/12"}},
	} {
		w, err := api.DecodeWebhook(api.EventMergeRequest, gitlabtest.MergeRequestHookPayload(tc.spec))
		if err != nil {
			t.Fatal(err)
		}
		if w.Ignored || w.ProjectID != 42 || w.ProjectPath != "acme/web" || w.MergeRequest == nil || *w.MergeRequest != tc.want {
			t.Errorf("%s: %+v %+v", tc.spec.Action, w, w.MergeRequest)
		}
	}
	// A merge request pipeline names its merge request; others send null.
	w, err := api.DecodeWebhook(api.EventPipeline, gitlabtest.PipelineHookPayload(gitlabtest.PipelineHookSpec{
		Project: hookProject, PipelineID: 9001, SHA: "bbb222", Source: "merge_request_event", MergeRequest: &mr,
		Builds: []gitlabtest.PipelineBuild{{ID: 1, Stage: "test", Status: "pending"}, {ID: 2, Stage: "deploy", Status: "created"}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	p := w.Pipeline
	if p.SHA != "bbb222" || p.Source != "merge_request_event" || p.MergeRequest == nil || p.MergeRequest.IID != 12 || p.MergeRequest.ID != 501 || len(p.Builds) != 2 {
		t.Errorf("pipeline: %+v %+v", p, p.MergeRequest)
	}
	w, err = api.DecodeWebhook(api.EventPipeline, gitlabtest.PipelineHookPayload(gitlabtest.PipelineHookSpec{Project: hookProject, PipelineID: 9002}))
	if err != nil || w.Pipeline.MergeRequest != nil {
		t.Errorf("branch pipeline: %+v %v", w, err)
	}
}

func FuzzDecodeWebhook(f *testing.F) {
	now := time.Now()
	for _, seed := range []struct {
		event string
		body  []byte
	}{
		{"Job Hook", gitlabtest.JobHookPayload(gitlabtest.JobHookSpec{Project: hookProject, JobID: 1, StartedAt: &now, Runner: &gitlabtest.HookRunner{ID: 3}})},
		{"Build Hook", gitlabtest.JobHookPayload(gitlabtest.JobHookSpec{Project: hookProject, JobID: 2, OldTimestamps: true, NoISO: true})},
		{"Pipeline Hook", gitlabtest.PipelineHookPayload(gitlabtest.PipelineHookSpec{Project: hookProject, PipelineID: 3, Builds: []gitlabtest.PipelineBuild{{ID: 4, Status: "pending"}}})},
		{"Push Hook", gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: hookProject})},
		{"Merge Request Hook", []byte(`{"object_kind":"merge_request","project":{"id":1}}`)},
		{"Merge Request Hook", gitlabtest.MergeRequestHookPayload(gitlabtest.MergeRequestHookSpec{Project: hookProject,
			MergeRequest: gitlabtest.HookMergeRequest{ID: 5, IID: 2, SourceBranch: "x"}, Action: "update", OldRev: "a1", HeadPipelineID: 4})},
		{"System Hook", []byte(`{"event_name":"project_create"}`)},
		{"Job Hook", []byte(`{"object_kind":"build","build_id":1e3,"build_status":null,"build_duration":"NaN"}`)},
		{"", []byte(`{}`)},
		{"Job Hook", []byte(`{"build_created_at":"2024-06-11 03:02:25 UTC","build_queued_duration":1e308}`)},
	} {
		f.Add(seed.event, seed.body)
	}
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		w, err := api.DecodeWebhook(event, body)
		if err != nil {
			if w != nil {
				t.Fatal("a webhook and an error")
			}
			return
		}
		kinds := 0
		for _, set := range []bool{w.Job != nil, w.Pipeline != nil, w.Push != nil, w.MergeRequest != nil} {
			if set {
				kinds++
			}
		}
		switch {
		case w.Ignored:
			if kinds != 0 {
				t.Fatalf("ignored event with details: %+v", w)
			}
		case w.ProjectID <= 0:
			t.Fatalf("accepted without a project: %+v", w)
		case w.Job != nil && (w.Job.ID <= 0 || w.Job.Status == "" || w.Job.Duration < 0 || w.Job.QueuedDuration < 0):
			t.Fatalf("bad job: %+v", w.Job)
		case w.MergeRequest != nil && w.MergeRequest.IID <= 0:
			t.Fatalf("bad merge request: %+v", w.MergeRequest)
		case kinds != 1:
			t.Fatalf("not exactly one kind: %+v", w)
		}
	})
}
