package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// heartbeatTimeout bounds one heartbeat post: a slow API never holds the
// agent up.
const heartbeatTimeout = 5 * time.Second

// sendHeartbeat tells MotherGoose the machine is alive, authenticated with
// the runner's own token (the API compares it with the stored one). It is
// best effort: a missed beat is logged, and UglyFox only acts on silence
// longer than its heartbeat timeout.
func sendHeartbeat(ctx context.Context, cfg Config, tokens *tokenSource, log *slog.Logger) {
	if cfg.HeartbeatURL == "" {
		return
	}
	if err := postHeartbeat(ctx, cfg, tokens); err != nil {
		log.Debug("heartbeat not delivered", "runner", cfg.RunnerID, "error", err)
	}
}

func postHeartbeat(ctx context.Context, cfg Config, tokens *tokenSource) error {
	ctx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
	defer cancel()
	token, _, err := tokens.current(ctx, cfg)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.HeartbeatURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("heartbeat answered %s", resp.Status)
	}
	return nil
}
