package s3_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/gosling-ci/gosling/internal/rift/s3"
	"github.com/gosling-ci/gosling/internal/rift/space"
	toml "github.com/pelletier/go-toml/v2"
)

type fixture struct {
	url    string
	http   *http.Client
	clock  *space.FakeClock
	spaces map[string]*space.Space
	keys   map[string]s3.Key
}

// newFixture serves two eggs, web and api, each with its bucket and key.
func newFixture(t testing.TB, limits space.Limits) *fixture {
	t.Helper()
	return newFixtureTLS(t, limits, false)
}

// newFixtureTLS serves over HTTPS when useTLS, as Rift does.
func newFixtureTLS(t testing.TB, limits space.Limits, useTLS bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{clock: space.NewFakeClock(time.Now()), spaces: map[string]*space.Space{}, keys: map[string]s3.Key{}}
	var cfg s3.Config
	for _, egg := range []string{"web", "api"} {
		sp := space.New(egg, limits, space.Options{Clock: f.clock})
		f.spaces[egg] = sp
		k := s3.Key{AccessKeyID: "AK" + strings.ToUpper(egg), SecretAccessKey: "secret-of-" + egg, Egg: egg}
		f.keys[egg] = k
		cfg.Buckets = append(cfg.Buckets, s3.Bucket{Name: egg + "-cache", Egg: egg, Dir: filepath.Join(dir, egg), Space: sp})
		cfg.Keys = append(cfg.Keys, k)
	}
	cfg.Now = f.clock.Now
	srv, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	if useTLS {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	f.url, f.http = hs.URL, hs.Client()
	return f
}

// client is the AWS SDK's S3 client for an egg's key, path-style against
// Rift, as gitlab-runner configures it for an S3-compatible server.
func (f *fixture) client(egg string) *awss3.Client {
	k := f.keys[egg]
	return awss3.New(awss3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(f.url),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           1,
	})
}

func (f *fixture) presign(egg string) *awss3.PresignClient {
	return awss3.NewPresignClient(f.client(egg), awss3.WithPresignExpires(10*time.Minute))
}

func do(t *testing.T, method, url string, hdr http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if !strings.EqualFold(k, "host") {
			req.Header[k] = v
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestPresignedPutGetHead(t *testing.T) {
	f := newFixture(t, space.Limits{MaxBytes: 1 << 30})
	ctx := context.Background()
	pc := f.presign("web")
	body := bytes.Repeat([]byte("cache archive "), 10000)

	put, err := pc.PresignPutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("project/1/main-1/cache.zip")})
	if err != nil {
		t.Fatal(err)
	}
	resp, msg := do(t, put.Method, put.URL, put.SignedHeader, body)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %s %s", resp.Status, msg)
	}
	sum := md5.Sum(body)
	if etag := resp.Header.Get("ETag"); etag != `"`+hex.EncodeToString(sum[:])+`"` {
		t.Errorf("PUT ETag = %s", etag)
	}

	get, err := pc.PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("project/1/main-1/cache.zip")})
	if err != nil {
		t.Fatal(err)
	}
	resp, got := do(t, get.Method, get.URL, get.SignedHeader, nil)
	if resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("GET: %s, %d bytes", resp.Status, len(got))
	}
	if resp.ContentLength != int64(len(body)) || resp.Header.Get("ETag") == "" {
		t.Errorf("GET headers: %v", resp.Header)
	}

	head, err := pc.PresignHeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("project/1/main-1/cache.zip")})
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = do(t, head.Method, head.URL, head.SignedHeader, nil)
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(body)) {
		t.Fatalf("HEAD: %s, length %d", resp.Status, resp.ContentLength)
	}

	missing, _ := pc.PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("project/1/other/cache.zip")})
	resp, msg = do(t, missing.Method, missing.URL, missing.SignedHeader, nil)
	if resp.StatusCode != 404 || !bytes.Contains(msg, []byte("NoSuchKey")) {
		t.Fatalf("GET missing: %s %s", resp.Status, msg)
	}
}

func TestPresignedRefusals(t *testing.T) {
	f := newFixture(t, space.Limits{})
	ctx := context.Background()
	pc := f.presign("web")
	get, err := pc.PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}

	// A changed signature.
	bad := strings.Replace(get.URL, "X-Amz-Signature=", "X-Amz-Signature=0", 1)
	bad = bad[:len(bad)-1]
	resp, msg := do(t, "GET", bad, get.SignedHeader, nil)
	if resp.StatusCode != 403 || !bytes.Contains(msg, []byte("SignatureDoesNotMatch")) {
		t.Errorf("wrong signature: %s %s", resp.Status, msg)
	}
	// Another key of the URL than the one signed.
	resp, msg = do(t, "GET", strings.Replace(get.URL, "/web-cache/k?", "/web-cache/k2?", 1), get.SignedHeader, nil)
	if resp.StatusCode != 403 || !bytes.Contains(msg, []byte("SignatureDoesNotMatch")) {
		t.Errorf("changed key: %s %s", resp.Status, msg)
	}
	// A wrong secret.
	forged := awss3.NewPresignClient(awss3.New(awss3.Options{Region: "us-east-1", BaseEndpoint: aws.String(f.url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKWEB", "not-the-secret", "")}))
	fg, _ := forged.PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("k")})
	resp, msg = do(t, "GET", fg.URL, fg.SignedHeader, nil)
	if resp.StatusCode != 403 || !bytes.Contains(msg, []byte("SignatureDoesNotMatch")) {
		t.Errorf("wrong secret: %s %s", resp.Status, msg)
	}
	// An unknown access key.
	unknown := awss3.NewPresignClient(awss3.New(awss3.Options{Region: "us-east-1", BaseEndpoint: aws.String(f.url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKNOBODY", "x", "")}))
	ug, _ := unknown.PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("k")})
	resp, msg = do(t, "GET", ug.URL, ug.SignedHeader, nil)
	if resp.StatusCode != 403 || !bytes.Contains(msg, []byte("InvalidAccessKeyId")) {
		t.Errorf("unknown key: %s %s", resp.Status, msg)
	}
	// Egg web's key on egg api's bucket, and on a bucket nobody has.
	for _, bucket := range []string{"api-cache", "nobody-cache"} {
		wb, _ := pc.PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")})
		resp, msg = do(t, "GET", wb.URL, wb.SignedHeader, nil)
		if resp.StatusCode != 403 || !bytes.Contains(msg, []byte("AccessDenied")) {
			t.Errorf("web's key on %s: %s %s", bucket, resp.Status, msg)
		}
	}
	// No signature at all.
	resp, _ = do(t, "GET", f.url+"/web-cache/k", nil, nil)
	if resp.StatusCode != 403 {
		t.Errorf("anonymous: %s", resp.Status)
	}
	// Expired: ten minutes and a second later.
	f.clock.Advance(10*time.Minute + time.Second)
	resp, msg = do(t, "GET", get.URL, get.SignedHeader, nil)
	if resp.StatusCode != 403 || !bytes.Contains(msg, []byte("Request has expired")) {
		t.Errorf("expired: %s %s", resp.Status, msg)
	}
}

func TestHeaderSignedClient(t *testing.T) {
	f := newFixture(t, space.Limits{})
	ctx := context.Background()
	c := f.client("api")
	body := []byte("hello from the SDK")
	if _, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("api-cache"), Key: aws.String("a/b c+d.txt"), Body: bytes.NewReader(body), ContentType: aws.String("text/plain")}); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("api-cache"), Key: aws.String("a/b c+d.txt")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, body) || aws.ToString(out.ContentType) != "text/plain" {
		t.Errorf("GetObject = %q (%s)", got, aws.ToString(out.ContentType))
	}
	if _, err := c.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String("api-cache")}); err != nil {
		t.Errorf("HeadBucket: %v", err)
	}
	_, err = c.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("a/b c+d.txt")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
		t.Errorf("api's key on web's bucket: %v", err)
	}
	if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String("api-cache"), Key: aws.String("a/b c+d.txt")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("api-cache"), Key: aws.String("a/b c+d.txt")})
	if err == nil {
		t.Error("HeadObject after DeleteObject succeeded")
	}
	if f.spaces["api"].Bytes("") != 0 {
		t.Errorf("books hold %d bytes after delete", f.spaces["api"].Bytes(""))
	}
}

func TestSettingsTOML(t *testing.T) {
	var cfg struct {
		Runners struct {
			Cache struct {
				Type   string `toml:"Type"`
				Shared bool   `toml:"Shared"`
				S3     struct {
					ServerAddress, AuthenticationType, AccessKey, SecretKey, BucketName, BucketLocation string
					PathStyle, Insecure                                                                 bool
				} `toml:"s3"`
			} `toml:"cache"`
		} `toml:"runners"`
	}
	s := s3.Settings{ServerAddress: "rift.example.com:9000", AccessKey: "GRABC", SecretKey: `se"cret`, BucketName: "web-app", Insecure: true}
	if err := toml.Unmarshal([]byte(s.TOML()), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, s.TOML())
	}
	c := cfg.Runners.Cache
	if c.Type != "s3" || !c.Shared || c.S3.ServerAddress != "rift.example.com:9000" || c.S3.AuthenticationType != "access-key" ||
		c.S3.SecretKey != `se"cret` || c.S3.BucketName != "web-app" || c.S3.BucketLocation != "us-east-1" || !c.S3.PathStyle || !c.S3.Insecure {
		t.Errorf("parsed = %+v", c)
	}
}

// TestDefaultSDKClient uses the AWS SDK's client with the checksums
// config.LoadDefaultConfig turns on (when_supported): over HTTPS, PutObject
// sends an aws-chunked body with a trailing CRC32.
func TestDefaultSDKClient(t *testing.T) {
	f := newFixtureTLS(t, space.Limits{}, true)
	ctx := context.Background()
	k := f.keys["web"]
	c := awss3.New(awss3.Options{Region: "us-east-1", BaseEndpoint: aws.String(f.url), UsePathStyle: true, RetryMaxAttempts: 1, HTTPClient: f.http,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported, ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
		Credentials: credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, "")})
	body := bytes.Repeat([]byte("0123456789"), 100000)
	if _, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("chunked"), Body: io.MultiReader(bytes.NewReader(body)), ContentLength: aws.Int64(int64(len(body)))}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("seekable"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"chunked", "seekable"} {
		out, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("web-cache"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(got, body) {
			t.Errorf("%s: got %d bytes back", key, len(got))
		}
	}
}

// TestChunkedTrailerMismatch sends an aws-chunked body whose CRC32 trailer
// does not match, signed with the SDK's signer.
func TestChunkedTrailerMismatch(t *testing.T) {
	f := newFixture(t, space.Limits{})
	k := f.keys["web"]
	for _, c := range []struct {
		name, body string
		want       int
		code       string
	}{
		{"good", "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n", 200, ""},
		{"bad checksum", "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", 400, "BadDigest"},
		{"truncated", "5\r\nhel", 400, "IncompleteBody"},
	} {
		req, _ := http.NewRequest(http.MethodPut, f.url+"/web-cache/trailer", strings.NewReader(c.body))
		req.Header.Set("Content-Encoding", "aws-chunked")
		req.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
		req.Header.Set("X-Amz-Decoded-Content-Length", "5")
		req.Header.Set("X-Amz-Content-Sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey},
			req, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "s3", "us-east-1", f.clock.Now(), func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || !bytes.Contains(msg, []byte(c.code)) {
			t.Errorf("%s: %s %s", c.name, resp.Status, msg)
		}
	}
}
