package gitlabtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// Token rotation as GitLab answers it: POST /runners/:id/reset_authentication_token
// gives 201 with exactly {"token":"glrt-...","token_expires_at":null}; from then
// on /runners/verify refuses the old token and accepts the new one.
func TestRotateResetTokenShape(t *testing.T) {
	s, c := setup(t)
	r := s.AddRunner(gitlabtest.Runner{Description: "gosling/web/r1"})
	anon := call{t: t, s: s}

	status, _, body := c.do(http.MethodPost, fmt.Sprintf("/runners/%d/reset_authentication_token", r.ID), nil)
	if status != http.StatusCreated {
		t.Fatalf("reset: %d %s", status, body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	token, _ := got["token"].(string)
	expires, hasExpiry := got["token_expires_at"]
	if !strings.HasPrefix(token, "glrt-") || token == r.Token || !hasExpiry || expires != nil || len(got) != 2 {
		t.Fatalf("reset answer %s, want exactly a new glrt- token and a null expiry", body)
	}

	if status, _, body := anon.do(http.MethodPost, "/runners/verify", map[string]string{"token": r.Token}); status != http.StatusForbidden {
		t.Errorf("verify with the old token: %d %s", status, body)
	}
	if status, _, body := anon.do(http.MethodPost, "/runners/verify", map[string]string{"token": token}); status != http.StatusOK {
		t.Errorf("verify with the new token: %d %s", status, body)
	}
	if status, _, _ := c.do(http.MethodPost, "/runners/999999/reset_authentication_token", nil); status != http.StatusNotFound {
		t.Errorf("reset of an unknown runner: %d", status)
	}
	if status, _, _ := anon.do(http.MethodPost, fmt.Sprintf("/runners/%d/reset_authentication_token", r.ID), nil); status != http.StatusUnauthorized {
		t.Errorf("reset without a token: %d", status)
	}
}
