package runnerstandin

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// jobCache is one entry of the job payload's cache array (GitLab's
// Entities::Ci::JobRequest::Cache): the key already carries GitLab's
// -protected or -non_protected suffix.
type jobCache struct {
	Key          string   `json:"key"`
	Untracked    bool     `json:"untracked"`
	Policy       string   `json:"policy"`
	Paths        []string `json:"paths"`
	When         string   `json:"when"`
	FallbackKeys []string `json:"fallback_keys"`
}

// Cache policies and save conditions (docs.gitlab.com/ci/yaml/#cachepolicy
// and #cachewhen).
const (
	policyPull     = "pull"
	policyPush     = "push"
	policyPullPush = "pull-push"
	whenOnSuccess  = "on_success"
	whenOnFailure  = "on_failure"
	whenAlways     = "always"
	// presignExpiry is how long a presigned cache URL is valid; gitlab-runner
	// signs for the job's timeout, at most a few hours.
	presignExpiry = time.Hour
	// cacheArchiveName is the local cache's file name, gitlab-runner's.
	cacheArchiveName = "cache.zip"
)

func (c jobCache) policy() string {
	if c.Policy == "" {
		return policyPullPush
	}
	return c.Policy
}

func (c jobCache) when() string {
	if c.When == "" {
		return whenOnSuccess
	}
	return c.When
}

// pulls and pushes tell what the policy lets the job do.
func (c jobCache) pulls() bool  { return c.policy() != policyPush }
func (c jobCache) pushes() bool { return c.policy() != policyPull }

// savesOn tells whether a job that ended in state saves this cache.
func (c jobCache) savesOn(state string) bool {
	switch c.when() {
	case whenAlways:
		return true
	case whenOnFailure:
		return state != "success"
	default:
		return state == "success"
	}
}

// cacheBackend is where caches live: Rift or any S3 endpoint when
// [runners.cache] says Type = "s3", else the runner's local cache_dir.
type cacheBackend interface {
	// describe is where an object is, for the job log (no credentials).
	describe(object string) string
	// get writes the object to w; errCacheMissing when there is none.
	get(ctx context.Context, object string, w io.Writer) error
	put(ctx context.Context, object string, archive *os.File, size int64) error
}

var errCacheMissing = errors.New("file does not exist")

// s3Cache reaches an S3 bucket through presigned GET and PUT URLs, as
// gitlab-runner does (docs.gitlab.com/runner/configuration
// /advanced-configuration, "The [runners.cache.s3] section"): requests are
// signed with AWS Signature Version 4 by the AWS SDK's presign client with
// the section's AccessKey, SecretKey and SessionToken.
type s3Cache struct {
	bucket  string
	presign *s3.PresignClient
	http    *http.Client
}

// newS3Cache checks [runners.cache.s3] and builds its client. ServerAddress
// is host[:port], reached over HTTPS unless Insecure; BucketLocation
// defaults to us-east-1; path-style URLs are used unless the address is
// AWS's own.
func newS3Cache(c *CacheConfig) (*s3Cache, error) {
	s := c.S3
	switch {
	case s == nil:
		return nil, errors.New(`[runners.cache] Type = "s3" has no [runners.cache.s3] section`)
	case s.BucketName == "":
		return nil, errors.New("[runners.cache.s3] BucketName is missing")
	case s.AuthenticationType != "" && s.AuthenticationType != "access-key":
		return nil, fmt.Errorf(`[runners.cache.s3] AuthenticationType %q is not supported by the stand-in: use "access-key"`, s.AuthenticationType)
	case s.AccessKey == "" || s.SecretKey == "":
		return nil, errors.New("[runners.cache.s3] AccessKey and SecretKey are required by the stand-in")
	}
	addr := s.ServerAddress
	if addr == "" {
		addr = "s3.amazonaws.com"
	}
	scheme := "https"
	if s.Insecure {
		scheme = "http"
	}
	region := s.BucketLocation
	if region == "" {
		region = "us-east-1"
	}
	client := s3.New(s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(scheme + "://" + addr),
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, s.SessionToken),
		UsePathStyle: s.PathStyle || !strings.HasSuffix(strings.Split(addr, ":")[0], "amazonaws.com"),
	})
	return &s3Cache{bucket: s.BucketName, presign: s3.NewPresignClient(client), http: &http.Client{Timeout: 30 * time.Minute}}, nil
}

// withoutQuery drops the signature from a presigned URL, for the log.
func withoutQuery(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(an invalid URL)"
	}
	p.RawQuery = ""
	return p.String()
}

func (c *s3Cache) describe(object string) string {
	req, err := c.presign.PresignGetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(object)}, s3.WithPresignExpires(presignExpiry))
	if err != nil {
		return c.bucket + "/" + object
	}
	return withoutQuery(req.URL)
}

func (c *s3Cache) get(ctx context.Context, object string, w io.Writer) error {
	req, err := c.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(object)}, s3.WithPresignExpires(presignExpiry))
	if err != nil {
		return fmt.Errorf("presign the cache download: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, req.URL, nil)
	if err != nil {
		return err
	}
	hr.Header = req.SignedHeader.Clone()
	resp, err := c.http.Do(hr)
	if err != nil {
		return fmt.Errorf("download the cache from %s: %w", withoutQuery(req.URL), err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return errCacheMissing
	case resp.StatusCode != http.StatusOK:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("download the cache from %s: %s: %s", withoutQuery(req.URL), resp.Status, strings.TrimSpace(string(b)))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("download the cache from %s: %w", withoutQuery(req.URL), err)
	}
	return nil
}

func (c *s3Cache) put(ctx context.Context, object string, archive *os.File, size int64) error {
	req, err := c.presign.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(object)}, s3.WithPresignExpires(presignExpiry))
	if err != nil {
		return fmt.Errorf("presign the cache upload: %w", err)
	}
	if _, err := archive.Seek(0, io.SeekStart); err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, req.URL, archive)
	if err != nil {
		return err
	}
	hr.Header = req.SignedHeader.Clone()
	hr.Header.Set("Content-Type", "application/zip")
	hr.ContentLength = size
	resp, err := c.http.Do(hr)
	if err != nil {
		return fmt.Errorf("upload the cache to %s: %w", withoutQuery(req.URL), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("upload the cache to %s: %s: %s", withoutQuery(req.URL), resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// localCache is gitlab-runner's cache without [runners.cache]: archives
// under cache_dir on this machine, seen only by this machine's runners.
type localCache struct{ dir string }

func (c localCache) file(object string) string {
	return filepath.Join(c.dir, filepath.FromSlash(object), cacheArchiveName)
}

func (c localCache) describe(object string) string { return c.file(object) }

func (c localCache) get(_ context.Context, object string, w io.Writer) error {
	f, err := os.Open(c.file(object))
	if errors.Is(err, fs.ErrNotExist) {
		return errCacheMissing
	}
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func (c localCache) put(_ context.Context, object string, archive *os.File, _ int64) error {
	dst := c.file(object)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if _, err := archive.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".cache-*.zip")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, archive); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// jobCaches is a job's cache entries with where they live.
type jobCaches struct {
	backend cacheBackend
	// prefix is the object path before the key: <Path>/runner/<short
	// token>/project/<id>, without runner/<short token> when Shared.
	prefix string
	// maxUpload bounds an archive (MaxUploadedArchiveSize, 0: no bound).
	maxUpload int64
	entries   []jobCache
}

// newJobCaches chooses the backend for a runner's job: [runners.cache]
// with Type = "s3", or the local cache_dir (default <working
// directory>/cache) when there is no [runners.cache] Type.
func (m *Multi) newJobCaches(rc RunnerConfig, job *jobResponse) (*jobCaches, error) {
	jc := &jobCaches{entries: job.Cache}
	projectPath := fmt.Sprintf("project/%d", job.JobInfo.ProjectID)
	c := rc.Cache
	switch {
	case c == nil || c.Type == "":
		dir := rc.CacheDir
		if dir == "" {
			dir = filepath.Join(m.workDir, "cache")
		} else if !filepath.IsAbs(dir) {
			dir = filepath.Join(m.workDir, dir)
		}
		jc.backend = localCache{dir: dir}
		jc.prefix = projectPath
		if p := projectVariable(job, "CI_PROJECT_PATH"); p != "" && !strings.Contains(p, "..") {
			jc.prefix = p
		}
		return jc, nil
	case c.Type == "s3":
		b, err := newS3Cache(c)
		if err != nil {
			return nil, err
		}
		jc.backend, jc.maxUpload = b, c.MaxUploadedArchiveSize
		jc.prefix = projectPath
		if !c.Shared {
			jc.prefix = path.Join("runner", ShortToken(rc.Token), projectPath)
		}
		jc.prefix = path.Join(strings.Trim(c.Path, "/"), jc.prefix)
		return jc, nil
	default:
		return nil, fmt.Errorf(`[runners.cache] Type = %q is not supported by the stand-in: use "s3"`, c.Type)
	}
}

func projectVariable(job *jobResponse, key string) string {
	for _, v := range job.Variables {
		if v.Key == key {
			return v.Value
		}
	}
	return ""
}

// expand is a value with the job's variables substituted, as
// gitlab-runner expands cache keys and paths.
func expand(s string, env []string) string {
	return os.Expand(s, func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if name, v, ok := strings.Cut(env[i], "="); ok && name == k {
				return v
			}
		}
		return ""
	})
}

// checkKey refuses keys that would leave the cache's prefix.
func checkKey(key string) error {
	if key == "" || key == "." || key == ".." || strings.Contains(key, "/") || strings.Contains(key, `\`) {
		return fmt.Errorf("cache key %q is invalid: it cannot be empty, \".\" or \"..\", nor contain a slash", key)
	}
	return nil
}

// restore is gitlab-runner's "Restoring cache" stage: for each entry whose
// policy pulls, the key, then its fallback keys, then $CACHE_FALLBACK_KEY,
// until one is found and extracted into dir. A missing or broken cache is
// a warning, never a job failure.
func (jc *jobCaches) restore(ctx context.Context, dir string, env []string, trace *jobTrace) {
	if len(jc.entries) == 0 {
		return
	}
	trace.Printf("Restoring cache\n")
	for _, c := range jc.entries {
		key := expand(c.Key, env)
		if !c.pulls() {
			trace.Printf("Not downloading cache %s due to policy\n", key)
			continue
		}
		keys := []string{key}
		for _, k := range c.FallbackKeys {
			keys = append(keys, expand(k, env))
		}
		if k := expand("$CACHE_FALLBACK_KEY", env); k != "" {
			keys = append(keys, k)
		}
		for _, k := range keys {
			trace.Printf("Checking cache for %s...\n", k)
			if err := checkKey(k); err != nil {
				trace.Printf("WARNING: %v\n", err)
				continue
			}
			err := jc.extract(ctx, path.Join(jc.prefix, k), dir, trace)
			if err == nil {
				trace.Printf("Successfully extracted cache\n")
				break
			}
			trace.Printf("WARNING: %v\nFailed to extract cache\n", err)
		}
	}
}

func (jc *jobCaches) extract(ctx context.Context, object, dir string, trace *jobTrace) error {
	tmp, err := os.CreateTemp("", "gitlab-runner-standin-cache-*.zip")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	trace.Printf("Downloading %s from %s\n", cacheArchiveName, jc.backend.describe(object))
	if err := jc.backend.get(ctx, object, tmp); err != nil {
		return err
	}
	st, err := tmp.Stat()
	if err != nil {
		return err
	}
	zr, err := zip.NewReader(tmp, st.Size())
	if err != nil {
		return fmt.Errorf("read the cache archive: %w", err)
	}
	return unzipInto(zr, dir)
}

// unzipInto writes an archive's files under dir, refusing entries that
// would land outside it.
func unzipInto(zr *zip.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, f := range zr.File {
		name := path.Clean(f.Name)
		if !filepath.IsLocal(filepath.FromSlash(name)) {
			return fmt.Errorf("the cache archive holds %q, outside the project directory", f.Name)
		}
		if f.FileInfo().IsDir() {
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			continue
		}
		if !f.Mode().IsRegular() {
			continue
		}
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if err := writeZipEntry(root, name, f); err != nil {
			return err
		}
	}
	return nil
}

func writeZipEntry(root *os.Root, name string, f *zip.File) error {
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	w, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, f.Mode().Perm()|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, rc); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return root.Chtimes(name, f.Modified, f.Modified)
}

// save is gitlab-runner's "Saving cache" stage, after after_script: each
// entry whose policy pushes and whose when matches the job's state is
// archived (its paths, and with untracked every file, as the stand-in
// fetches no Git repository) and uploaded under its key. Failures are
// warnings: a job never fails for its cache.
func (jc *jobCaches) save(ctx context.Context, dir string, env []string, state string, trace *jobTrace) {
	header := false
	for _, c := range jc.entries {
		key := expand(c.Key, env)
		if !c.savesOn(state) {
			continue
		}
		if !header {
			if state == "success" {
				trace.Printf("Saving cache for successful job\n")
			} else {
				trace.Printf("Saving cache for failed job\n")
			}
			header = true
		}
		if !c.pushes() {
			trace.Printf("Not uploading cache %s due to policy\n", key)
			continue
		}
		trace.Printf("Creating cache %s...\n", key)
		if err := checkKey(key); err != nil {
			trace.Printf("WARNING: %v\nFailed to create cache\n", err)
			continue
		}
		if err := jc.archiveAndUpload(ctx, c, key, dir, env, trace); err != nil {
			trace.Printf("WARNING: %v\nFailed to create cache\n", err)
			continue
		}
		trace.Printf("Created cache\n")
	}
}

func (jc *jobCaches) archiveAndUpload(ctx context.Context, c jobCache, key, dir string, env []string, trace *jobTrace) error {
	files, err := cacheFiles(c, dir, env, trace)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return errors.New("no matching files. Ensure that the cache paths are relative to the project directory")
	}
	tmp, err := os.CreateTemp("", "gitlab-runner-standin-cache-*.zip")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := writeZip(tmp, dir, files); err != nil {
		return fmt.Errorf("archive the cache: %w", err)
	}
	st, err := tmp.Stat()
	if err != nil {
		return err
	}
	if jc.maxUpload > 0 && st.Size() > jc.maxUpload {
		return fmt.Errorf("cache archive size (%d bytes) exceeds MaxUploadedArchiveSize (%d bytes)", st.Size(), jc.maxUpload)
	}
	object := path.Join(jc.prefix, key)
	trace.Printf("Uploading %s to %s\n", cacheArchiveName, jc.backend.describe(object))
	return jc.backend.put(ctx, object, tmp, st.Size())
}

// cacheFiles lists, relative to dir and sorted, the files and directories
// an entry's paths match (globs, each directory with all it holds), or
// every file under dir when untracked. A path outside dir is an error.
func cacheFiles(c jobCache, dir string, env []string, trace *jobTrace) ([]string, error) {
	set := map[string]bool{}
	add := func(root string) error {
		return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil || rel == "." {
				return err
			}
			if d.Type().IsRegular() || d.IsDir() {
				set[filepath.ToSlash(rel)] = true
			}
			return nil
		})
	}
	for _, raw := range c.Paths {
		p := expand(raw, env)
		clean := filepath.Clean(filepath.FromSlash(p))
		if filepath.IsAbs(clean) || !filepath.IsLocal(clean) {
			return nil, fmt.Errorf("cache path %q is not a subpath of the project directory", p)
		}
		matches, err := filepath.Glob(filepath.Join(dir, clean))
		if err != nil {
			return nil, fmt.Errorf("cache path %q: %w", p, err)
		}
		before := len(set)
		for _, m := range matches {
			if err := add(m); err != nil {
				return nil, err
			}
		}
		trace.Printf("%s: found %d matching artifact files and directories\n", p, len(set)-before)
	}
	if c.Untracked {
		before := len(set)
		if err := add(dir); err != nil {
			return nil, err
		}
		trace.Printf("untracked: found %d files\n", len(set)-before)
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

// writeZip archives files (relative to dir, slash-separated) into w.
func writeZip(w io.Writer, dir string, files []string) error {
	zw := zip.NewWriter(w)
	for _, rel := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		h, err := zip.FileInfoHeader(fi)
		if err != nil {
			return err
		}
		h.Name = rel
		if fi.IsDir() {
			h.Name += "/"
			if _, err := zw.CreateHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Method = zip.Deflate
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(fw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return zw.Close()
}

// cacheSummary describes a runner's cache for the startup log, without
// credentials.
func cacheSummary(rc RunnerConfig) []any {
	c := rc.Cache
	attrs := []any{"runner", ShortToken(rc.Token)}
	if c == nil || c.Type == "" {
		return append(attrs, "type", "local", "cache_dir", rc.CacheDir)
	}
	attrs = append(attrs, "type", c.Type, "shared", c.Shared, "path", c.Path)
	if c.S3 != nil {
		attrs = append(attrs, "server", c.S3.ServerAddress, "bucket", c.S3.BucketName, "insecure", c.S3.Insecure, "max_uploaded_archive_size", strconv.FormatInt(c.MaxUploadedArchiveSize, 10))
	}
	return attrs
}
