package runnerstandin

import (
	"fmt"
	"testing"
)

// Object paths follow gitlab-runner: <Path>/runner/<short token>/project/
// <id>/<key>, without the runner part when Shared; the local cache uses
// the project's path under cache_dir.
func TestCacheObjectPrefix(t *testing.T) {
	m := &Multi{workDir: "/work"}
	job := &jobResponse{Variables: []jobVariable{{Key: "CI_PROJECT_PATH", Value: "acme/web"}}}
	job.JobInfo.ProjectID = 42
	s3 := func(shared bool, path string) *CacheConfig {
		return &CacheConfig{Type: "s3", Shared: shared, Path: path, S3: &CacheS3Config{ServerAddress: "rift:9000", AccessKey: "a", SecretKey: "s", BucketName: "b"}}
	}
	rc := RunnerConfig{Token: "glrt-abcdefghijklmnop"}
	for _, tc := range []struct {
		cache *CacheConfig
		want  string
	}{
		{s3(false, ""), "runner/abcdefghi/project/42"},
		{s3(true, ""), "project/42"},
		{s3(true, "/ci/"), "ci/project/42"},
		{s3(false, "ci"), "ci/runner/abcdefghi/project/42"},
		{nil, "acme/web"},
	} {
		rc.Cache = tc.cache
		jc, err := m.newJobCaches(rc, job)
		if err != nil || jc.prefix != tc.want {
			t.Errorf("%+v: prefix %q, %v; want %q", tc.cache, jc.prefix, err, tc.want)
		}
	}
	rc.Cache = &CacheConfig{Type: "gcs"}
	if _, err := m.newJobCaches(rc, job); err == nil {
		t.Error("a gcs cache was accepted")
	}
	rc.Cache = &CacheConfig{Type: "s3", S3: &CacheS3Config{BucketName: "b", AuthenticationType: "iam"}}
	if _, err := m.newJobCaches(rc, job); err == nil {
		t.Error("an iam cache was accepted")
	}
}

func TestCachePolicyAndWhen(t *testing.T) {
	for _, tc := range []struct {
		c                        jobCache
		pulls, pushes, ok, onErr bool
	}{
		{jobCache{}, true, true, true, false},
		{jobCache{Policy: "pull"}, true, false, true, false},
		{jobCache{Policy: "push", When: "always"}, false, true, true, true},
		{jobCache{When: "on_failure"}, true, true, false, true},
	} {
		got := fmt.Sprint(tc.c.pulls(), tc.c.pushes(), tc.c.savesOn("success"), tc.c.savesOn("failed"))
		if want := fmt.Sprint(tc.pulls, tc.pushes, tc.ok, tc.onErr); got != want {
			t.Errorf("%+v: %s, want %s", tc.c, got, want)
		}
	}
	for _, k := range []string{"", ".", "..", "a/b", `a\b`} {
		if checkKey(k) == nil {
			t.Errorf("key %q accepted", k)
		}
	}
}
