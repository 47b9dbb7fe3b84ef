package fly

import (
	"path/filepath"
	"testing"
	"time"
)

// apex.warm_for is read into the Apex pool; nadir has none.
func TestWarmForLoaded(t *testing.T) {
	nest, diags := LoadNest(filepath.Join("testdata", "valid", "warm"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	egg, ok := nest.Egg("web")
	if !ok {
		t.Fatal("no egg web")
	}
	if egg.Apex.WarmFor.D() != 2*time.Minute || egg.Nadir.WarmFor != 0 {
		t.Errorf("apex.warm_for = %s, nadir.warm_for = %s", egg.Apex.WarmFor, egg.Nadir.WarmFor)
	}
}
