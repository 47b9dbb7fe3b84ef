package gitlabtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// With runner_token_expiration_interval set, a created or reset token
// carries its token_expires_at, and the runner API refuses it with 403
// from that moment on; a reset gives a token that works again.
func TestRunnerTokenExpiry(t *testing.T) {
	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	s, c := setup(t, gitlabtest.WithClock(clock), gitlabtest.WithRunnerTokenExpiration(time.Hour))
	p := s.AddProject("grp/expiring", 0)
	anon := call{t: t, s: s}

	status, _, body := c.do(http.MethodPost, "/user/runners", map[string]any{
		"runner_type": "project_type", "project_id": p.ID, "tag_list": "docker",
	})
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	var created struct {
		ID             int64  `json:"id"`
		Token          string `json:"token"`
		TokenExpiresAt string `json:"token_expires_at"`
	}
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse(time.RFC3339, created.TokenExpiresAt)
	if err != nil {
		t.Fatalf("token_expires_at %q: %v", created.TokenExpiresAt, err)
	}
	if left := time.Until(at); left <= 59*time.Minute || left > time.Hour {
		t.Errorf("token expires in %s, want an hour", left)
	}
	verify := func(token string) int {
		status, _, _ := anon.do(http.MethodPost, "/runners/verify", map[string]string{"token": token, "system_id": "s_expiry"})
		return status
	}
	request := func(token string) int {
		status, _, _ := anon.do(http.MethodPost, "/jobs/request", map[string]any{"token": token, "system_id": "s_expiry"})
		return status
	}
	if st := verify(created.Token); st != http.StatusOK {
		t.Errorf("verify before expiry: %d", st)
	}
	skew.Store(int64(time.Hour))
	if st := verify(created.Token); st != http.StatusForbidden {
		t.Errorf("verify of an expired token: %d, want 403", st)
	}
	if st := request(created.Token); st != http.StatusForbidden {
		t.Errorf("jobs/request with an expired token: %d, want 403", st)
	}

	status, _, body = c.do(http.MethodPost, fmt.Sprintf("/runners/%d/reset_authentication_token", created.ID), nil)
	var reset struct {
		Token          string `json:"token"`
		TokenExpiresAt string `json:"token_expires_at"`
	}
	if err := json.Unmarshal([]byte(body), &reset); status != http.StatusCreated || err != nil {
		t.Fatalf("reset: %d %s", status, body)
	}
	if again, err := time.Parse(time.RFC3339, reset.TokenExpiresAt); err != nil || !again.After(at) {
		t.Errorf("reset token_expires_at %q, want after %s", reset.TokenExpiresAt, at)
	}
	if st := verify(reset.Token); st != http.StatusOK {
		t.Errorf("verify of the reset token: %d", st)
	}
}
