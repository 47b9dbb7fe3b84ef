package gitlab

import (
	"context"
	"testing"
)

func TestGetGroup(t *testing.T) {
	s := newServer(t)
	acme := s.AddGroup("acme", 0)
	sub := s.AddGroup("platform", acme.ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	g, err := c.GetGroup(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != sub.ID || g.FullPath != "acme/platform" {
		t.Errorf("GetGroup = %+v", g)
	}
	if _, err := c.GetGroup(ctx, 999); !IsNotFound(err) {
		t.Errorf("missing group: %v, want a 404", err)
	}
	s.FailNext("GET", "/groups/*", 503, 1, false)
	if g, err := c.GetGroup(ctx, acme.ID); err != nil || g.FullPath != "acme" {
		t.Errorf("GetGroup after a 503: %+v, %v (a GET is retried)", g, err)
	}
}
