package bootstrap

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// untypedJournal is a journal as gosling wrote it while every resource's
// props were a plain JSON object (keys sorted, as encoding/json writes a
// map): deploy 1 made acme/web's hook, deploy 2 moved its URL to a new
// domain. {{host}} is the GitLab test server's host.
const untypedJournal = `[
{"id":1,"time":"2026-11-02T10:00:00Z","kind":"deploy","status":"applied","changes":[
 {"action":"create","address":"gitlab_project_hook.{{host}}/acme/web",
  "after":{"type":"gitlab_project_hook","name":"{{host}}/acme/web","props":{"api_token":"local://gitlab/token","enable_ssl_verification":true,"host":"{{host}}","insecure":true,"job_events":true,"merge_requests_events":true,"nest":false,"pipeline_events":true,"project":"acme/web","push_events":false,"token":"local://gitlab/hook","url":"https://ci-runners.example.com/webhooks/gitlab"},"id":"1","outputs":{"id":"1"}}}]},
{"id":2,"time":"2026-11-03T10:00:00Z","kind":"deploy","status":"applied","changes":[
 {"action":"update","address":"gitlab_project_hook.{{host}}/acme/web",
  "before":{"type":"gitlab_project_hook","name":"{{host}}/acme/web","props":{"api_token":"local://gitlab/token","enable_ssl_verification":true,"host":"{{host}}","insecure":true,"job_events":true,"merge_requests_events":true,"nest":false,"pipeline_events":true,"project":"acme/web","push_events":false,"token":"local://gitlab/hook","url":"https://ci-runners.example.com/webhooks/gitlab"},"id":"1","outputs":{"id":"1"}},
  "after":{"type":"gitlab_project_hook","name":"{{host}}/acme/web","props":{"api_token":"local://gitlab/token","enable_ssl_verification":true,"host":"{{host}}","insecure":true,"job_events":true,"merge_requests_events":true,"nest":false,"pipeline_events":true,"project":"acme/web","push_events":false,"token":"local://gitlab/hook","url":"https://ci.example.org/webhooks/gitlab"},"id":"1","outputs":{"id":"1"}}}]}
]`

// TestRollbackFromUntypedJournal rolls back with a journal written before
// resources had a struct per kind: its props decode into HookProps and
// the rollback puts the hook's URL back.
func TestRollbackFromUntypedJournal(t *testing.T) {
	ctx := context.Background()
	gl := gitlabtest.New()
	t.Cleanup(gl.Close)
	web := gl.AddProject("acme/web", 0)
	host := strings.TrimPrefix(gl.URL(), "http://")
	resolve := mapResolver(map[fly.SecretRef]string{"local://gitlab/token": gl.Token(), "local://gitlab/hook": "hook-secret-1"})
	clients := NewGitLabClients(resolve, gitlab.WithRetry(0, time.Millisecond, time.Millisecond))
	prov := &GitLabProvider{Deployment: "gosling-test", Clients: clients, Resolve: resolve}

	// The hook as deploy 2 left it.
	g := fly.GitLab{Host: host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: "local://gitlab/hook"}
	if _, err := prov.Create(ctx, hookResource(g, "acme/web", "https://ci.example.org", false)); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "journal")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(strings.ReplaceAll(untypedJournal, "{{host}}", host)))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &Engine{Deployment: "gosling-test", Cloud: "aws", Providers: []Provider{prov}, Journal: BlobJournal{FileBlob{path}}}

	entries, err := e.Journal.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := entries[1].Changes[0].Before.Props.(HookProps); !ok || h.URL != "https://ci-runners.example.com/webhooks/gitlab" || h.Token != "local://gitlab/hook" || !h.JobEvents || h.PushEvents {
		t.Fatalf("the old entry's props: %#v", entries[1].Changes[0].Before.Props)
	}
	rp, actual, err := e.RollbackPlan(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if rp.Count(Update) != 1 || rp.Changes[0].Fields[0].Path != "url" {
		t.Fatalf("rollback plan: %+v", rp.Changes)
	}
	if _, err := e.Rollback(ctx, rp, actual, 1, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := gl.Hooks(web.ID); len(got) != 1 || got[0].URL != "https://ci-runners.example.com/webhooks/gitlab" || got[0].Token != "hook-secret-1" {
		t.Fatalf("after rollback: %+v", got)
	}
	// The rollback's own entry reads back typed too.
	entries, err = e.Journal.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last := entries[len(entries)-1]; last.Kind != KindRollback || len(last.Changes) != 1 {
		t.Fatalf("rollback entry: %+v", last)
	} else if _, ok := last.Changes[0].After.Props.(HookProps); !ok {
		t.Fatalf("rollback entry's props: %T", last.Changes[0].After.Props)
	}
}

// TestDecodePropsRefusesUnknownKeys: a key the kind's struct lacks, or a
// type gosling has no kind for, is an error, not dropped, so a journal is
// never half read.
func TestDecodePropsRefusesUnknownKeys(t *testing.T) {
	if _, err := decodeProps(GitLabHook, []byte(`{"url":"https://x","colour":"blue"}`)); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := decodeProps("aws_nothing", []byte(`{"a":1}`)); err == nil || !strings.Contains(err.Error(), "no resource kind aws_nothing") {
		t.Fatalf("unknown kind: %v", err)
	}
}

// TestEveryKindHasProps: every type a provider handles has its struct,
// so every journal entry decodes and no provider gets another type.
func TestEveryKindHasProps(t *testing.T) {
	for _, typ := range slices.Concat(awsTypes, yandexTypes, []string{GitLabHook}) {
		zero, ok := propsKinds[typ]
		if !ok {
			t.Errorf("%s has no Props struct in propsKinds", typ)
			continue
		}
		// The comparable form round-trips: the struct's JSON is its own.
		if got := fromComparable(typ, Comparable(zero)); !reflect.DeepEqual(Comparable(got), Comparable(zero)) {
			t.Errorf("%s: %#v does not round-trip through its comparable form: %#v", typ, zero, got)
		}
	}
}
