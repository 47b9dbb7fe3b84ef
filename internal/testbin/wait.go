package testbin

import (
	"context"
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test with "timed out
// waiting for <what>" once within has passed. It polls every 20 ms, or
// every 50 ms when within is a minute or more. Tests wait with it instead
// of sleeping a fixed time, so a slow machine makes them slower, not red.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	WaitForContext(t, ctx, what, cond)
}

// WaitForContext is WaitFor bounded by ctx instead of a duration: it fails
// the test once ctx is done.
func WaitForContext(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	every := 20 * time.Millisecond
	if d, ok := ctx.Deadline(); ok && time.Until(d) >= time.Minute {
		every = 50 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
