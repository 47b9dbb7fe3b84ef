package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/testbin"
)

// riftPipeline writes a file under a cache path in its first job and reads
// it back in the second, with the same cache key.
const riftPipeline = `stages: [build, test]
write:
  stage: build
  cache: {key: deps, paths: [vendor/]}
  script:
    - mkdir -p vendor
    - echo "cached by job $CI_JOB_ID" > vendor/lib.txt
read:
  stage: test
  cache: {key: deps, paths: [vendor/], policy: pull}
  script:
    - cat vendor/lib.txt
`

// Rift in gosling dev: the example Nest's web-app has a rift block, so dev
// starts Rift and web-app's runners point their cache at it. Two jobs of
// one pipeline run on two runners (web-app's are serverless: one per job);
// the second restores what the first saved, and Rift's bucket holds it.
func TestDevRiftSharesCacheBetweenRunners(t *testing.T) {
	bin := testbin.Gosling(t)
	stateDir := t.TempDir()
	d := startDev(t, bin, stateDir, []int{freePort(t), freePort(t), freePort(t), freePort(t)})
	defer d.stop(t)
	if !strings.Contains(d.out.String(), "Rift serves 1 egg(s) [web-app]: control https://127.0.0.1:") {
		t.Errorf("banner lacks Rift:\n%s", d.out)
	}
	var state struct {
		RiftURL string `json:"rift_url"`
	}
	b, err := os.ReadFile(filepath.Join(stateDir, "dev.json"))
	if err == nil {
		err = json.Unmarshal(b, &state)
	}
	if err != nil || state.RiftURL == "" {
		t.Fatalf("dev.json has no rift_url (%v): %s", err, b)
	}

	ci := filepath.Join(t.TempDir(), ".gitlab-ci.yml")
	if err := os.WriteFile(ci, []byte(riftPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "dev", "pipeline", ci, "--egg", "web-app", "--json", "--state-dir", stateDir).CombinedOutput()
	if err != nil {
		t.Fatalf("gosling dev pipeline: %v\n%s\ndev:\n%s", err, out, d.out)
	}
	runners, statuses := map[string]string{}, map[string]string{}
	var log strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var st map[string]any
		if err := json.Unmarshal([]byte(line), &st); err != nil {
			t.Fatalf("output %q: %v", line, err)
		}
		job, _ := st["job"].(string)
		switch st["step"] {
		case "runner":
			runners[job], _ = st["runner"].(string)
		case "job":
			statuses[job], _ = st["status"].(string)
		case "log":
			fmt.Fprintf(&log, "[%s] %v\n", job, st["message"])
		}
	}
	if statuses["write"] != "success" || statuses["read"] != "success" {
		t.Fatalf("jobs %v:\n%s", statuses, log.String())
	}
	if runners["write"] == "" || runners["write"] == runners["read"] {
		t.Errorf("write ran on %q and read on %q: want two runners", runners["write"], runners["read"])
	}
	for _, want := range []string{"[write] Created cache", "[read] Successfully extracted cache", "[read] cached by job"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("job logs lack %q:\n%s", want, log.String())
		}
	}

	// Rift's metrics: the object is held and was read once.
	ca, err := os.ReadFile(filepath.Join(stateDir, "rift", "pki", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(state.RiftURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metric := func(name string) float64 {
		m := regexp.MustCompile(`(?m)^` + name + `\{egg="web-app",store="cache"\} (\S+)$`).FindSubmatch(body)
		if m == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	if metric("gosling_rift_cache_bytes") <= 0 || metric("gosling_rift_cache_hits_total") < 1 {
		t.Errorf("Rift's metrics show no cached object read back:\n%s", body)
	}
}
