package engine_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/engine"
	"github.com/gosling-ci/gosling/internal/rift/pki"
	toml "github.com/pelletier/go-toml/v2"
)

func clientTLS(t *testing.T, ca *pki.CA, id pki.Identity) *tls.Config {
	t.Helper()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR("runner")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.IssueClient(csrPEM, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool()}
}

// TestForwardUnixThroughProxy is the nerdctl and Podman-client path: a
// local unix socket (ForwardUnix) whose connections go over mutual TLS to
// the proxy and on to the engine's socket (here a stand-in HTTP server).
func TestForwardUnixThroughProxy(t *testing.T) {
	dir, err := os.MkdirTemp("", "rift-engine-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	engineSock := filepath.Join(dir, "engine.sock")
	eln, err := net.Listen("unix", engineSock)
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(eln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "engine saw "+r.URL.Path) }))
	defer eln.Close()

	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := ca.ServerCertificate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &engine.Proxy{
		TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()},
		Route: func(_ context.Context, id pki.Identity) (string, string, error) {
			if id.Egg != "web" {
				return "", "", errors.New("not served")
			}
			return "unix", engineSock, nil
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Serve(ctx, ln)

	local := filepath.Join(dir, "forward.sock")
	go engine.ForwardUnix(ctx, local, engine.Dialer(ln.Addr().String(), clientTLS(t, ca, pki.Identity{RunnerID: "web-1", Egg: "web"})))
	var fi os.FileInfo
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if fi, err = os.Stat(local); err == nil && fi.Mode().Perm() == 0o600 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("forward socket: %v %v", fi, err)
		}
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", local)
	}}}
	for i := 0; i < 3; i++ {
		resp, err := c.Get("http://engine/v1.41/images/json")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "engine saw /v1.41/images/json" {
			t.Errorf("through the forward: %q", body)
		}
	}

	// Another egg's certificate reaches nothing.
	other := filepath.Join(dir, "other.sock")
	go engine.ForwardUnix(ctx, other, engine.Dialer(ln.Addr().String(), clientTLS(t, ca, pki.Identity{RunnerID: "api-1", Egg: "api"})))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(other); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no forward socket")
		}
	}
	c2 := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", other)
	}}}
	if resp, err := c2.Get("http://engine/_ping"); err == nil {
		resp.Body.Close()
		t.Errorf("egg api reached egg web's engine: %s", resp.Status)
	}
}

func TestRenderings(t *testing.T) {
	args := engine.DockerContextArgs("rift", "rift.example.com:2376", "/etc/gosling/rift")
	if strings.Join(args, " ") != "context create rift --description Gosling Rift's remote engine --docker host=tcp://rift.example.com:2376,ca=/etc/gosling/rift/ca.pem,cert=/etc/gosling/rift/cert.pem,key=/etc/gosling/rift/key.pem" {
		t.Errorf("docker context args = %q", args)
	}
	var runner struct {
		Runners struct {
			Docker struct {
				Host        string `toml:"host"`
				TLSVerify   bool   `toml:"tls_verify"`
				TLSCertPath string `toml:"tls_cert_path"`
			} `toml:"docker"`
		} `toml:"runners"`
	}
	if err := toml.Unmarshal([]byte(engine.RunnerDockerTOML("rift.example.com:2376", "/etc/gosling/rift")), &runner); err != nil {
		t.Fatal(err)
	}
	if d := runner.Runners.Docker; d.Host != "tcp://rift.example.com:2376" || !d.TLSVerify || d.TLSCertPath != "/etc/gosling/rift" {
		t.Errorf("[runners.docker] = %+v", d)
	}
	if got := strings.Join(engine.PodmanConnectionArgs("rift", "/run/gosling/rift.sock"), " "); got != "system connection add rift unix:///run/gosling/rift.sock" {
		t.Errorf("podman args = %q", got)
	}
	if got := engine.NerdctlEnv("/run/gosling/rift-containerd.sock"); got[0] != "CONTAINERD_ADDRESS=/run/gosling/rift-containerd.sock" {
		t.Errorf("nerdctl env = %q", got)
	}

	dir := t.TempDir()
	ca, _ := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	if err := engine.WriteDockerContext(filepath.Join(dir, "docker"), "rift", "127.0.0.1:2376", engine.ClientTLS{CA: ca.CertPEM(), Cert: []byte("c"), Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	metas, _ := filepath.Glob(filepath.Join(dir, "docker", "contexts", "meta", "*", "meta.json"))
	keys, _ := filepath.Glob(filepath.Join(dir, "docker", "contexts", "tls", "*", "docker", "key.pem"))
	if len(metas) != 1 || len(keys) != 1 {
		t.Fatalf("context files: %v %v", metas, keys)
	}
	if fi, _ := os.Stat(keys[0]); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(keys[0]), "ca.pem"))
	if blk, _ := pem.Decode(b); blk == nil {
		t.Error("ca.pem holds no PEM")
	} else if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		t.Error(err)
	}
}
