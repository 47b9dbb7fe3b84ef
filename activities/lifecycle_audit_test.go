package activities

import (
	"context"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/store"
)

// TestLifecycleIsAudited: every runner lifecycle action is an audit record
// with its actor, reason and the states before and after: provisioned,
// registered, ready, demoted, promoted, drained, resumed, terminating,
// terminated, and reaped for a reconciliation's; a repeated move to the
// state a runner is in writes nothing.
func TestLifecycleIsAudited(t *testing.T) {
	ctx := context.Background()
	st := openSQLiteStore(t)
	a := &Activities{Store: st}
	for _, id := range []string{"web-p1", "web-p2"} {
		if err := a.RecordRunner(ctx, RecordRunnerInput{Runner: store.Runner{ID: id, Egg: "web", Cloud: "local", Kind: "vm", GitLabHost: "gitlab.example.com"}}); err != nil {
			t.Fatal(err)
		}
	}
	// A retried RecordRunner audits nothing twice.
	if err := a.RecordRunner(ctx, RecordRunnerInput{Runner: store.Runner{ID: "web-p1", Egg: "web"}}); err != nil {
		t.Fatal(err)
	}
	move := func(id string, to store.RunnerState, actor, reason, policy string) {
		t.Helper()
		if _, err := a.TransitionRunner(ctx, TransitionInput{RunnerID: id, To: to, Actor: actor, Reason: reason, Policy: policy}); err != nil {
			t.Fatalf("%s to %s: %v", id, to, err)
		}
	}
	move("web-p1", store.StateRegistering, "mothergoose", "GitLab runner 7", "")
	move("web-p1", store.StateActive, "mothergoose", "agent ready", "")
	move("web-p1", store.StateActive, "mothergoose", "agent ready again", "")
	move("web-p1", store.StateDormant, "mothergoose", "idle 15m", "")
	move("web-p1", store.StateActive, "mothergoose", "job 42", "")
	move("web-p1", store.StateDraining, "api", "drained through the API", "")
	move("web-p1", store.StateActive, "api", "scaled again", "")
	move("web-p1", store.StateTerminating, "uglyfox", "old: 8d", "old")
	move("web-p1", store.StateTerminated, "uglyfox", "old: 8d", "old")
	move("web-p2", store.StateFailed, "mothergoose", "tofu apply failed", "")
	move("web-p2", store.StateTerminated, "uglyfox", "row-orphan: nothing left", contract.PolicyReconcile)

	recs, err := st.ListAudit(ctx, store.AuditFilter{Egg: "web"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.RunnerID+" "+r.Actor+" "+r.Action+" "+stateOf(r.Before)+">"+stateOf(r.After)+" "+r.Reason)
	}
	want := []string{
		"web-p1 mothergoose provisioned >provisioning for the pool of web",
		"web-p2 mothergoose provisioned >provisioning for the pool of web",
		"web-p1 mothergoose registered provisioning>registering GitLab runner 7",
		"web-p1 mothergoose ready registering>active agent ready",
		"web-p1 mothergoose demoted active>dormant idle 15m",
		"web-p1 mothergoose promoted dormant>active job 42",
		"web-p1 api drained active>draining drained through the API",
		"web-p1 api resumed draining>active scaled again",
		"web-p1 uglyfox terminating active>terminating old: 8d",
		"web-p1 uglyfox terminated terminating>terminated old: 8d",
		"web-p2 mothergoose failed provisioning>failed tofu apply failed",
		"web-p2 uglyfox reaped failed>terminated row-orphan: nothing left",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if recs[len(recs)-1].Policy != contract.PolicyReconcile {
		t.Errorf("the reaping names no policy: %+v", recs[len(recs)-1])
	}
}

func stateOf(b []byte) string {
	s := string(b)
	if i := strings.Index(s, `"state":"`); i >= 0 {
		s = s[i+len(`"state":"`):]
		return s[:strings.IndexByte(s, '"')]
	}
	return ""
}
