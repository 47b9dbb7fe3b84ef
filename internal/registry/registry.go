// Package registry resolves container image references to manifest
// digests with the Docker Registry HTTP API v2 (the OCI Distribution
// Specification): HEAD /v2/<name>/manifests/<tag>, reading
// Docker-Content-Digest. References are parsed by
// github.com/distribution/reference, as Docker parses them (docker.io and
// library/ are implied, a tag defaults to latest).
//
// Authentication follows the registry's challenge: a 401 with
// WWW-Authenticate: Bearer realm=...,service=...,scope=... is answered by
// fetching a token from the realm (anonymously, or with the username and
// password given, as HTTP basic authentication), then asking again with
// Authorization: Bearer; a Basic challenge is answered with the username
// and password. Registries on loopback addresses are spoken to over plain
// HTTP, as Docker does for localhost; every other over HTTPS.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Manifest media types a digest is asked for, most general first: a
// multi-platform image resolves to its index (manifest list), whose digest
// changes whenever any platform's image does.
var manifestTypes = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// Credential logs in to a registry; the zero value is anonymous.
type Credential struct {
	Username string
	Password string
}

// Resolver resolves references; the zero value uses http.DefaultClient.
type Resolver struct {
	// Client makes the requests (a timeout of its own is advisable).
	Client *http.Client
}

// Ref is a parsed reference.
type Ref struct {
	// Domain is the registry host[:port]; Path the repository's name in
	// it; Tag the tag (latest when the reference names none).
	Domain, Path, Tag string
	// Digest is set when the reference pins one.
	Digest string
}

// Parse reads an image reference such as
// registry.gitlab.com/gitlab-org/gitlab-runner:v18.6.0, alpine:3.20 or
// name@sha256:.... The error says what is wrong with it.
func Parse(image string) (Ref, error) {
	named, err := reference.ParseNormalizedNamed(strings.TrimSpace(image))
	if err != nil {
		return Ref{}, fmt.Errorf("image reference %q: %w", image, err)
	}
	r := Ref{Domain: reference.Domain(named), Path: reference.Path(named)}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest().String()
	}
	if t, ok := reference.TagNameOnly(named).(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	return r, nil
}

// baseURL is the registry's API root.
func (r Ref) baseURL() string {
	host := r.Domain
	if host == "docker.io" {
		host = "registry-1.docker.io"
	}
	scheme := "https"
	if isLoopback(host) {
		scheme = "http"
	}
	return scheme + "://" + host
}

func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrNotFound is returned for a tag or repository the registry does not have.
var ErrNotFound = errors.New("manifest unknown")

// Resolve returns the digest the image's tag points at now. A reference
// that pins a digest resolves to it without a request. Errors: ErrNotFound
// (404), an authentication failure naming the registry, or the registry's
// status.
func (res *Resolver) Resolve(ctx context.Context, image string, cred Credential) (string, error) {
	ref, err := Parse(image)
	if err != nil {
		return "", err
	}
	if ref.Digest != "" {
		return ref.Digest, nil
	}
	u := ref.baseURL() + "/v2/" + ref.Path + "/manifests/" + url.PathEscape(ref.Tag)
	resp, err := res.head(ctx, u, "")
	if err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		auth, err := res.answer(ctx, resp.Header.Get("WWW-Authenticate"), ref, cred)
		if err != nil {
			return "", fmt.Errorf("log in to %s: %w", ref.Domain, err)
		}
		if resp, err = res.head(ctx, u, auth); err != nil {
			return "", err
		}
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return "", fmt.Errorf("%s: %w", image, ErrNotFound)
	case http.StatusUnauthorized, http.StatusForbidden:
		return "", fmt.Errorf("%s: the registry refused the credentials (%s)", ref.Domain, resp.Status)
	default:
		return "", fmt.Errorf("HEAD %s: %s", u, resp.Status)
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", fmt.Errorf("%s: the registry sent no valid Docker-Content-Digest: %w", image, err)
	}
	return d.String(), nil
}

func (res *Resolver) client() *http.Client {
	if res.Client != nil {
		return res.Client
	}
	return http.DefaultClient
}

// head sends HEAD u with the manifest Accept headers and auth, if any.
func (res *Resolver) head(ctx context.Context, u, auth string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return nil, err
	}
	for _, t := range manifestTypes {
		req.Header.Add("Accept", t)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := res.client().Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// answer meets a WWW-Authenticate challenge and returns the Authorization
// header to send.
func (res *Resolver) answer(ctx context.Context, header string, ref Ref, cred Credential) (string, error) {
	scheme, params := parseChallenge(header)
	switch strings.ToLower(scheme) {
	case "basic":
		if cred.Username == "" {
			return "", errors.New("the registry asks for a login: give a username and password")
		}
		req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
		req.SetBasicAuth(cred.Username, cred.Password)
		return req.Header.Get("Authorization"), nil
	case "bearer":
		tok, err := res.token(ctx, params, ref, cred)
		if err != nil {
			return "", err
		}
		return "Bearer " + tok, nil
	}
	return "", fmt.Errorf("unsupported authentication challenge %q", scheme)
}

// token fetches a bearer token from the challenge's realm (the token
// authentication of the Distribution specification).
func (res *Resolver) token(ctx context.Context, params map[string]string, ref Ref, cred Credential) (string, error) {
	realm := params["realm"]
	ru, err := url.Parse(realm)
	if err != nil || (ru.Scheme != "https" && ru.Scheme != "http") || ru.Host == "" {
		return "", fmt.Errorf("the token realm %q is not a URL", realm)
	}
	q := ru.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	scope := params["scope"]
	if scope == "" {
		scope = "repository:" + ref.Path + ":pull"
	}
	q.Set("scope", scope)
	ru.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ru.String(), nil)
	if err != nil {
		return "", err
	}
	if cred.Username != "" {
		req.SetBasicAuth(cred.Username, cred.Password)
	}
	resp, err := res.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("get a token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("get a token from %s: %s", ru.Host, resp.Status)
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("read the token from %s: %w", ru.Host, err)
	}
	if body.Token == "" {
		body.Token = body.AccessToken
	}
	if body.Token == "" {
		return "", fmt.Errorf("%s answered without a token", ru.Host)
	}
	return body.Token, nil
}

// parseChallenge splits `Bearer realm="...",service="..."` (RFC 7235
// auth-params, quoted or not) into its scheme and parameters.
func parseChallenge(h string) (string, map[string]string) {
	h = strings.TrimSpace(h)
	scheme, rest, _ := strings.Cut(h, " ")
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		k, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		after = strings.TrimSpace(after)
		var v string
		if strings.HasPrefix(after, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				b.WriteByte(after[i])
			}
			v, rest = b.String(), after[min(i+1, len(after)):]
		} else {
			v, rest, _ = strings.Cut(after, ",")
			v = strings.TrimSpace(v)
			rest = "," + rest
		}
		params[k] = v
		rest = strings.TrimLeft(strings.TrimSpace(rest), ",")
		rest = strings.TrimSpace(rest)
	}
	return scheme, params
}

// DefaultTimeout is a sensible bound for one resolution.
const DefaultTimeout = 30 * time.Second
