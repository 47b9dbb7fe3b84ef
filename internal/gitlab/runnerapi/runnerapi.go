// Package runnerapi is the part of GitLab's runner API a runner's agent
// calls with the runner's own authentication token, over plain HTTP: it
// needs nothing of the GitLab API client the servers use.
package runnerapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrInvalidRunnerToken: GitLab refused the runner authentication token
// (403 from POST /runners/verify).
var ErrInvalidRunnerToken = errors.New("runner token rejected")

// Error is an answer of GitLab other than success.
type Error struct {
	StatusCode int
	Message    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("gitlab: POST /runners/verify: %d %s", e.StatusCode, e.Message)
}

// IsForbidden tells whether GitLab refused the token (403).
func IsForbidden(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusForbidden
}

// Client calls the runner API of one GitLab instance.
type Client struct {
	base string
	hc   *http.Client
}

// New returns a client for the instance at baseURL (https://gitlab.com;
// /api/v4 is added), with a 30-second timeout per call when hc is nil.
func New(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gitlab runner API: base URL %q must be http(s)://host[:port][/path]", baseURL)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/") + "/api/v4", hc: hc}, nil
}

// VerifyRunner checks a runner authentication token as gitlab-runner does
// at start (POST /api/v4/runners/verify with {"token": ..., "system_id":
// ...}; the system ID, when given, makes or refreshes that runner manager,
// RunnerSystemID): 200 is a
// token GitLab takes; a refused one is an *Error matching IsForbidden and
// ErrInvalidRunnerToken. The token is never part of an error.
func (c *Client) VerifyRunner(ctx context.Context, token, systemID string) error {
	body, _ := json.Marshal(struct {
		Token    string `json:"token"`
		SystemID string `json:"system_id,omitempty"`
	}{token, systemID})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/runners/verify", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("verify runner token: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated {
		return nil
	}
	var msg struct {
		Message any    `json:"message"`
		Error   string `json:"error"`
	}
	_ = json.Unmarshal(b, &msg)
	text := http.StatusText(resp.StatusCode)
	if msg.Message != nil {
		text = fmt.Sprint(msg.Message)
	} else if msg.Error != "" {
		text = msg.Error
	}
	e := &Error{StatusCode: resp.StatusCode, Message: strings.ReplaceAll(text, token, "[masked]")}
	if resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("verify runner token: %w: %w", ErrInvalidRunnerToken, e)
	}
	return fmt.Errorf("verify runner token: %w", e)
}

// RunnerSystemID reads, or makes and keeps, the runner system ID of a
// machine's gitlab-runner: the file .runner_system_id in the directory of
// its config.toml holds it (s_ and 12 hex digits), as gitlab-runner 15.11
// and later keep it, so the machine's own checks and its gitlab-runner are
// one runner manager to GitLab. Errors: reading or writing the file.
func RunnerSystemID(configDir string) (string, error) {
	path := filepath.Join(configDir, ".runner_system_id")
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	r := make([]byte, 6)
	if _, err := rand.Read(r); err != nil {
		return "", err
	}
	id := "s_" + hex.EncodeToString(r)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	return id, nil
}
