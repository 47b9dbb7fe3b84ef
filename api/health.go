package api

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/sdk/client"
)

// readyTimeout bounds the readiness checks.
const readyTimeout = 2 * time.Second

// healthz answers 200 while the process runs.
func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// Readiness is the answer of /readyz: "ok" or the failure of each check.
type Readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// readyz answers 200 when the store and Temporal answer within two
// seconds, else 503 naming what failed.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), readyTimeout)
	defer cancel()
	checks := map[string]func(context.Context) error{
		"store": s.mg.Store().Ping,
		"temporal": func(ctx context.Context) error {
			tc := s.mg.Temporal()
			if tc == nil {
				return errors.New("no Temporal client is configured")
			}
			_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		},
	}
	out := Readiness{Status: "ok", Checks: map[string]string{}}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for name, check := range checks {
		wg.Go(func() {
			result := "ok"
			if err := check(ctx); err != nil {
				result = "failed: " + truncate(err.Error(), 300)
			}
			mu.Lock()
			defer mu.Unlock()
			out.Checks[name] = result
			if result != "ok" {
				out.Status = "unavailable"
			}
		})
	}
	wg.Wait()
	code := http.StatusOK
	if out.Status != "ok" {
		code = http.StatusServiceUnavailable
	}
	c.JSON(code, out)
}
