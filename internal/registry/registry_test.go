package registry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/rift/mirror/mirrortest"
)

func TestParse(t *testing.T) {
	for _, c := range []struct{ in, domain, path, tag, digest string }{
		{"alpine", "docker.io", "library/alpine", "latest", ""},
		{"alpine:3.20", "docker.io", "library/alpine", "3.20", ""},
		{"registry.gitlab.com/gitlab-org/gitlab-runner:v18.6.0", "registry.gitlab.com", "gitlab-org/gitlab-runner", "v18.6.0", ""},
		{"127.0.0.1:5000/runner@sha256:" + strings.Repeat("a", 64), "127.0.0.1:5000", "runner", "", "sha256:" + strings.Repeat("a", 64)},
	} {
		r, err := Parse(c.in)
		if err != nil || r.Domain != c.domain || r.Path != c.path || r.Tag != c.tag || r.Digest != c.digest {
			t.Errorf("Parse(%q) = %+v, %v", c.in, r, err)
		}
	}
	if _, err := Parse("Not A/Ref:"); err == nil {
		t.Error("a bad reference parsed")
	}
	if got := (Ref{Domain: "docker.io"}).baseURL(); got != "https://registry-1.docker.io" {
		t.Errorf("docker.io base URL %s", got)
	}
}

func TestParseChallenge(t *testing.T) {
	s, p := parseChallenge(`Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"`)
	if s != "Bearer" || p["realm"] != "https://auth.example.com/token" || p["service"] != "registry.example.com" || p["scope"] != "repository:a/b:pull,push" {
		t.Errorf("%s %v", s, p)
	}
	s, p = parseChallenge(`Basic realm=upstream`)
	if s != "Basic" || p["realm"] != "upstream" {
		t.Errorf("%s %v", s, p)
	}
}

func host(u string) string {
	p, _ := url.Parse(u)
	return p.Host
}

func TestResolveAnonymousAndMovingTag(t *testing.T) {
	up := mirrortest.Start(t, "", "")
	c := &http.Client{}
	v1 := up.Push(t, c, "", "", "gitlab-org/runner", "v18", []byte("layer one"))
	var res Resolver
	ctx := context.Background()
	ref := host(up.URL) + "/gitlab-org/runner:v18"
	d, err := res.Resolve(ctx, ref, Credential{})
	if err != nil || d != v1.ManifestDigest {
		t.Fatalf("Resolve = %s, %v; want %s", d, err, v1.ManifestDigest)
	}
	v2 := up.Push(t, c, "", "", "gitlab-org/runner", "v18", []byte("layer two"))
	if d, err := res.Resolve(ctx, ref, Credential{}); err != nil || d != v2.ManifestDigest || d == v1.ManifestDigest {
		t.Fatalf("after a push: %s, %v; want %s", d, err, v2.ManifestDigest)
	}
	if _, err := res.Resolve(ctx, host(up.URL)+"/gitlab-org/runner:v19", Credential{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown tag: %v", err)
	}
}

func TestResolveBasicAuth(t *testing.T) {
	up := mirrortest.Start(t, "ci", "s3cret")
	img := up.Push(t, &http.Client{}, "ci", "s3cret", "runner", "v1", []byte("layer"))
	var res Resolver
	ref := host(up.URL) + "/runner:v1"
	if _, err := res.Resolve(context.Background(), ref, Credential{}); err == nil || !strings.Contains(err.Error(), "give a username") {
		t.Errorf("anonymous: %v", err)
	}
	if _, err := res.Resolve(context.Background(), ref, Credential{Username: "ci", Password: "wrong"}); err == nil {
		t.Error("a wrong password resolved")
	}
	if d, err := res.Resolve(context.Background(), ref, Credential{Username: "ci", Password: "s3cret"}); err != nil || d != img.ManifestDigest {
		t.Errorf("with the login: %s, %v", d, err)
	}
}

// A registry behind token authentication, as Docker Hub and GitLab's
// container registry are: 401 with a Bearer challenge, a token from the
// realm for the login, then the request again with the token.
func TestResolveBearerToken(t *testing.T) {
	up := mirrortest.Start(t, "", "")
	img := up.Push(t, &http.Client{}, "", "", "group/runner", "v2", []byte("layer"))
	target, _ := url.Parse(up.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var tokens int
	var front *httptest.Server
	front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			u, p, ok := r.BasicAuth()
			if !ok || u != "ci" || p != "tok-pass" || r.URL.Query().Get("scope") != "repository:group/runner:pull" || r.URL.Query().Get("service") != "test-registry" {
				http.Error(w, "denied", http.StatusUnauthorized)
				return
			}
			tokens++
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"good-token"}`))
			return
		}
		if r.Header.Get("Authorization") != "Bearer good-token" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+front.URL+`/token",service="test-registry",scope="repository:group/runner:pull"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	var res Resolver
	d, err := res.Resolve(context.Background(), host(front.URL)+"/group/runner:v2", Credential{Username: "ci", Password: "tok-pass"})
	if err != nil || d != img.ManifestDigest || tokens != 1 {
		t.Fatalf("Resolve = %s, %v (tokens %d); want %s", d, err, tokens, img.ManifestDigest)
	}
	if _, err := res.Resolve(context.Background(), host(front.URL)+"/group/runner:v2", Credential{Username: "ci", Password: "no"}); err == nil || !strings.Contains(err.Error(), "get a token") {
		t.Errorf("wrong password: %v", err)
	}
}
