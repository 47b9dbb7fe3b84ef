// Package mirrortest starts an upstream registry for tests of Rift's image
// mirror: CNCF Distribution's registry as a library, on a free loopback
// port, counting the blob fetches it serves. Images are pushed into it
// with plain Docker Registry HTTP API v2 calls.
package mirrortest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the filesystem storage driver
	"github.com/gosling-ci/gosling/internal/rift/mirror"
)

// Upstream is a running registry.
type Upstream struct {
	URL string

	mu       sync.Mutex
	blobGets map[string]int
}

var blobGet = regexp.MustCompile(`^/v2/.+/blobs/(sha256:[a-f0-9]{64})$`)

// Start runs a registry until the test ends. With user set, every request
// needs HTTP basic authentication with user and password, as a private
// registry's.
func Start(t testing.TB, user, password string) *Upstream {
	t.Helper()
	cfg := &configuration.Configuration{
		Version: "0.1",
		Storage: configuration.Storage{
			"filesystem":  configuration.Parameters{"rootdirectory": t.TempDir()},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
		},
	}
	cfg.HTTP.Secret = "upstream-test-secret"
	mirror.RouteLogs(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	app := handlers.NewApp(ctx, cfg)
	u := &Upstream{blobGets: map[string]int{}}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user != "" {
			if u2, p, ok := r.BasicAuth(); !ok || u2 != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
				w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"log in"}]}`, http.StatusUnauthorized)
				return
			}
		}
		if m := blobGet.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodGet {
			u.mu.Lock()
			u.blobGets[m[1]]++
			u.mu.Unlock()
		}
		app.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	u.URL = hs.URL
	return u
}

// BlobGets counts the GETs of one blob the upstream served.
func (u *Upstream) BlobGets(digest string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.blobGets[digest]
}

// Image is what Push pushed.
type Image struct {
	Repository, Tag string
	Manifest        []byte
	ManifestDigest  string
	ConfigDigest    string
	LayerDigest     string
	Layer           []byte
}

// Digest is the sha256 digest of b.
func Digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// Push uploads a one-layer OCI image (config blob, layer blob, manifest)
// with plain HTTP calls: POST an upload, PUT it with its digest, PUT the
// manifest (Docker Registry HTTP API v2, "Pushing An Image").
func (u *Upstream) Push(t testing.TB, c *http.Client, user, password, repo, tag string, layer []byte) Image {
	t.Helper()
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + Digest(layer) + `"]}}`)
	for _, blob := range [][]byte{config, layer} {
		req, _ := http.NewRequest(http.MethodPost, u.URL+"/v2/"+repo+"/blobs/uploads/", nil)
		req.SetBasicAuth(user, password)
		resp := send(t, c, req, http.StatusAccepted)
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		base, _ := url.Parse(u.URL)
		loc = base.ResolveReference(loc)
		q := loc.Query()
		q.Set("digest", Digest(blob))
		loc.RawQuery = q.Encode()
		req, _ = http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(blob))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.SetBasicAuth(user, password)
		send(t, c, req, http.StatusCreated)
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest(config), "size": len(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": Digest(layer), "size": len(layer)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, u.URL+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(manifest))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	req.SetBasicAuth(user, password)
	send(t, c, req, http.StatusCreated)
	return Image{Repository: repo, Tag: tag, Manifest: manifest, ManifestDigest: Digest(manifest), ConfigDigest: Digest(config), LayerDigest: Digest(layer), Layer: layer}
}

func send(t testing.TB, c *http.Client, req *http.Request, want int) *http.Response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %s %s", req.Method, req.URL.Path, resp.Status, body)
	}
	return resp
}

// Pull fetches an image the way a container engine does: the manifest by
// tag, then the config and layer blobs by digest, from base (a registry
// or a mirror). It returns the layer's bytes.
func Pull(t testing.TB, c *http.Client, base, repo, tag string, img Image) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	manifest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || Digest(manifest) != img.ManifestDigest {
		t.Fatalf("pull manifest %s:%s from %s: %s %s", repo, tag, base, resp.Status, manifest)
	}
	var layer []byte
	for _, d := range []string{img.ConfigDigest, img.LayerDigest} {
		resp, err := c.Get(base + "/v2/" + repo + "/blobs/" + d)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || Digest(b) != d {
			t.Fatalf("pull blob %s: %s (%d bytes)", d, resp.Status, len(b))
		}
		layer = b
	}
	return layer
}

// Describe names an image for messages.
func (i Image) String() string { return fmt.Sprintf("%s:%s@%s", i.Repository, i.Tag, i.ManifestDigest) }

// WaitFor waits until cond holds, failing the test after a minute.
func WaitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
	}
}
