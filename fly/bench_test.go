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

func benchNest(b *testing.B) (string, []string) {
	dir := b.TempDir()
	files := writeBenchNest(b, dir, 1000, 50)
	return dir, files
}

func loadBenchNest(b *testing.B, dir string) {
	n, diags := LoadNest(dir)
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	if len(n.Eggs) != 1050 {
		b.Fatalf("eggs = %d", len(n.Eggs))
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
		loadBenchNest(b, dir)
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

// BenchmarkLoadNestVsRaw runs both in one loop and reports the ratio
// (target: LoadNest within 3x of raw parsing, under 300 ms).
func BenchmarkLoadNestVsRaw(b *testing.B) {
	dir, files := benchNest(b)
	var load, raw time.Duration
	for b.Loop() {
		t0 := time.Now()
		loadBenchNest(b, dir)
		t1 := time.Now()
		rawParse(b, files)
		load += t1.Sub(t0)
		raw += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(load.Milliseconds())/n, "loadnest-ms")
	b.ReportMetric(float64(raw.Milliseconds())/n, "rawparse-ms")
	b.ReportMetric(float64(load)/float64(raw), "ratio")
}
