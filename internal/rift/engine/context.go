package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Engines a rift block names (fly's rift.engine).
const (
	Docker  = "docker"
	Podman  = "podman"
	Nerdctl = "nerdctl"
)

// ClientTLS is a runner's TLS material for Rift's engine listener, in PEM.
type ClientTLS struct {
	CA   []byte // Rift's CA certificate
	Cert []byte // the runner's client certificate
	Key  []byte // the runner's private key
}

// Docker's file names for TLS material (DOCKER_CERT_PATH and contexts).
const (
	CAFile   = "ca.pem"
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// WriteTLSDir writes ca.pem, cert.pem and key.pem into dir (made if need
// be), the key readable by its owner only: Docker's DOCKER_CERT_PATH
// layout, which gitlab-runner's tls_cert_path also reads.
func WriteTLSDir(dir string, c ClientTLS) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{{CAFile, c.CA, 0o644}, {CertFile, c.Cert, 0o644}, {KeyFile, c.Key, 0o600}} {
		if len(f.data) == 0 {
			return fmt.Errorf("write %s: empty", f.name)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// DockerHost is Docker's address of Rift's engine listener (tcp://host:port).
func DockerHost(hostPort string) string { return "tcp://" + hostPort }

// DockerContextArgs are the arguments of `docker context create` for a
// context named name that reaches Rift's engine listener at hostPort with
// the files WriteTLSDir wrote into tlsDir (Docker docs, "docker context
// create": --docker host=...,ca=...,cert=...,key=...).
func DockerContextArgs(name, hostPort, tlsDir string) []string {
	return []string{"context", "create", name,
		"--description", "Gosling Rift's remote engine",
		"--docker", fmt.Sprintf("host=%s,ca=%s,cert=%s,key=%s", DockerHost(hostPort),
			filepath.Join(tlsDir, CAFile), filepath.Join(tlsDir, CertFile), filepath.Join(tlsDir, KeyFile)),
	}
}

// DockerEnv is the environment that points the Docker CLI (and Docker's Go
// client) at Rift without a context: DOCKER_HOST, DOCKER_TLS_VERIFY and
// DOCKER_CERT_PATH.
func DockerEnv(hostPort, tlsDir string) []string {
	return []string{"DOCKER_HOST=" + DockerHost(hostPort), "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + tlsDir}
}

// dockerContextMeta is the meta.json `docker context create` writes.
type dockerContextMeta struct {
	Name      string                        `json:"Name"`
	Metadata  map[string]string             `json:"Metadata"`
	Endpoints map[string]dockerEndpointMeta `json:"Endpoints"`
}

type dockerEndpointMeta struct {
	Host          string `json:"Host"`
	SkipTLSVerify bool   `json:"SkipTLSVerify"`
}

// WriteDockerContext writes, into a Docker configuration directory (such
// as ~/.docker), the files `docker context create` would: the context's
// contexts/meta/<sha256 of name>/meta.json and its TLS material under
// contexts/tls/<sha256 of name>/docker/. The agent needs no Docker CLI for
// it; `docker --context <name>` then reaches Rift.
func WriteDockerContext(configDir, name, hostPort string, c ClientTLS) error {
	sum := sha256.Sum256([]byte(name))
	id := hex.EncodeToString(sum[:])
	meta, err := json.Marshal(dockerContextMeta{
		Name:      name,
		Metadata:  map[string]string{"Description": "Gosling Rift's remote engine"},
		Endpoints: map[string]dockerEndpointMeta{"docker": {Host: DockerHost(hostPort)}},
	})
	if err != nil {
		return err
	}
	metaDir := filepath.Join(configDir, "contexts", "meta", id)
	if err := os.MkdirAll(metaDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(metaDir, "meta.json"), meta, 0o644); err != nil {
		return err
	}
	return WriteTLSDir(filepath.Join(configDir, "contexts", "tls", id, "docker"), c)
}

// RunnerDockerTOML is the [runners.docker] part of gitlab-runner's
// config.toml that sends a docker executor's containers to Rift's engine
// (GitLab Runner docs, "The [runners.docker] section": host, tls_verify,
// tls_cert_path).
func RunnerDockerTOML(hostPort, tlsDir string) string {
	var b strings.Builder
	b.WriteString("  [runners.docker]\n")
	fmt.Fprintf(&b, "    host = %s\n", strconv.Quote(DockerHost(hostPort)))
	b.WriteString("    tls_verify = true\n")
	fmt.Fprintf(&b, "    tls_cert_path = %s\n", strconv.Quote(tlsDir))
	return b.String()
}

// PodmanConnectionArgs are the arguments of `podman system connection add`
// for a connection named name through the local socket ForwardUnix serves
// (Podman 4's remote client speaks SSH and unix sockets, not TLS).
func PodmanConnectionArgs(name, socketPath string) []string {
	return []string{"system", "connection", "add", name, "unix://" + socketPath}
}

// NerdctlEnv is the environment that points nerdctl at containerd through
// the local socket ForwardUnix serves (nerdctl's --address, or
// CONTAINERD_ADDRESS; containerd's API is gRPC over a unix socket).
func NerdctlEnv(socketPath string) []string {
	return []string{"CONTAINERD_ADDRESS=" + socketPath}
}

// NerdctlArgs are nerdctl's global flags for the same socket.
func NerdctlArgs(socketPath string) []string {
	return []string{"--address", socketPath}
}
