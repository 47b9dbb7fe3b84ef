package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
)

// TestTemporalConnectionChoice: an address the flags give that is not the
// Nest's gets none of the Nest's temporal block (its API key is not read
// from Lockbox); without an address, a running `gosling dev` of the Nest
// is found by its dev.json; otherwise the Nest's block applies.
func TestTemporalConnectionChoice(t *testing.T) {
	nest, err := filepath.Abs(filepath.Join("..", "examples", "nest"))
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	env := map[string]string{envDevState: state}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	flags := func(args ...string) *TemporalFlags {
		t.Helper()
		var tf TemporalFlags
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		tf.registerClient(fs, getenv)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return &tf
	}

	conn, block, err := flags("--nest", nest).connection(getenv)
	if err != nil || block.APIKey.IsZero() || conn.Address != "" {
		t.Fatalf("the Nest's own Temporal: %+v %+v %v", conn, block, err)
	}
	conn, block, err = flags("--nest", nest, "--temporal-address", "127.0.0.1:7233").connection(getenv)
	if err != nil || !block.APIKey.IsZero() || block.Address != "" || conn.Address != "127.0.0.1:7233" {
		t.Errorf("another address kept the Nest's block: %+v %+v %v", conn, block, err)
	}

	// A running dev of this Nest (this process stands in for it).
	dev := DevState{Temporal: "127.0.0.1:17233", Nest: nest, PID: os.Getpid()}
	b, _ := json.Marshal(dev)
	if err := os.WriteFile(filepath.Join(state, "dev.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	conn, block, err = flags("--nest", nest).connection(getenv)
	if err != nil || conn.Address != "127.0.0.1:17233" || !block.APIKey.IsZero() {
		t.Errorf("the running dev was not found: %+v %+v %v", conn, block, err)
	}
	conn, _, _ = flags("--nest", nest, "--temporal-address", "10.0.0.1:7233").connection(getenv)
	if conn.Address != "10.0.0.1:7233" {
		t.Errorf("the flag lost to the dev: %+v", conn)
	}
	// A dev that is gone is not used.
	dev.PID = 1 << 30
	b, _ = json.Marshal(dev)
	_ = os.WriteFile(filepath.Join(state, "dev.json"), b, 0o600)
	if conn, block, _ = flags("--nest", nest).connection(getenv); conn.Address != "" || block.APIKey.IsZero() {
		t.Errorf("a stale dev.json was used: %+v", conn)
	}
}
