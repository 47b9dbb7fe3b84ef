package cli

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/gosling-ci/gosling/fly"
)

// secretURI matches the secret URIs a Nest may hold.
var secretURI = regexp.MustCompile(`^(yc-lockbox|aws-sm|vault|local)://`)

// Every secret URI left in the dev Nest gets a development value, so no
// webhook, sweep or check reads one that is missing (each such read is a
// failed secret-access record in gosling audit): the Nest repository's
// webhook secret, which every webhook is checked against, among them.
func TestDevSeedsEverySecretOfTheNest(t *testing.T) {
	nest, diags := fly.LoadNest(filepath.Join("..", "examples", "nest"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	dev := devNest(nest, "127.0.0.1:1", true, t.TempDir())
	if dev.MotherGoose.Nest.WebhookSecret.IsZero() {
		t.Fatal("examples/nest's MG/config.fly sets no nest.webhook_secret: the test needs one")
	}
	b, err := json.Marshal(dev)
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		t.Fatal(err)
	}
	seeded := nestSecrets(dev)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(path+"."+k, x)
			}
		case []any:
			for _, x := range v {
				walk(path+"[]", x)
			}
		case string:
			if secretURI.MatchString(v) {
				if _, ok := seeded[fly.SecretRef(v)]; !ok {
					t.Errorf("%s = %s is not seeded by gosling dev", path, v)
				}
			}
		}
	}
	walk("nest", tree)
}
