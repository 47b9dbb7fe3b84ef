package cli

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/rift"
)

// Rift in gosling dev: loopback listeners, plain-HTTP S3, a mirror only for
// an egg with a mirror block; the dev Nest drops rift endpoints so runners
// use this Rift, and the rift block's secrets get development values.
func TestDevRift(t *testing.T) {
	n := &fly.Nest{Eggs: []fly.Egg{
		{Name: "plain"},
		{Name: "cached", Rift: &fly.RiftSpec{Enabled: true, Endpoint: "https://rift.example.com", SecretKey: "local://rift/secret", AccessKey: "local://rift/access"}},
	}}
	if !nestHasRift(n) || nestHasRift(&fly.Nest{Eggs: []fly.Egg{{Name: "off", Rift: &fly.RiftSpec{}}}}) {
		t.Error("nestHasRift")
	}
	dev := devNest(n, "127.0.0.1:1", true, t.TempDir())
	if dev.Eggs[1].Rift.Endpoint != "" || n.Eggs[1].Rift.Endpoint == "" {
		t.Errorf("endpoint: dev %q, original %q", dev.Eggs[1].Rift.Endpoint, n.Eggs[1].Rift.Endpoint)
	}
	s := nestSecrets(dev)
	if s["local://rift/secret"] != "rift-secret-key" || s["local://rift/access"] != "rift-access-key" {
		t.Errorf("rift secrets not seeded: %v", s)
	}
	state := t.TempDir()
	p := devRiftParams(dev, state, nil, nil, nil)
	if p.Dir != filepath.Join(state, "rift") || p.Addr != "127.0.0.1:0" || p.S3Addr != "127.0.0.1:0" || !p.S3Insecure || p.MirrorAddr != "" || p.Hosts[0] != "127.0.0.1" {
		t.Errorf("params %+v", p)
	}
	if (p.EngineAddr != "") != (len(p.Engines) > 0) {
		t.Errorf("engine %q with sockets %v", p.EngineAddr, p.Engines)
	}
	dev.Eggs[1].Rift.Mirror = &fly.RiftMirror{Upstream: "https://registry-1.docker.io"}
	if p := devRiftParams(dev, state, nil, nil, nil); p.MirrorAddr != "127.0.0.1:0" {
		t.Errorf("no mirror for an egg with a mirror block: %+v", p)
	}
}

// A second run takes the ports of the first when they are free, so resumed
// runners still reach Rift; a busy one gives way to a free port.
func TestDevRiftKeepsItsPorts(t *testing.T) {
	state := t.TempDir()
	dir := filepath.Join(state, "rift")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	control, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s3, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if err := saveRiftAddrs(dir, &runningRift{l: rift.Listeners{Control: control, S3: s3}}); err != nil {
		t.Fatal(err)
	}
	control.Close()
	n := &fly.Nest{Eggs: []fly.Egg{{Name: "cached", Rift: &fly.RiftSpec{Enabled: true}}}}
	p := devRiftParams(n, state, nil, nil, nil)
	if p.Addr != control.Addr().String() {
		t.Errorf("control %s, want the last run's %s", p.Addr, control.Addr())
	}
	if p.S3Addr != "127.0.0.1:0" {
		t.Errorf("s3 %s: its last port is busy, want a free one", p.S3Addr)
	}
}
