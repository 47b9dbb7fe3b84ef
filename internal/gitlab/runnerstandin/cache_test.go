package runnerstandin_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	rifts3 "github.com/gosling-ci/gosling/internal/rift/s3"
	"github.com/gosling-ci/gosling/internal/rift/space"
)

// cacheYAML writes a file under a cache path in one job and reads it back
// in the next (policy pull) on the runner tagged reader, with a second
// cache that the first job would push only if it failed.
const cacheYAML = `
stages: [build, test]
write:
  stage: build
  cache:
    - key: deps
      paths: [vendor/]
    - key: failures
      paths: [vendor/]
      when: on_failure
  script:
    - mkdir -p vendor/sub
    - echo "built by job $CI_JOB_ID" > vendor/sub/lib.txt
read:
  stage: test
  tags: [reader]
  cache:
    key: deps
    paths: [vendor/]
    policy: pull
  script:
    - cat vendor/sub/lib.txt
`

const (
	cacheAccessKey = "GRTESTACCESSKEY00001"
	cacheSecretKey = "cache-secret-key-never-logged"
)

// Two runners of one project share a cache through an S3 bucket (Rift's
// S3 server): the first runner's job saves it, the second runner's job
// restores it. Shared = true puts the object at <Path>/project/<id>/<key>.
func TestCacheSharedBetweenRunnersThroughS3(t *testing.T) {
	f := newFixture(t)
	second := f.gl.AddRunner(gitlabtest.Runner{ProjectID: f.project.ID, Tags: []string{"reader"}, Description: "gosling/web/2"})

	sp := space.New("web", space.Limits{MaxBytes: 1 << 30}, space.Options{})
	srv, err := rifts3.New(rifts3.Config{
		Buckets: []rifts3.Bucket{{Name: "web-cache", Egg: "web", Dir: filepath.Join(f.dir, "bucket"), Space: sp}},
		Keys:    []rifts3.Key{{AccessKeyID: cacheAccessKey, SecretAccessKey: cacheSecretKey, Egg: "web"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s3srv := httptest.NewServer(srv)
	t.Cleanup(s3srv.Close)
	addr := strings.TrimPrefix(s3srv.URL, "http://")

	cfg, err := gitlabtest.ParseCIConfig([]byte(cacheYAML))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := f.gl.CreatePipeline(f.project.ID, gitlabtest.PipelineSpec{Stages: cfg.Stages, Jobs: cfg.Jobs})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	run := func(r gitlabtest.Runner, until func() bool) {
		t.Helper()
		rs := rifts3.Settings{ServerAddress: addr, AccessKey: cacheAccessKey, SecretKey: cacheSecretKey, BucketName: "web-cache", Insecure: true}
		dir := filepath.Join(f.dir, fmt.Sprint(r.ID))
		conf := fmt.Sprintf("concurrent = 1\ncheck_interval = 1\n\n[[runners]]\n  name = \"r%d\"\n  url = %q\n  token = %q\n  executor = \"shell\"\n  builds_dir = %q\n    Path = \"ci\"\n%s",
			r.ID, f.gl.URL(), r.Token, filepath.Join(dir, "builds"), rs.TOML())
		// Path belongs in [runners.cache], right after its Type line.
		conf = strings.Replace(conf, "    Path = \"ci\"\n", "", 1)
		conf = strings.Replace(conf, "    Shared = true\n", "    Shared = true\n    Path = \"ci\"\n", 1)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := runnerstandin.NewMulti(runnerstandin.Options{ConfigFile: path, Logger: slogTo(&logs), WorkingDirectory: dir})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- m.Run(context.Background()) }()
		waitFor(t, "the runner's job", until)
		m.GracefulStop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	finished := func(name string) func() bool {
		return func() bool {
			j := jobByName(t, f.gl, pl.ID, name)
			return j.Status == "success" || j.Status == "failed"
		}
	}
	run(f.runner, finished("write"))
	run(second, finished("read"))

	write, read := jobByName(t, f.gl, pl.ID, "write"), jobByName(t, f.gl, pl.ID, "read")
	if write.RunnerID != f.runner.ID || read.RunnerID != second.ID {
		t.Fatalf("write ran on %d, read on %d: want runners %d and %d", write.RunnerID, read.RunnerID, f.runner.ID, second.ID)
	}
	wt, rt := string(f.gl.Trace(write.ID)), string(f.gl.Trace(read.ID))
	if write.Status != "success" || read.Status != "success" {
		t.Fatalf("write %s, read %s\nwrite log:\n%s\nread log:\n%s", write.Status, read.Status, wt, rt)
	}
	for _, want := range []string{
		"Restoring cache", "Checking cache for deps-protected...", "Failed to extract cache",
		"Saving cache for successful job", "Creating cache deps-protected...", "vendor/: found 3 matching artifact files and directories",
		fmt.Sprintf("Uploading cache.zip to %s/web-cache/ci/project/%d/deps-protected", s3srv.URL, f.project.ID), "Created cache",
	} {
		if !strings.Contains(wt, want) {
			t.Errorf("write log lacks %q:\n%s", want, wt)
		}
	}
	if strings.Contains(wt, "Creating cache failures") {
		t.Errorf("the on_failure cache was saved by a successful job:\n%s", wt)
	}
	for _, want := range []string{"Checking cache for deps-protected...", "Successfully extracted cache", fmt.Sprintf("built by job %d", write.ID)} {
		if !strings.Contains(rt, want) {
			t.Errorf("read log lacks %q:\n%s", want, rt)
		}
	}
	if !strings.Contains(rt, "Not uploading cache deps-protected due to policy") || strings.Contains(rt, "Uploading") {
		t.Errorf("a pull-only cache was uploaded:\n%s", rt)
	}
	for _, text := range []string{wt, rt, logs.String()} {
		if strings.Contains(text, cacheSecretKey) || strings.Contains(text, "X-Amz-Signature") {
			t.Errorf("a credential leaked:\n%s", text)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.Contains(line, runnerstandin.Banner) {
			t.Errorf("log line without the stand-in label: %s", line)
		}
	}

	// The object is where gitlab-runner puts a shared cache, as a zip.
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(s3srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(cacheAccessKey, cacheSecretKey, "")})
	key := fmt.Sprintf("ci/project/%d/deps-protected", f.project.ID)
	out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("web-cache"), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	head := make([]byte, 4)
	_, _ = out.Body.Read(head)
	out.Body.Close()
	if string(head) != "PK\x03\x04" {
		t.Errorf("object %s is not a zip archive: %q", key, head)
	}
}
