// Package vaulttest is an in-memory HashiCorp Vault speaking the HTTP API
// of KV version 2 (/v1/{mount}/data/..., /v1/{mount}/metadata/...) and of
// the token, AppRole and Kubernetes auth methods, for tests.
package vaulttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is a Vault test server with one KV v2 mount.
type Server struct {
	*httptest.Server
	// Mount is the KV v2 mount ("secret").
	Mount string

	mu       sync.Mutex
	tokens   map[string]bool
	approles map[string]string // role ID -> secret ID
	k8s      map[string]string // role -> accepted JWT
	secrets  map[string]*secret
	denied   map[string]bool
	throttle int
	calls    map[string]int
	logins   int
}

type secret struct {
	versions []version // index i holds version i+1
}

type version struct {
	data    map[string]any
	created time.Time
}

// New starts a server that accepts rootToken.
func New(rootToken string) *Server {
	s := &Server{
		Mount:  "secret",
		tokens: map[string]bool{rootToken: true}, approles: map[string]string{}, k8s: map[string]string{},
		secrets: map[string]*secret{}, denied: map[string]bool{}, calls: map[string]int{},
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// AddAppRole accepts an AppRole login with these IDs.
func (s *Server) AddAppRole(roleID, secretID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.approles[roleID] = secretID
}

// AddKubernetesRole accepts a Kubernetes login of role with jwt.
func (s *Server) AddKubernetesRole(role, jwt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k8s[role] = jwt
}

// RevokeLoginTokens revokes every token issued by a login, as their
// expiry would.
func (s *Server) RevokeLoginTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.tokens {
		if strings.HasPrefix(t, "hvs.login-") {
			delete(s.tokens, t)
		}
	}
}

// Logins counts successful logins.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Deny answers 403 for the secret at path (mount excluded, or included).
func (s *Server) Deny(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[strings.TrimPrefix(path, s.Mount+"/")] = true
}

// Throttle answers 429 to the next n requests.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = n
}

// Calls counts requests by kind: "read", "write", "metadata", "login".
func (s *Server) Calls(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[kind]
}

// ResetCalls zeroes the counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	reply(w, status, map[string]any{"errors": msgs})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	p, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		fail(w, http.StatusNotFound)
		return
	}
	var body map[string]any
	if r.Method == http.MethodPut || r.Method == http.MethodPost {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			fail(w, http.StatusBadRequest, "failed to parse JSON input")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.throttle > 0 {
		s.throttle--
		fail(w, http.StatusTooManyRequests, "request path \""+p+"\": rate limit quota exceeded")
		return
	}
	if strings.HasPrefix(p, "auth/") && strings.HasSuffix(p, "/login") {
		s.calls["login"]++
		s.login(w, p, body)
		return
	}
	if !s.tokens[r.Header.Get("X-Vault-Token")] {
		fail(w, http.StatusForbidden, "permission denied")
		return
	}
	rest, ok := strings.CutPrefix(p, s.Mount+"/")
	if !ok {
		fail(w, http.StatusNotFound, "no handler for route \""+p+"\". route entry not found.")
		return
	}
	kind, path, _ := strings.Cut(rest, "/")
	if s.denied[path] {
		fail(w, http.StatusForbidden, "1 error occurred:\n\t* permission denied\n\n")
		return
	}
	switch {
	case kind == "data" && r.Method == http.MethodGet:
		s.calls["read"]++
		s.read(w, r, path)
	case kind == "data" && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		s.calls["write"]++
		s.write(w, path, body)
	case kind == "metadata" && r.Method == http.MethodGet:
		s.calls["metadata"]++
		s.metadata(w, path)
	default:
		fail(w, http.StatusMethodNotAllowed, "unsupported operation")
	}
}

func (s *Server) login(w http.ResponseWriter, p string, body map[string]any) {
	str := func(k string) string { v, _ := body[k].(string); return v }
	ok := false
	switch p {
	case "auth/approle/login":
		sid, found := s.approles[str("role_id")]
		ok = found && sid == str("secret_id")
		if !ok {
			fail(w, http.StatusBadRequest, "invalid role or secret ID")
			return
		}
	case "auth/kubernetes/login":
		jwt, found := s.k8s[str("role")]
		ok = found && jwt == str("jwt")
		if !ok {
			fail(w, http.StatusForbidden, "permission denied")
			return
		}
	default:
		fail(w, http.StatusNotFound, "no handler for route \""+p+"\"")
		return
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	tok := "hvs.login-" + hex.EncodeToString(b)
	s.tokens[tok] = true
	s.logins++
	reply(w, http.StatusOK, map[string]any{"auth": map[string]any{
		"client_token": tok, "accessor": "acc-" + tok[10:], "policies": []string{"default", "gosling"},
		"lease_duration": 3600, "renewable": true,
	}})
}

func versionMeta(n int, v version) map[string]any {
	return map[string]any{
		"created_time": v.created.UTC().Format(time.RFC3339Nano), "custom_metadata": nil,
		"deletion_time": "", "destroyed": false, "version": n,
	}
}

func (s *Server) read(w http.ResponseWriter, r *http.Request, path string) {
	sec := s.secrets[path]
	if sec == nil {
		fail(w, http.StatusNotFound)
		return
	}
	n := len(sec.versions)
	if q := r.URL.Query().Get("version"); q != "" && q != "0" {
		var err error
		if n, err = strconv.Atoi(q); err != nil || n < 1 || n > len(sec.versions) {
			fail(w, http.StatusNotFound)
			return
		}
	}
	v := sec.versions[n-1]
	reply(w, http.StatusOK, map[string]any{"data": map[string]any{"data": v.data, "metadata": versionMeta(n, v)}})
}

func (s *Server) write(w http.ResponseWriter, path string, body map[string]any) {
	data, ok := body["data"].(map[string]any)
	if !ok {
		fail(w, http.StatusBadRequest, "no data provided")
		return
	}
	sec := s.secrets[path]
	cur := 0
	if sec != nil {
		cur = len(sec.versions)
	}
	if opts, ok := body["options"].(map[string]any); ok {
		if cas, ok := opts["cas"].(float64); ok && int(cas) != cur {
			fail(w, http.StatusBadRequest, "check-and-set parameter did not match the current version")
			return
		}
	}
	if sec == nil {
		sec = &secret{}
		s.secrets[path] = sec
	}
	v := version{data: data, created: time.Now()}
	sec.versions = append(sec.versions, v)
	reply(w, http.StatusOK, map[string]any{"data": versionMeta(len(sec.versions), v)})
}

func (s *Server) metadata(w http.ResponseWriter, path string) {
	sec := s.secrets[path]
	if sec == nil {
		fail(w, http.StatusNotFound)
		return
	}
	vs := map[string]any{}
	for i, v := range sec.versions {
		m := versionMeta(i+1, v)
		delete(m, "version")
		delete(m, "custom_metadata")
		vs[strconv.Itoa(i+1)] = m
	}
	first, last := sec.versions[0], sec.versions[len(sec.versions)-1]
	reply(w, http.StatusOK, map[string]any{"data": map[string]any{
		"cas_required": false, "created_time": first.created.UTC().Format(time.RFC3339Nano),
		"current_version": len(sec.versions), "custom_metadata": nil, "delete_version_after": "0s",
		"max_versions": 0, "oldest_version": 1, "updated_time": last.created.UTC().Format(time.RFC3339Nano),
		"versions": vs,
	}})
}
