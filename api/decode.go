package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/mothergoose"
)

// GitLab's webhook event names (X-Gitlab-Event).
const (
	EventJob          = "Job Hook"
	EventPipeline     = "Pipeline Hook"
	EventPush         = "Push Hook"
	EventMergeRequest = "Merge Request Hook"
	EventSystem       = "System Hook"
	// eventBuild is what old instances send for job events.
	eventBuild = "Build Hook"
)

// eventInfo is what Gosling knows of one GitLab event name.
type eventInfo struct {
	// label is the event's metrics label.
	label string
	// objectKind is the object_kind the event's payload must have; empty
	// for events Gosling ignores.
	objectKind string
}

// gitlabEvents lists every event GitLab sends to project, group and system
// hooks. Only those with an object kind are acted on.
var gitlabEvents = map[string]eventInfo{
	EventJob:                     {"job", "build"},
	eventBuild:                   {"job", "build"},
	EventPipeline:                {"pipeline", "pipeline"},
	EventPush:                    {"push", "push"},
	EventMergeRequest:            {"merge_request", "merge_request"},
	"Tag Push Hook":              {"tag_push", ""},
	"Issue Hook":                 {"issue", ""},
	"Confidential Issue Hook":    {"issue", ""},
	"Note Hook":                  {"note", ""},
	"Confidential Note Hook":     {"note", ""},
	"Wiki Page Hook":             {"wiki_page", ""},
	"Deployment Hook":            {"deployment", ""},
	"Release Hook":               {"release", ""},
	"Feature Flag Hook":          {"feature_flag", ""},
	"Member Hook":                {"member", ""},
	"Subgroup Hook":              {"subgroup", ""},
	"Project Hook":               {"project", ""},
	"Emoji Hook":                 {"emoji", ""},
	"Resource Access Token Hook": {"access_token", ""},
	"Milestone Hook":             {"milestone", ""},
	"Vulnerability Hook":         {"vulnerability", ""},
	EventSystem:                  {"system", ""},
}

// eventLabel is the bounded metrics label of an X-Gitlab-Event value.
func eventLabel(event string) string {
	if info, ok := gitlabEvents[event]; ok {
		return info.label
	}
	return "unknown"
}

// ErrUnknownEvent: X-Gitlab-Event is missing or names no GitLab event.
var ErrUnknownEvent = errors.New("not a GitLab webhook event")

// PayloadError says why a webhook body cannot be used.
type PayloadError struct {
	Msg string
	Err error
}

func (e *PayloadError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *PayloadError) Unwrap() error { return e.Err }

// hookTime reads the timestamps of webhook payloads: GitLab writes both
// "2021-02-23T02:41:37.886Z" and "2024-06-11 03:02:25 UTC". A value in
// neither form is taken as unknown rather than failing the delivery.
type hookTime struct{ t *time.Time }

var hookTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05 MST",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
}

func (h *hookTime) UnmarshalJSON(b []byte) error {
	h.t = nil
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	h.t = parseHookTime(s)
	return nil
}

func parseHookTime(s string) *time.Time {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	for _, layout := range hookTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.UTC()
			return &t
		}
	}
	return nil
}

// first is the first known time.
func first(ts ...hookTime) *time.Time {
	for _, t := range ts {
		if t.t != nil {
			return t.t
		}
	}
	return nil
}

// seconds turns GitLab's float seconds (or null) into a duration; nonsense
// (negative, NaN, beyond a year) is taken as unknown.
func seconds(v *float64) time.Duration {
	if v == nil || math.IsNaN(*v) || *v <= 0 || *v > 366*24*3600 {
		return 0
	}
	return time.Duration(*v * float64(time.Second))
}

// The wire shapes, as GitLab's data builders write them. Only the fields
// Gosling reads are declared.
type (
	wireProject struct {
		ID                int64  `json:"id"`
		PathWithNamespace string `json:"path_with_namespace"`
		WebURL            string `json:"web_url"`
		GitHTTPURL        string `json:"git_http_url"`
		// Homepage is what project objects of old versions carried.
		Homepage string `json:"homepage"`
	}
	// wireRepository is the repository object of Job and Push Hooks, the
	// only project URL of Job Hooks older than the project object.
	wireRepository struct {
		Homepage   string `json:"homepage"`
		GitHTTPURL string `json:"git_http_url"`
	}
	wireRunner struct {
		ID int64 `json:"id"`
	}
	// wireEnvelope holds every field GitLab has named an event's project
	// and instance with: project (current Job, Pipeline, Push, Merge
	// Request Hooks), repository (Job and Push Hooks, before Job Hooks had
	// project), project_id with project_name (Job Hooks; a full name with
	// spaces, a path in some examples), and the top-level
	// path_with_namespace of project events (group and system hooks).
	wireEnvelope struct {
		ObjectKind        string          `json:"object_kind"`
		EventName         string          `json:"event_name"`
		ProjectID         int64           `json:"project_id"`
		ProjectName       string          `json:"project_name"`
		PathWithNamespace string          `json:"path_with_namespace"`
		Project           *wireProject    `json:"project"`
		Repository        *wireRepository `json:"repository"`
	}
	wireJob struct {
		wireEnvelope
		Ref                 string      `json:"ref"`
		Tag                 bool        `json:"tag"`
		BuildID             int64       `json:"build_id"`
		BuildName           string      `json:"build_name"`
		BuildStage          string      `json:"build_stage"`
		BuildStatus         string      `json:"build_status"`
		BuildCreatedAt      hookTime    `json:"build_created_at"`
		BuildStartedAt      hookTime    `json:"build_started_at"`
		BuildFinishedAt     hookTime    `json:"build_finished_at"`
		BuildCreatedAtISO   hookTime    `json:"build_created_at_iso"`
		BuildStartedAtISO   hookTime    `json:"build_started_at_iso"`
		BuildFinishedAtISO  hookTime    `json:"build_finished_at_iso"`
		BuildDuration       *float64    `json:"build_duration"`
		BuildQueuedDuration *float64    `json:"build_queued_duration"`
		BuildAllowFailure   bool        `json:"build_allow_failure"`
		BuildFailureReason  string      `json:"build_failure_reason"`
		RetriesCount        int64       `json:"retries_count"`
		PipelineID          int64       `json:"pipeline_id"`
		Runner              *wireRunner `json:"runner"`
	}
	wirePipelineBuild struct {
		ID             int64       `json:"id"`
		Stage          string      `json:"stage"`
		Name           string      `json:"name"`
		Status         string      `json:"status"`
		CreatedAt      hookTime    `json:"created_at"`
		StartedAt      hookTime    `json:"started_at"`
		FinishedAt     hookTime    `json:"finished_at"`
		Duration       *float64    `json:"duration"`
		QueuedDuration *float64    `json:"queued_duration"`
		Runner         *wireRunner `json:"runner"`
	}
	wirePipeline struct {
		wireEnvelope
		ObjectAttributes *struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
			Ref    string `json:"ref"`
			SHA    string `json:"sha"`
			Source string `json:"source"`
		} `json:"object_attributes"`
		// MergeRequest is null unless the pipeline runs for one.
		MergeRequest *struct {
			ID  int64  `json:"id"`
			IID int64  `json:"iid"`
			URL string `json:"url"`
		} `json:"merge_request"`
		Builds []wirePipelineBuild `json:"builds"`
	}
	// wireMergeRequest is a Merge Request Hook: the merge request in
	// object_attributes (oldrev only on updates that brought commits,
	// head_pipeline_id null before a pipeline, last_commit null for an
	// empty source branch).
	wireMergeRequest struct {
		wireEnvelope
		ObjectAttributes *struct {
			ID             int64  `json:"id"`
			IID            int64  `json:"iid"`
			Action         string `json:"action"`
			State          string `json:"state"`
			SourceBranch   string `json:"source_branch"`
			TargetBranch   string `json:"target_branch"`
			OldRev         string `json:"oldrev"`
			HeadPipelineID *int64 `json:"head_pipeline_id"`
			URL            string `json:"url"`
			LastCommit     *struct {
				ID string `json:"id"`
			} `json:"last_commit"`
		} `json:"object_attributes"`
	}
	wirePush struct {
		wireEnvelope
		Ref         string `json:"ref"`
		Before      string `json:"before"`
		After       string `json:"after"`
		CheckoutSHA string `json:"checkout_sha"`
		// Commits are the newest 20 of the push, oldest first.
		Commits []struct {
			ID      string `json:"id"`
			Message string `json:"message"`
		} `json:"commits"`
		// PushOptions are the push options GitLab parsed (git push -o
		// ci.skip is {"ci": {"skip": true}}).
		PushOptions struct {
			CI struct {
				Skip bool `json:"skip"`
			} `json:"ci"`
		} `json:"push_options"`
	}
)

// headMessage is the message of the push's head commit (after, or the
// newest listed), which decides whether GitLab makes a pipeline.
func (p *wirePush) headMessage() string {
	for _, c := range p.Commits {
		if c.ID == p.After || (p.CheckoutSHA != "" && c.ID == p.CheckoutSHA) {
			return c.Message
		}
	}
	if n := len(p.Commits); n > 0 {
		return p.Commits[n-1].Message
	}
	return ""
}

func (r *wireRunner) id() int64 {
	if r == nil {
		return 0
	}
	return r.ID
}

// DecodeWebhook decodes a delivery's body for its X-Gitlab-Event. It
// returns ErrUnknownEvent (wrapped) for a missing or unknown event and a
// *PayloadError for a body that is not JSON, lacks a required field
// (object_kind, the project ID, the job or pipeline ID) or does not fit the
// event. The project's path and the instance's URL are read from every
// field GitLab has used for them (see wireEnvelope); without the
// X-Gitlab-Instance header a URL-derived path assumes GitLab at the root
// of its host (DecodeDelivery knows better). It reads nothing but body
// and never panics.
func DecodeWebhook(event string, body []byte) (*mothergoose.Event, error) {
	return decodeWebhook(event, body, "")
}

// DecodeDelivery decodes a delivery from its headers and body: the event
// (DecodeWebhook), the GitLab instance that sent it, its token and its
// deduplication keys. The instance is the host of X-Gitlab-Instance, sent
// by current GitLab (a base URL such as https://gitlab.example.com or
// https://example.com/gitlab); old instances send none (and Build Hook
// for jobs), so the host then comes from the project's or repository's
// URLs in the body. Host is "" when neither names one. Errors are
// DecodeWebhook's.
func DecodeDelivery(h http.Header, body []byte) (mothergoose.Delivery, error) {
	instance := strings.TrimSpace(h.Get("X-Gitlab-Instance"))
	if hostOf(instance) == "" {
		instance = ""
	}
	ev, err := decodeWebhook(h.Get("X-Gitlab-Event"), body, instance)
	if err != nil {
		return mothergoose.Delivery{}, err
	}
	host := hostOf(instance)
	if host == "" {
		host = hostOf(ev.InstanceURL)
	}
	return mothergoose.Delivery{
		Host: host, Token: h.Get("X-Gitlab-Token"), Event: ev,
		IdempotencyKey: h.Get("Idempotency-Key"), EventUUID: h.Get("X-Gitlab-Event-UUID"),
	}, nil
}

func decodeWebhook(event string, body []byte, instance string) (*mothergoose.Event, error) {
	info, ok := gitlabEvents[event]
	if !ok {
		if event == "" {
			return nil, fmt.Errorf("%w: the X-Gitlab-Event header is missing", ErrUnknownEvent)
		}
		return nil, fmt.Errorf("%w: X-Gitlab-Event %q", ErrUnknownEvent, truncate(event, 64))
	}
	if event == eventBuild {
		event = EventJob
	}
	if !json.Valid(body) {
		return nil, &PayloadError{Msg: "the body is not valid JSON"}
	}
	w := &mothergoose.Event{Event: event, Ignored: info.objectKind == ""}
	var env wireEnvelope
	switch info.objectKind {
	case "build":
		var j wireJob
		if err := json.Unmarshal(body, &j); err != nil {
			return nil, &PayloadError{Msg: "the body is not a Job Hook", Err: err}
		}
		env = j.wireEnvelope
		if j.BuildID <= 0 || j.BuildStatus == "" {
			return nil, &PayloadError{Msg: "a Job Hook needs build_id and build_status"}
		}
		w.Job = &mothergoose.JobHook{
			ID: j.BuildID, Name: j.BuildName, Stage: j.BuildStage, Status: j.BuildStatus, Ref: j.Ref, Tag: j.Tag,
			PipelineID: j.PipelineID,
			CreatedAt:  first(j.BuildCreatedAtISO, j.BuildCreatedAt),
			StartedAt:  first(j.BuildStartedAtISO, j.BuildStartedAt),
			FinishedAt: first(j.BuildFinishedAtISO, j.BuildFinishedAt),
			Duration:   seconds(j.BuildDuration), QueuedDuration: seconds(j.BuildQueuedDuration),
			AllowFailure: j.BuildAllowFailure, FailureReason: j.BuildFailureReason, RetriesCount: j.RetriesCount,
			RunnerID: j.Runner.id(),
		}
	case "pipeline":
		var p wirePipeline
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, &PayloadError{Msg: "the body is not a Pipeline Hook", Err: err}
		}
		env = p.wireEnvelope
		if p.ObjectAttributes == nil || p.ObjectAttributes.ID <= 0 {
			return nil, &PayloadError{Msg: "a Pipeline Hook needs object_attributes.id"}
		}
		oa := p.ObjectAttributes
		w.Pipeline = &mothergoose.PipelineHook{ID: oa.ID, Status: oa.Status, Ref: oa.Ref, SHA: oa.SHA, Source: oa.Source}
		if mr := p.MergeRequest; mr != nil && mr.ID > 0 {
			w.Pipeline.MergeRequest = &mothergoose.PipelineMergeRequest{ID: mr.ID, IID: mr.IID, URL: mr.URL}
		}
		for _, b := range p.Builds {
			if b.ID <= 0 {
				continue
			}
			w.Pipeline.Builds = append(w.Pipeline.Builds, mothergoose.PipelineBuild{
				ID: b.ID, Stage: b.Stage, Name: b.Name, Status: b.Status,
				CreatedAt: b.CreatedAt.t, StartedAt: b.StartedAt.t, FinishedAt: b.FinishedAt.t,
				Duration: seconds(b.Duration), QueuedDuration: seconds(b.QueuedDuration), RunnerID: b.Runner.id(),
			})
		}
	case "push":
		var p wirePush
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, &PayloadError{Msg: "the body is not a Push Hook", Err: err}
		}
		env = p.wireEnvelope
		w.Push = &mothergoose.PushHook{Ref: p.Ref, Before: p.Before, After: p.After, CheckoutSHA: p.CheckoutSHA,
			HeadMessage: p.headMessage(), SkipCIOption: p.PushOptions.CI.Skip}
	case "merge_request":
		var m wireMergeRequest
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, &PayloadError{Msg: "the body is not a Merge Request Hook", Err: err}
		}
		env = m.wireEnvelope
		oa := m.ObjectAttributes
		if oa == nil || oa.IID <= 0 {
			return nil, &PayloadError{Msg: "a Merge Request Hook needs object_attributes.iid"}
		}
		w.MergeRequest = &mothergoose.MergeRequestHook{
			ID: oa.ID, IID: oa.IID, Action: oa.Action, State: oa.State, SourceBranch: oa.SourceBranch,
			TargetBranch: oa.TargetBranch, OldRev: oa.OldRev, URL: oa.URL,
		}
		if oa.HeadPipelineID != nil && *oa.HeadPipelineID > 0 {
			w.MergeRequest.HeadPipelineID = *oa.HeadPipelineID
		}
		if oa.LastCommit != nil {
			w.MergeRequest.LastCommit = oa.LastCommit.ID
		}
	default:
		if err := json.Unmarshal(body, &env); err != nil {
			return nil, &PayloadError{Msg: "the body is not a GitLab event", Err: err}
		}
	}
	w.ObjectKind, w.EventName = env.ObjectKind, env.EventName
	w.ProjectID = env.ProjectID
	if w.ProjectID == 0 && env.Project != nil {
		w.ProjectID = env.Project.ID
	}
	w.ProjectPath, w.InstanceURL = projectOf(&env, instance)
	switch {
	case w.Ignored && env.ObjectKind == "" && env.EventName == "":
		return nil, &PayloadError{Msg: "the body has neither object_kind nor event_name"}
	case w.Ignored:
		return w, nil
	case env.ObjectKind == "":
		return nil, &PayloadError{Msg: "the body has no object_kind"}
	case env.ObjectKind != info.objectKind:
		return nil, &PayloadError{Msg: fmt.Sprintf("object_kind %q does not fit X-Gitlab-Event %q (want %q)", truncate(env.ObjectKind, 64), event, info.objectKind)}
	case w.ProjectID <= 0:
		return nil, &PayloadError{Msg: "the body names no project (project_id or project.id)"}
	}
	return w, nil
}

// projectOf finds an event's project path and its instance's base URL in
// every field GitLab has used, first found first: project.path_with_namespace,
// the top-level path_with_namespace (project events), the path of the
// project's or repository's URLs below the instance's base (instance when
// known, else the URL's root; a project_name that is a path and ends the
// URL's path tells where the base ends), and project_name when it is a
// path rather than a display name ("Group / Sub / project"). base is ""
// when no URL names the instance.
func projectOf(env *wireEnvelope, instance string) (path, base string) {
	var urls []string
	if p := env.Project; p != nil {
		path = strings.TrimSpace(p.PathWithNamespace)
		urls = append(urls, p.WebURL, p.Homepage, p.GitHTTPURL)
	}
	if r := env.Repository; r != nil {
		urls = append(urls, r.Homepage, r.GitHTTPURL)
	}
	if path == "" {
		path = strings.TrimSpace(env.PathWithNamespace)
	}
	named := ""
	if n := strings.TrimSpace(env.ProjectName); isProjectPath(n) {
		named = n
	}
	instancePath := ""
	if u, err := url.Parse(instance); err == nil && instance != "" {
		instancePath = strings.Trim(u.Path, "/")
	}
	for _, raw := range urls {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			continue
		}
		full := strings.TrimSuffix(strings.Trim(u.Path, "/"), ".git")
		root := ""
		switch {
		case path != "" && strings.EqualFold(full, path):
		case path != "" && hasSuffixFold(full, "/"+path):
			root = full[:len(full)-len(path)-1]
		case path != "":
			continue // some other project's URL
		case named != "" && hasSuffixFold(full, named) && (len(full) == len(named) || full[len(full)-len(named)-1] == '/'):
			root = strings.TrimSuffix(full[:len(full)-len(named)], "/")
		case instancePath != "" && strings.HasPrefix(full, instancePath+"/"):
			root = instancePath
		}
		if path == "" {
			if p := strings.TrimPrefix(strings.TrimPrefix(full, root), "/"); isProjectPath(p) {
				path = p
			}
		}
		if base == "" {
			base = strings.TrimSuffix(u.Scheme+"://"+u.Host+"/"+root, "/")
		}
	}
	if path == "" {
		path = named
	}
	return path, base
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// isProjectPath tells whether s is a project's full path (group/project,
// group/sub/project): two or more segments of GitLab's path characters
// (letters, digits, _, -, .), no spaces.
func isProjectPath(s string) bool {
	segs := strings.Split(s, "/")
	if len(segs) < 2 {
		return false
	}
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
				return false
			}
		}
	}
	return true
}

// truncate bounds a string taken from a request before it is echoed.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
