package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"go.temporal.io/api/workflowservice/v1"
)

// BenchmarkMetricsScrape1000Pools runs 1,000 pool workflows (one per egg,
// with nothing to provision) and times one /metrics scrape of the API,
// which reads every pool's published figures with one visibility list per
// 1,000 pools. In the same run it times the per-pool way (a Temporal query
// to each pool, 8 at a time), as the raw baseline, and reports both and
// the Temporal calls each makes.
func BenchmarkMetricsScrape1000Pools(b *testing.B) {
	const pools = 1000
	for b.Loop() {
		s := Start(b, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		eggs := make([]fly.Egg, pools)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := range eggs {
			e := s.Egg(fmt.Sprintf("scrape-%04d", i), fly.RunnerVM)
			e.Apex, e.Nadir = fly.Pool{Max: 2}, fly.Pool{Max: 1}
			eggs[i] = e
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				id := contract.PoolWorkflowID(e.Name)
				if _, err := s.Client.SignalWithStartWorkflow(ctx, id, contract.SignalPoolSpec, e, contract.StartOptions(id), contract.WorkflowPool,
					contract.PoolInput{Egg: e, Cloud: fly.CloudLocal, Tick: time.Hour}); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		a := s.StartAPI("scrape-secret", eggs...)
		// Wait until visibility shows every pool with its figures.
		for {
			resp, err := s.Client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
				Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", contract.WorkflowPool),
			})
			if err == nil && resp.GetCount() >= pools && strings.Count(scrape(b, a.URL), `gosling_pool_promotions_total{`) >= pools {
				break
			}
			if ctx.Err() != nil {
				b.Fatal("the pools never all published their figures")
			}
			time.Sleep(time.Second)
		}

		start := time.Now()
		body := scrape(b, a.URL)
		listScrape := time.Since(start)
		if n := strings.Count(body, `gosling_pool_promotions_total{`); n != pools {
			b.Fatalf("the scrape shows %d pools", n)
		}

		start = time.Now()
		sem = make(chan struct{}, 8)
		for _, e := range eggs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if _, err := s.PoolStatus(ctx, e.Name); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		queryAll := time.Since(start)

		b.ReportMetric(ms(listScrape), "scrape-ms")
		b.ReportMetric(float64((pools+999)/1000), "scrape-temporal-calls")
		b.ReportMetric(ms(queryAll), "query-each-pool-ms")
		b.ReportMetric(pools, "query-each-pool-calls")
		b.ReportMetric(float64(queryAll)/float64(listScrape), "speedup")
		for _, e := range eggs {
			_ = s.Client.TerminateWorkflow(context.Background(), contract.PoolWorkflowID(e.Name), "", "benchmark over")
		}
		cancel()
	}
}

func scrape(b *testing.B, url string) string {
	b.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
