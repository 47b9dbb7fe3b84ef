package fly

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclparse"
)

// writeBenchNest writes a Nest of eggs single-project eggs and buckets
// buckets, each bucket listing 20 projects, plus MG and UF from the example.
func writeBenchNest(tb testing.TB, dir string, eggs, buckets int) []string {
	tb.Helper()
	var files []string
	write := func(rel, content string) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
		files = append(files, p)
	}
	for _, rel := range []string{"MG/config.fly", "UF/config.fly"} {
		src, err := os.ReadFile(filepath.Join("..", "examples", "nest", filepath.FromSlash(rel)))
		if err != nil {
			tb.Fatal(err)
		}
		write(rel, string(src))
	}
	for i := range eggs {
		write(fmt.Sprintf("Eggs/egg-%04d/config.fly", i), fmt.Sprintf(`egg "egg-%04d" {
  description = "Service %d"
  gitlab {
    host           = "gitlab.com"
    token          = local.gitlab_token
    webhook_secret = "yc-lockbox://${local.lockbox}/webhook_%d"
  }
  project    = "acme/team-%d/service-%d"
  project_id = %d
  runner {
    type                  = "auto"
    clouds                = ["yandex", "aws"]
    cpu                   = %d
    memory                = "%dGiB"
    disk                  = "40GiB"
    max_concurrent        = 10
    tags                  = ["docker", "linux", "team-%d"]
    image                 = "golang:1.26"
    expected_job_duration = "20m"
    env = {
      GOFLAGS   = "-mod=mod"
      NPM_TOKEN = "aws-sm://ci/npm/token"
    }
  }
  apex {
    min          = 0
    max          = 10
    idle_timeout = "15m"
  }
  nadir {
    min = 1
    max = 3
  }
}
`, i, i, i, i%50, i, 1000+i, 1+i%4, 2+i%8, i%50))
	}
	for i := range buckets {
		projects := ""
		for p := range 20 {
			projects += fmt.Sprintf("%q, ", fmt.Sprintf("shared-%d/project-%d", i, p))
		}
		write(fmt.Sprintf("Eggs/bucket-%03d/config.fly", i), fmt.Sprintf(`eggsbucket "bucket-%03d" {
  gitlab {
    host           = "gitlab.example.com"
    token          = local.gitlab_token
    webhook_secret = local.gitlab_secret
  }
  repositories {
    projects = [%s]
  }
  runner {
    type   = "vm"
    cpu    = 4
    memory = "8GiB"
    tags   = ["shared", "bucket-%d"]
  }
}
`, i, projects, i))
	}
	return files
}

// benchNest writes the Nest that BenchmarkLoadNest and BenchmarkRawParse
// read: 1,000 eggs and 50 buckets.
func benchNest(b *testing.B) (string, []string) {
	return benchNestOf(b, 1000, 50)
}

func benchNestOf(b *testing.B, eggs, buckets int) (string, []string) {
	dir := b.TempDir()
	files := writeBenchNest(b, dir, eggs, buckets)
	return dir, files
}

func loadBenchNest(b *testing.B, dir string, want int) {
	n, diags := LoadNest(dir)
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	if len(n.Eggs) != want {
		b.Fatalf("eggs = %d, want %d", len(n.Eggs), want)
	}
}

func rawParse(b *testing.B, files []string) {
	p := hclparse.NewParser()
	for _, f := range files {
		if _, diags := p.ParseHCLFile(f); diags.HasErrors() {
			b.Fatal(diags.Error())
		}
	}
}

// BenchmarkLoadNest loads a Nest of 1,000 eggs and 50 buckets.
func BenchmarkLoadNest(b *testing.B) {
	dir, _ := benchNest(b)
	b.ReportAllocs()
	for b.Loop() {
		loadBenchNest(b, dir, 1050)
	}
}

// BenchmarkRawParse parses the same files with hclparse and does nothing else.
func BenchmarkRawParse(b *testing.B) {
	_, files := benchNest(b)
	b.ReportAllocs()
	for b.Loop() {
		rawParse(b, files)
	}
}

// BenchmarkLoadNestVsRaw runs LoadNest and raw hclparse parsing of the same
// files in one loop and reports the ratio of their times (target: at most
// 1.2). It does so at 1,000 eggs with 50 buckets and at five times that;
// loadnest-us/egg, the load time per egg or bucket, stays level when the
// cost grows linearly with the Nest.
//
// ratio is of wall-clock time, which LoadNest's parallel parsing and
// decoding shorten on an idle machine; cpu-ratio is of the CPU time both
// use on all threads, garbage collection included, which a machine busy
// with other work disturbs far less.
func BenchmarkLoadNestVsRaw(b *testing.B) {
	for _, size := range []struct{ eggs, buckets int }{{1000, 50}, {5000, 250}} {
		b.Run(fmt.Sprintf("eggs=%d", size.eggs), func(b *testing.B) {
			dir, files := benchNestOf(b, size.eggs, size.buckets)
			var load, raw, loadCPU, rawCPU time.Duration
			cpuOK := true
			for b.Loop() {
				c0, ok0 := processCPU()
				t0 := time.Now()
				loadBenchNest(b, dir, size.eggs+size.buckets)
				t1 := time.Now()
				c1, ok1 := processCPU()
				rawParse(b, files)
				t2 := time.Now()
				c2, ok2 := processCPU()
				load += t1.Sub(t0)
				raw += t2.Sub(t1)
				loadCPU += c1 - c0
				rawCPU += c2 - c1
				cpuOK = cpuOK && ok0 && ok1 && ok2
			}
			n := float64(b.N)
			b.ReportMetric(float64(load.Milliseconds())/n, "loadnest-ms")
			b.ReportMetric(float64(raw.Milliseconds())/n, "rawparse-ms")
			b.ReportMetric(float64(load.Microseconds())/n/float64(size.eggs+size.buckets), "loadnest-us/egg")
			b.ReportMetric(float64(load)/float64(raw), "ratio")
			if cpuOK && rawCPU > 0 {
				b.ReportMetric(float64(loadCPU)/float64(rawCPU), "cpu-ratio")
			}
		})
	}
}
