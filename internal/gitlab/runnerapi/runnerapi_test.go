package runnerapi_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerapi"
)

// A runner's token is verified as gitlab-runner verifies it, against the
// GitLab test server: a live one passes, a refused one is a 403 that never
// names the token.
func TestVerifyRunner(t *testing.T) {
	s := gitlabtest.New()
	t.Cleanup(s.Close)
	r := s.AddRunner(gitlabtest.Runner{Description: "gosling/web/r1"})
	c, err := runnerapi.New(s.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyRunner(context.Background(), r.Token, ""); err != nil {
		t.Fatalf("a live token: %v", err)
	}
	err = c.VerifyRunner(context.Background(), "glrt-not-a-runner-token", "")
	if !runnerapi.IsForbidden(err) || !errors.Is(err, runnerapi.ErrInvalidRunnerToken) || strings.Contains(err.Error(), "glrt-not-a-runner-token") {
		t.Errorf("a refused token: %v", err)
	}
	if _, err := runnerapi.New("gitlab.com", nil); err == nil {
		t.Error("a base URL without a scheme accepted")
	}
}
