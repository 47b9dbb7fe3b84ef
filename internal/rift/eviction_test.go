package rift_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/gosling-ci/gosling/internal/rift"
	"github.com/gosling-ci/gosling/internal/rift/riftapi"
)

// gitlabRunnerLike presigns as gitlab-runner does and sends the request.
type presigner struct {
	t  *testing.T
	pc *awss3.PresignClient
	hc *http.Client
}

func newPresigner(t *testing.T, h *harness, cfg *riftapi.RunnerConfig) *presigner {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.pool}}}
	c := awss3.New(awss3.Options{Region: cfg.Cache.BucketLocation, BaseEndpoint: aws.String("https://" + cfg.Cache.ServerAddress), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(cfg.Cache.AccessKey, cfg.Cache.SecretKey, "")})
	return &presigner{t: t, pc: awss3.NewPresignClient(c, awss3.WithPresignExpires(time.Hour)), hc: hc}
}

func (p *presigner) put(bucket, key string, body []byte) {
	p.t.Helper()
	r, err := p.pc.PresignPutObject(context.Background(), &awss3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		p.t.Fatal(err)
	}
	req, _ := http.NewRequest(r.Method, r.URL, bytes.NewReader(body))
	resp, err := p.hc.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		p.t.Fatalf("PUT %s: %s", key, resp.Status)
	}
}

func (p *presigner) get(bucket, key string) int {
	p.t.Helper()
	r, err := p.pc.PresignGetObject(context.Background(), &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		p.t.Fatal(err)
	}
	resp, err := p.hc.Get(r.URL)
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestEvictionBySizeAndAgeWithMetrics(t *testing.T) {
	eggs := []rift.EggConfig{{Name: "web", Bucket: "web-cache", Engine: "docker", CacheBytes: 2*MiB + MiB/2, MaxAge: 24 * time.Hour, AccessKey: "AKWEB", SecretKey: "web-secret"}}
	dir := t.TempDir()
	h := start(t, dir, options{eggs: eggs})
	cfg, err := h.client(webToken).Config(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	p := newPresigner(t, h, cfg)
	mib := bytes.Repeat([]byte("x"), MiB)

	p.put("web-cache", "a", mib)
	h.clock.Advance(time.Minute)
	p.put("web-cache", "b", mib)
	h.clock.Advance(time.Minute)
	if code := p.get("web-cache", "a"); code != 200 { // a is now used after b
		t.Fatalf("GET a: %d", code)
	}
	h.clock.Advance(time.Minute)
	p.put("web-cache", "c", mib) // 3 MiB > 2.5 MiB: the least recently used (b) goes
	if code := p.get("web-cache", "b"); code != 404 {
		t.Errorf("GET b after eviction: %d", code)
	}
	for _, k := range []string{"a", "c"} {
		if code := p.get("web-cache", k); code != 200 {
			t.Errorf("GET %s: %d", k, code)
		}
	}
	labels := map[string]string{"egg": "web", "store": "cache"}
	if v := metricValue(h, "gosling_rift_cache_bytes", labels); v != 2*MiB {
		t.Errorf("gosling_rift_cache_bytes = %v; want %d", v, 2*MiB)
	}
	if v := metricValue(h, "gosling_rift_cache_evictions_total", map[string]string{"egg": "web", "store": "cache", "reason": "size"}); v != 1 {
		t.Errorf("size evictions = %v; want 1", v)
	}
	if hits, misses := counter(h, "hits", "web", "cache"), counter(h, "misses", "web", "cache"); hits != 3 || misses != 1 {
		t.Errorf("hits %v, misses %v; want 3 and 1", hits, misses)
	}

	// Past max_age with no use, a and c go at the next sweep.
	h.clock.Advance(25 * time.Hour)
	sp, _ := h.srv.Space("web")
	if n := sp.Sweep(context.Background()); n != 2 {
		t.Errorf("sweep evicted %d entries; want 2", n)
	}
	if v := metricValue(h, "gosling_rift_cache_evictions_total", map[string]string{"egg": "web", "store": "cache", "reason": "age"}); v != 2 {
		t.Errorf("age evictions = %v; want 2", v)
	}
	if v := metricValue(h, "gosling_rift_cache_bytes", labels); v != 0 {
		t.Errorf("gosling_rift_cache_bytes = %v after the age sweep", v)
	}
	// (The URLs presigned above have expired by now: the clock moved a day.)
}

func TestRestartKeepsObjects(t *testing.T) {
	dir := t.TempDir()
	eggs := func() []rift.EggConfig {
		return []rift.EggConfig{{Name: "web", Bucket: "web-cache", Engine: "docker", CacheBytes: 1 << 30, MaxAge: time.Hour, AccessKey: "AKWEB", SecretKey: "web-secret"}}
	}
	{
		h := start(t, dir, options{eggs: eggs()})
		cfg, err := h.client(webToken).Config(context.Background(), "web")
		if err != nil {
			t.Fatal(err)
		}
		newPresigner(t, h, cfg).put("web-cache", "kept", []byte("survives a restart"))
		h.stop()
	}
	h := start(t, dir, options{eggs: eggs()})
	if v := metricValue(h, "gosling_rift_cache_bytes", map[string]string{"egg": "web", "store": "cache"}); v != float64(len("survives a restart")) {
		t.Errorf("after a restart gosling_rift_cache_bytes = %v", v)
	}
	cfg, _ := h.client(webToken).Config(context.Background(), "web")
	if code := newPresigner(t, h, cfg).get("web-cache", "kept"); code != 200 {
		t.Errorf("GET after restart: %d", code)
	}
}
