package riftapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/engine"
	"github.com/gosling-ci/gosling/internal/rift/pki"
)

// Errors a Client's calls wrap, by the control API's status.
var (
	ErrUnauthorized = errors.New("rift refused the runner token (401): unknown, or its runner was destroyed")
	ErrForbidden    = errors.New("rift refused the runner (403): another egg's, or its egg has no rift block")
)

// Check probes a Rift's health: GET <baseURL>/healthz must answer 200
// within the context's deadline (ten seconds when it has none). It uses
// http.DefaultClient: for a Rift whose certificate only Rift's CA vouches
// for, use Client.Check.
func Check(ctx context.Context, baseURL string) error {
	return check(ctx, http.DefaultClient, baseURL)
}

func check(ctx context.Context, hc *http.Client, baseURL string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	u, err := url.JoinPath(baseURL, PathHealth)
	if err != nil {
		return fmt.Errorf("rift URL %q: %w", baseURL, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("rift URL %q: %w", baseURL, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("check rift at %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("check rift at %s: %s", baseURL, resp.Status)
	}
	return nil
}

// Client is what a runner's agent uses Rift's control API with.
type Client struct {
	BaseURL string
	// Token is the runner's token (glrt-...); it is sent as a bearer token.
	Token string
	HTTP  *http.Client
}

// NewClient returns a client for baseURL (https://host:port). rootCAs are
// the CAs trusted for the control listener's certificate (Rift's CA for a
// Rift without --tls-cert); nil means the system's.
func NewClient(baseURL, token string, rootCAs *x509.CertPool) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: rootCAs, MinVersion: tls.VersionTLS12}
	return &Client{BaseURL: strings.TrimSuffix(baseURL, "/"), Token: token, HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Check probes the Rift's health.
func (c *Client) Check(ctx context.Context) error { return check(ctx, c.HTTP, c.BaseURL) }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e apiError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%s %s: %w", method, path, ErrUnauthorized)
		case http.StatusForbidden:
			return fmt.Errorf("%s %s: %w: %s", method, path, ErrForbidden, e.Detail)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Detail)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Credentials are a runner's client certificate, its key and Rift's CA.
type Credentials struct {
	CertPEM, KeyPEM, CAPEM []byte
	RunnerID, Egg          string
	ExpiresAt              time.Time
}

// Certificate makes an ECDSA P-256 key on this machine, sends its CSR with
// the runner token and returns the certificate Rift issued for it. The
// key never leaves the machine; renew before ExpiresAt.
func (c *Client) Certificate(ctx context.Context) (*Credentials, error) {
	keyPEM, csrPEM, err := pki.NewKeyAndCSR("gosling-runner")
	if err != nil {
		return nil, err
	}
	var resp CertificateResponse
	if err := c.do(ctx, http.MethodPost, PathCertificates, CertificateRequest{CSR: string(csrPEM)}, &resp); err != nil {
		return nil, err
	}
	return &Credentials{CertPEM: []byte(resp.Certificate), KeyPEM: keyPEM, CAPEM: []byte(resp.CA),
		RunnerID: resp.RunnerID, Egg: resp.Egg, ExpiresAt: resp.ExpiresAt}, nil
}

// Config returns what Rift serves the runner's egg.
func (c *Client) Config(ctx context.Context, egg string) (*RunnerConfig, error) {
	var out RunnerConfig
	if err := c.do(ctx, http.MethodGet, PathEggConfig+url.PathEscape(egg)+"/config", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TLSConfig is the client TLS configuration for Rift's mirror and engine
// listeners: the runner's certificate, and Rift's CA as the only root.
func (cr *Credentials) TLSConfig() (*tls.Config, error) {
	cert, err := tls.X509KeyPair(cr.CertPEM, cr.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("load the runner's Rift certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cr.CAPEM) {
		return nil, errors.New("rift's CA certificate holds no PEM certificate")
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// ClientTLS is the material engine.WriteTLSDir and
// engine.WriteDockerContext write.
func (cr *Credentials) ClientTLS() engine.ClientTLS {
	return engine.ClientTLS{CA: cr.CAPEM, Cert: cr.CertPEM, Key: cr.KeyPEM}
}

// WriteRegistryCerts writes the runner's TLS material for Rift's image
// mirror where container engines look for a registry's certificates:
// <certsDir>/<host:port>/ca.crt, client.cert and client.key (Docker docs,
// "Verify repository client with certificates"; certsDir is
// /etc/docker/certs.d for Docker, /etc/containers/certs.d for Podman).
// mirrorURL is RunnerConfig.Mirror.URL.
func (cr *Credentials) WriteRegistryCerts(certsDir, mirrorURL string) error {
	u, err := url.Parse(mirrorURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("mirror URL %q has no host:port", mirrorURL)
	}
	dir := filepath.Join(certsDir, u.Host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{{"ca.crt", cr.CAPEM, 0o644}, {"client.cert", cr.CertPEM, 0o644}, {"client.key", cr.KeyPEM, 0o600}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}
