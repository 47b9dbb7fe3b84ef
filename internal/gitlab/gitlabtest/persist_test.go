package gitlabtest

import (
	"context"
	"testing"

	gitlab "github.com/gosling-ci/gosling/internal/gitlab"
)

func TestSnapshotRestoreKeepsRunnersAndTokens(t *testing.T) {
	s := New()
	defer s.Close()
	g := s.AddGroupWithID(9001, "data", 0)
	p := s.AddProjectWithID(4821, "data/etl", g.ID)
	s.AddJob(p.ID, JobSpec{Name: "build", Tags: []string{"docker"}})
	c, err := gitlab.New(s.URL(), s.Token())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := c.CreateRunner(ctx, gitlab.RunnerSpec{Type: "project_type", ProjectID: p.ID, Description: "gosling/x/1", Tags: []string{"docker"}})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	s2 := New()
	defer s2.Close()
	if err := s2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	c2, _ := gitlab.New(s2.URL(), s.Token())
	if err := c2.VerifyRunner(ctx, r.Token, ""); err != nil {
		t.Errorf("runner token lost across restore: %v", err)
	}
	if got, ok := s2.ProjectByPath("data/etl"); !ok || got.ID != 4821 {
		t.Errorf("project = %+v", got)
	}
	// New objects do not reuse restored IDs.
	if p2 := s2.AddProject("data/other", 9001); p2.ID <= 4821 {
		t.Errorf("new project ID %d collides with restored ones", p2.ID)
	}
}
