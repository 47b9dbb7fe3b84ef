// Package riftapi is Rift's control API as runners use it: its paths and
// messages, and the client a runner's agent gets its cache settings,
// certificate and engine and mirror addresses with. It needs nothing of
// Rift's server, store or S3 signing, so the agent carries none of them.
package riftapi

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The control API's paths.
const (
	PathHealth       = "/healthz"
	PathMetrics      = "/metrics"
	PathCA           = "/rift/v1/ca"
	PathCertificates = "/rift/v1/certificates"
	// PathEggConfig is /rift/v1/eggs/{egg}/config.
	PathEggConfig = "/rift/v1/eggs/"
)

// CertificateRequest is the body of POST /rift/v1/certificates: a PKCS #10
// CSR in PEM. The runner keeps its private key; Rift names the runner and
// its egg in the certificate whatever the CSR's subject says.
type CertificateRequest struct {
	CSR string `json:"csr"`
}

// CertificateResponse is its answer.
type CertificateResponse struct {
	// Certificate is the client certificate in PEM.
	Certificate string `json:"certificate"`
	// CA is Rift's CA certificate in PEM: trust it for Rift's mirror and
	// engine listeners.
	CA        string    `json:"ca"`
	RunnerID  string    `json:"runner_id"`
	Egg       string    `json:"egg"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RunnerConfig is GET /rift/v1/eggs/{egg}/config: what a runner of the egg
// uses Rift for. A service Rift does not run, or the egg does not have,
// is absent.
type RunnerConfig struct {
	Egg      string `json:"egg"`
	RunnerID string `json:"runner_id"`
	// Cache is gitlab-runner's [runners.cache.s3] settings, credentials
	// included.
	Cache *CacheSettings `json:"cache,omitempty"`
	// Engine is the remote engine, reached with a client certificate.
	Engine *EngineSettings `json:"engine,omitempty"`
	// Mirror is the image mirror's base URL, reached with a client
	// certificate (Docker's registry-mirrors entry).
	Mirror *MirrorSettings `json:"mirror,omitempty"`
}

// EngineSettings say where the remote engine listens.
type EngineSettings struct {
	// Kind is docker, podman or nerdctl.
	Kind string `json:"kind"`
	// Address is host:port of the mutual-TLS listener.
	Address string `json:"address"`
	// Protocol is the API the address speaks: "docker" (Docker's Engine
	// API; Podman serves it too) or "containerd" (gRPC, for nerdctl,
	// through engine.ForwardUnix).
	Protocol string `json:"protocol"`
}

// MirrorSettings say where the image mirror listens.
type MirrorSettings struct {
	URL string `json:"url"`
}

// CacheSettings are the [runners.cache] and [runners.cache.s3] values of
// gitlab-runner's config.toml that point a runner at its egg's bucket
// (GitLab Runner docs, "The [runners.cache] section").
type CacheSettings struct {
	ServerAddress  string `json:"server_address"`
	AccessKey      string `json:"access_key"`
	SecretKey      string `json:"secret_key"`
	BucketName     string `json:"bucket_name"`
	BucketLocation string `json:"bucket_location"`
	Insecure       bool   `json:"insecure"`
}

// DefaultLocation is the region gitlab-runner signs with when none is set.
const DefaultLocation = "us-east-1"

// TOML renders the settings as config.toml's cache section of one
// [[runners]] entry. Shared is true: every runner of the egg shares the
// bucket.
func (s CacheSettings) TOML() string {
	var b strings.Builder
	b.WriteString("  [runners.cache]\n    Type = \"s3\"\n    Shared = true\n")
	b.WriteString("    [runners.cache.s3]\n")
	fmt.Fprintf(&b, "      ServerAddress = %s\n", strconv.Quote(s.ServerAddress))
	b.WriteString("      AuthenticationType = \"access-key\"\n")
	fmt.Fprintf(&b, "      AccessKey = %s\n", strconv.Quote(s.AccessKey))
	fmt.Fprintf(&b, "      SecretKey = %s\n", strconv.Quote(s.SecretKey))
	fmt.Fprintf(&b, "      BucketName = %s\n", strconv.Quote(s.BucketName))
	loc := s.BucketLocation
	if loc == "" {
		loc = DefaultLocation
	}
	fmt.Fprintf(&b, "      BucketLocation = %s\n", strconv.Quote(loc))
	b.WriteString("      PathStyle = true\n")
	fmt.Fprintf(&b, "      Insecure = %t\n", s.Insecure)
	return b.String()
}

// apiError is the body of the control API's errors.
type apiError struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}
