package rift_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/gosling-ci/gosling/internal/rift"
	"github.com/gosling-ci/gosling/internal/rift/mirror"
	"github.com/gosling-ci/gosling/internal/rift/mirror/mirrortest"
	"github.com/gosling-ci/gosling/internal/rift/riftapi"
	"github.com/gosling-ci/gosling/internal/rift/space"
)

const (
	webToken  = "glrt-web-runner-token"
	apiToken  = "glrt-api-runner-token"
	goneToken = "glrt-destroyed-runner-token"
	MiB       = 1 << 20
)

type harness struct {
	srv     *rift.Server
	auth    *rift.StaticAuthenticator
	clock   *space.FakeClock
	control string // https://127.0.0.1:port
	s3URL   string
	pool    *x509.CertPool
	up      *mirrortest.Upstream
	engine  string // host:port
	mirror  string // https://host:port
	stop    func()
}

type options struct {
	eggs    []rift.EggConfig
	engines map[string]string
	mirror  bool
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// start runs a Rift on loopback ports with two eggs: web (with a mirror of
// a test upstream when o.mirror) and api. Runner tokens: web-1 of web,
// api-1 of api, and web-2 of web, which is destroyed.
func start(t *testing.T, dir string, o options) *harness {
	t.Helper()
	h := &harness{clock: space.NewFakeClock(time.Now())}
	if o.eggs == nil {
		o.eggs = []rift.EggConfig{
			{Name: "web", Bucket: "web-cache", Engine: "docker", CacheBytes: 1 << 30, MaxAge: 7 * 24 * time.Hour, AccessKey: "AKWEB", SecretKey: "web-secret"},
			{Name: "api", Bucket: "api-cache", Engine: "podman", CacheBytes: 1 << 30, MaxAge: 7 * 24 * time.Hour, AccessKey: "AKAPI", SecretKey: "api-secret"},
		}
	}
	if o.mirror {
		h.up = mirrortest.Start(t, "", "")
		o.eggs[0].Mirror = &mirror.Upstream{URL: h.up.URL}
	}
	h.auth = rift.NewStaticAuthenticator(map[string]rift.Runner{
		webToken:  {ID: "web-1", Egg: "web"},
		apiToken:  {ID: "api-1", Egg: "api"},
		goneToken: {ID: "web-2", Egg: "web"},
	})
	h.auth.Revoke("web-2")
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := rift.New(ctx, rift.Config{Dir: dir, Eggs: o.eggs, Auth: h.auth, Engines: o.engines,
		Hosts: []string{"127.0.0.1"}, Clock: h.clock, SweepInterval: time.Hour})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h.srv = srv
	l := rift.Listeners{Control: listen(t), S3: listen(t), Engine: listen(t), Mirror: listen(t)}
	h.control = "https://" + l.Control.Addr().String()
	h.s3URL = "https://" + l.S3.Addr().String()
	h.engine = l.Engine.Addr().String()
	h.mirror = "https://" + l.Mirror.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	h.pool = srv.CA().Pool()
	return h
}

func (h *harness) client(token string) *riftapi.Client {
	return riftapi.NewClient(h.control, token, h.pool)
}

// mtlsClient is an HTTP client with a runner's certificate.
func mtlsClient(t *testing.T, cr *riftapi.Credentials) *http.Client {
	t.Helper()
	tc, err := cr.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: time.Minute}
}

func TestHealthAndCA(t *testing.T) {
	h := start(t, t.TempDir(), options{})
	ctx := context.Background()
	if err := h.client("").Check(ctx); err != nil {
		t.Fatal(err)
	}
	// Without Rift's CA the control listener's certificate is not trusted.
	if err := riftapi.Check(ctx, h.control); err == nil {
		t.Error("Check trusted a certificate of Rift's own CA through the system's roots")
	}
	if err := riftapi.Check(ctx, "https://127.0.0.1:1"); err == nil {
		t.Error("Check passed with nothing listening")
	}
}

func TestAuthorisationAcrossEggs(t *testing.T) {
	h := start(t, t.TempDir(), options{})
	ctx := context.Background()

	web, err := h.client(webToken).Config(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if web.Cache == nil || web.Cache.BucketName != "web-cache" || web.Cache.AccessKey != "AKWEB" || web.RunnerID != "web-1" {
		t.Fatalf("web's config = %+v (cache %+v)", web, web.Cache)
	}
	// Egg web's runner asks for egg api's config: 403.
	if _, err := h.client(webToken).Config(ctx, "api"); !errors.Is(err, riftapi.ErrForbidden) {
		t.Errorf("web's token on api's config: %v", err)
	}
	// An unknown token and a destroyed runner's token: 401.
	for _, tok := range []string{"glrt-nobody", goneToken, ""} {
		if _, err := h.client(tok).Config(ctx, "web"); !errors.Is(err, riftapi.ErrUnauthorized) {
			t.Errorf("token %q: %v", tok, err)
		}
		if _, err := h.client(tok).Certificate(ctx); !errors.Is(err, riftapi.ErrUnauthorized) {
			t.Errorf("certificate for token %q: %v", tok, err)
		}
	}

	// Egg web's cache credentials open web's bucket and not api's: 403.
	s3c := awss3.New(awss3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(h.s3URL), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(web.Cache.AccessKey, web.Cache.SecretKey, ""),
		HTTPClient:                 &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.pool}}},
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		RetryMaxAttempts:           1,
	})
	if _, err := s3c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("k"), Body: strings.NewReader("v")}); err != nil {
		t.Fatalf("web's key on web's bucket: %v", err)
	}
	pc := awss3.NewPresignClient(s3c)
	for _, method := range []string{"GET", "PUT"} {
		var req string
		var hdr http.Header
		if method == "GET" {
			p, _ := pc.PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("api-cache"), Key: aws.String("k")})
			req, hdr = p.URL, p.SignedHeader
		} else {
			p, _ := pc.PresignPutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("api-cache"), Key: aws.String("k")})
			req, hdr = p.URL, p.SignedHeader
		}
		r, _ := http.NewRequest(method, req, strings.NewReader("x"))
		for k, v := range hdr {
			if k != "Host" {
				r.Header[k] = v
			}
		}
		resp, err := s3c.Options().HTTPClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("AccessDenied")) {
			t.Errorf("web's presigned %s on api's bucket: %s %s", method, resp.Status, body)
		}
	}
}

// unixHTTP serves h on a unix socket, as a container engine's API does.
func unixHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "engine.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return sock
}

// fakeEngine is a stand-in for a container engine's API: /_ping, and an
// attach endpoint that upgrades the connection (101, Upgrade: tcp) as
// Docker's does and echoes its input upper-cased until the client closes
// its sending half.
func fakeEngine(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		io.WriteString(w, "OK "+name)
	})
	mux.HandleFunc("POST /containers/{id}/attach", func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		buf.Flush()
		in, _ := io.ReadAll(buf)
		conn.Write(bytes.ToUpper(in))
	})
	return mux
}

func TestEngineProxyMutualTLS(t *testing.T) {
	dockerSock := unixHTTP(t, fakeEngine("docker"))
	h := start(t, t.TempDir(), options{engines: map[string]string{"docker": dockerSock}})
	ctx := context.Background()

	cr, err := h.client(webToken).Certificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Egg != "web" || cr.RunnerID != "web-1" || cr.ExpiresAt.Sub(h.clock.Now()) != rift.DefaultCertLifetime {
		t.Errorf("credentials = %s/%s until %s", cr.Egg, cr.RunnerID, cr.ExpiresAt)
	}
	cfg, err := h.client(webToken).Config(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Engine == nil || cfg.Engine.Address != h.engine || cfg.Engine.Kind != "docker" {
		t.Fatalf("engine settings = %+v", cfg.Engine)
	}
	// A plain request through the proxy.
	c := mtlsClient(t, cr)
	resp, err := c.Get("https://" + h.engine + "/_ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "OK docker" {
		t.Errorf("/_ping = %q", body)
	}

	// A hijacked, upgraded stream with a half-close, as docker attach makes.
	tc, _ := cr.TLSConfig()
	conn, err := tls.Dial("tcp", h.engine, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /containers/c1/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: rift\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
	br := bufio.NewReader(conn)
	status, _ := br.ReadString('\n')
	if !strings.Contains(status, "101") {
		t.Fatalf("attach answered %q", status)
	}
	for line, _ := br.ReadString('\n'); line != "\r\n" && line != ""; line, _ = br.ReadString('\n') {
	}
	io.WriteString(conn, "stdin of the job")
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(br)
	if string(out) != "STDIN OF THE JOB" {
		t.Errorf("attach stream = %q", out)
	}

	// Without a client certificate nothing is served (TLS 1.3 reports
	// the refusal at the first read).
	if conn, err := tls.Dial("tcp", h.engine, &tls.Config{RootCAs: h.pool}); err == nil {
		io.WriteString(conn, "GET /_ping HTTP/1.0\r\n\r\n")
		if b, err := io.ReadAll(conn); err == nil || len(b) > 0 {
			t.Errorf("a client without a certificate was served: %q", b)
		}
		conn.Close()
	}

	// Egg api's engine (podman) is not served here: its runner is cut off.
	apiCr, err := h.client(apiToken).Certificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = mtlsClient(t, apiCr).Get("https://" + h.engine + "/_ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "serves no podman engine") {
		t.Errorf("egg api's runner on an engine its egg does not have: %s %s", resp.Status, body)
	}

	// A runner destroyed after its certificate was issued is cut off.
	h.auth.Revoke("web-1")
	h.clock.Advance(time.Minute) // past the live check's memory
	resp, err = mtlsClient(t, cr).Get("https://" + h.engine + "/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a destroyed runner's certificate on the engine: %s", resp.Status)
	}
}

func TestMirrorThroughRift(t *testing.T) {
	h := start(t, t.TempDir(), options{mirror: true})
	ctx := context.Background()
	layer := bytes.Repeat([]byte{7, 1, 3}, 300000)
	img := h.up.Push(t, http.DefaultClient, "", "", "library/builder", "2", layer)

	cr, err := h.client(webToken).Certificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := h.client(webToken).Config(ctx, "web")
	if err != nil || cfg.Mirror == nil || cfg.Mirror.URL != h.mirror {
		t.Fatalf("web's mirror = %+v, %v", cfg, err)
	}
	// The files an engine reads a mirror's certificates from.
	certsDir := t.TempDir()
	if err := cr.WriteRegistryCerts(certsDir, cfg.Mirror.URL); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(h.mirror, "https://")
	cert, err := tls.LoadX509KeyPair(filepath.Join(certsDir, host, "client.cert"), filepath.Join(certsDir, host, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(certsDir, host, "ca.crt"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots}}}
	for i := 0; i < 2; i++ {
		if got := mirrortest.Pull(t, c, h.mirror, "library/builder", "2", img); !bytes.Equal(got, layer) {
			t.Fatalf("pull %d: wrong layer", i)
		}
		want := float64(2 * (i + 1))
		mirrortest.WaitFor(t, func() bool { return counter(h, "hits", "web", "mirror")+counter(h, "misses", "web", "mirror") == want })
	}
	if n := h.up.BlobGets(img.LayerDigest); n != 1 {
		t.Errorf("upstream served the layer %d times over two pulls through Rift; want 1", n)
	}
	if hits, misses := counter(h, "hits", "web", "mirror"), counter(h, "misses", "web", "mirror"); hits != 2 || misses != 2 {
		t.Errorf("mirror hits %v, misses %v; want 2 and 2", hits, misses)
	}

	// Egg api has no mirror; its runner's certificate does not reach web's.
	apiCr, err := h.client(apiToken).Certificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := mtlsClient(t, apiCr).Get(h.mirror + "/v2/library/builder/manifests/2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("api's runner on the mirror: %s", resp.Status)
	}
}
