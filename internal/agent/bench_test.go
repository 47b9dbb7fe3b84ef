package agent_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/testbin"
)

// BenchmarkAgentBinary weighs the agent binary (cmd/gosling-agent) against
// gosling's, and times each one's start to ready: from launching the
// agent of a machine (agent launch, as the local provider's module does)
// to its ready report reaching MotherGoose, which takes reading the token
// from the secret store, verifying it with GitLab, writing config.toml
// and starting gitlab-runner (the stand-in). The cloud VM's boot and its
// download of the binary are not in it: the download is what the size
// ratio stands for.
func BenchmarkAgentBinary(b *testing.B) {
	const rounds = 5
	bins := map[string]string{"gosling": testbin.Gosling(b), "gosling-agent": testbin.GoslingAgent(b)}
	for b.Loop() {
		took := map[string]time.Duration{}
		for _, name := range []string{"gosling", "gosling-agent"} {
			for i := range rounds {
				r := newRig(b)
				r.dir = filepath.Join(b.TempDir(), "machine")
				start := time.Now()
				if err := agent.Launch(bins[name], r.dir, r.cfg, agent.LaunchOptions{}); err != nil {
					b.Fatal(err)
				}
				for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
					if ready, _, _ := r.mg.snapshot(); len(ready) > 0 {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("%s round %d: no ready report within a minute", name, i)
					}
				}
				took[name] += time.Since(start)
				if err := agent.Stop(r.dir, 30*time.Second); err != nil {
					b.Fatal(err)
				}
			}
		}
		sizes := map[string]float64{}
		for name, p := range bins {
			fi, err := os.Stat(p)
			if err != nil {
				b.Fatal(err)
			}
			sizes[name] = float64(fi.Size()) / (1 << 20)
		}
		b.ReportMetric(sizes["gosling"], "gosling-MiB")
		b.ReportMetric(sizes["gosling-agent"], "agent-MiB")
		b.ReportMetric(sizes["gosling-agent"]/sizes["gosling"], "agent/gosling-size")
		b.ReportMetric(float64(took["gosling"].Milliseconds())/rounds, "gosling-ready-ms")
		b.ReportMetric(float64(took["gosling-agent"].Milliseconds())/rounds, "agent-ready-ms")
		b.ReportMetric(float64(took["gosling-agent"])/float64(took["gosling"]), "agent/gosling-ready")
	}
}
