package mothergoose

import (
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
)

// The index matches by ID first, whichever egg comes first; a listed path
// is matched as written only while GitLab has not resolved it, only for a
// delivery that names no project ID (a payload's path proves nothing about
// the ID beside it), and never against another project once it has.
func TestProjectIndexMatch(t *testing.T) {
	gl := fly.GitLab{Host: "gitlab.example.com"}
	byPath := &fly.Egg{Name: "a", Version: "1", GitLab: gl, Projects: []fly.ProjectRef{{Path: "acme/web"}}}
	byID := &fly.Egg{Name: "b", Version: "1", GitLab: gl, Projects: []fly.ProjectRef{{ID: 5}}}
	eggs := []*fly.Egg{byPath, byID}
	x := newProjectIndex()
	if got := x.match(eggs, 5, "acme/web"); got != byID {
		t.Errorf("ID 5 at acme/web: %v, want egg b (an ID wins over a path)", got)
	}
	if got := x.match(eggs, 9, "ACME/Web"); got != nil {
		t.Errorf("unresolved path beside project ID 9: %v, want none", got)
	}
	if got := x.match(eggs, 0, "ACME/Web"); got != byPath {
		t.Errorf("unresolved path without a project ID: %v, want egg a", got)
	}
	if n := len(x.stale(eggs, time.Now())); n != 2 {
		t.Errorf("%d stale eggs, want 2", n)
	}
	// GitLab says acme/web is project 7, now at acme/site.
	x.put(byPath, &eggProjects{version: "1", paths: map[int64]string{7: "acme/site"}, resolved: []bool{true}, complete: true})
	if got := x.match(eggs, 7, "acme/site"); got != byPath {
		t.Errorf("moved project: %v, want egg a", got)
	}
	if got := x.match(eggs, 0, "acme/web"); got != nil {
		t.Errorf("another project at the old path: %v, want none", got)
	}
	// Another version of the egg: the entry no longer applies.
	next := *byPath
	next.Version = "2"
	if got := x.match([]*fly.Egg{&next}, 7, "acme/site"); got != nil {
		t.Errorf("entry of an old version applied: %v", got)
	}
	if n := len(x.stale([]*fly.Egg{&next, byID}, time.Now())); n != 2 {
		t.Errorf("%d stale eggs, want 2", n)
	}
	// A failed resolution is retried only after projectRetry.
	x.put(byID, &eggProjects{version: "1", resolved: []bool{false}, tried: time.Now()})
	if n := len(x.stale([]*fly.Egg{byID}, time.Now())); n != 0 {
		t.Errorf("retried at once")
	}
	if n := len(x.stale([]*fly.Egg{byID}, time.Now().Add(projectRetry))); n != 1 {
		t.Errorf("not retried after %s", projectRetry)
	}
}
