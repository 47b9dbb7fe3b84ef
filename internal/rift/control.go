package rift

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gosling-ci/gosling/internal/rift/engine"
	"github.com/gosling-ci/gosling/internal/rift/pki"
	"github.com/gosling-ci/gosling/internal/rift/riftapi"
	"github.com/gosling-ci/gosling/internal/rift/s3"
)

type apiError struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ControlHandler serves the control API:
//
//	GET  /healthz                      200 {"status":"ok","eggs":N}
//	GET  /metrics                      Prometheus exposition
//	GET  /rift/v1/ca                   Rift's CA certificate (PEM)
//	POST /rift/v1/certificates         a client certificate for the token's runner
//	GET  /rift/v1/eggs/{egg}/config    the runner's riftapi.RunnerConfig
//
// The last two need Authorization: Bearer <runner token>: 401 for no token
// or one of no live runner (unknown, or its runner destroyed), 403 for a
// runner of another egg or of an egg without a rift block.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+riftapi.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "eggs": len(s.eggs)})
	})
	mux.Handle("GET "+riftapi.PathMetrics, s.metrics.Handler())
	mux.HandleFunc("GET "+riftapi.PathCA, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.ca.CertPEM())
	})
	mux.HandleFunc("POST "+riftapi.PathCertificates, s.issueCertificate)
	mux.HandleFunc("GET "+riftapi.PathEggConfig+"{egg}/config", s.eggConfig)
	return mux
}

// runner authenticates a request's bearer token; on failure it has
// answered.
func (s *Server) runner(w http.ResponseWriter, r *http.Request) (Runner, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gosling-rift"`)
		writeJSON(w, http.StatusUnauthorized, apiError{Error: "unauthorized", Detail: "send the runner's token: Authorization: Bearer <token>"})
		return Runner{}, false
	}
	run, err := s.cfg.Auth.Authenticate(r.Context(), token)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="gosling-rift", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, apiError{Error: "unauthorized", Detail: "not the token of a live runner"})
		return Runner{}, false
	case err != nil:
		s.log.ErrorContext(r.Context(), "rift: cannot check a runner token", "error", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "unavailable", Detail: "Rift cannot check runner tokens right now; try again"})
		return Runner{}, false
	}
	if _, served := s.eggs[run.Egg]; !served {
		writeJSON(w, http.StatusForbidden, apiError{Error: "forbidden", Detail: "egg " + run.Egg + " has no enabled rift block"})
		return Runner{}, false
	}
	return run, true
}

func (s *Server) issueCertificate(w http.ResponseWriter, r *http.Request) {
	run, ok := s.runner(w, r)
	if !ok {
		return
	}
	var req riftapi.CertificateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.CSR == "" {
		s.metrics.certificate(run.Egg, "refused")
		writeJSON(w, http.StatusBadRequest, apiError{Error: "bad request", Detail: `send {"csr": "<PEM certificate request>"}`})
		return
	}
	certPEM, err := s.ca.IssueClient([]byte(req.CSR), pki.Identity{RunnerID: run.ID, Egg: run.Egg}, s.cfg.CertLifetime)
	if err != nil {
		s.metrics.certificate(run.Egg, "refused")
		writeJSON(w, http.StatusBadRequest, apiError{Error: "bad request", Detail: err.Error()})
		return
	}
	s.metrics.certificate(run.Egg, "issued")
	s.log.InfoContext(r.Context(), "rift: issued a client certificate", "runner", run.ID, "egg", run.Egg, "lifetime", s.cfg.CertLifetime.String())
	writeJSON(w, http.StatusCreated, riftapi.CertificateResponse{
		Certificate: string(certPEM), CA: string(s.ca.CertPEM()),
		RunnerID: run.ID, Egg: run.Egg, ExpiresAt: s.cfg.Clock.Now().Add(s.cfg.CertLifetime).UTC(),
	})
}

func (s *Server) eggConfig(w http.ResponseWriter, r *http.Request) {
	run, ok := s.runner(w, r)
	if !ok {
		return
	}
	egg := r.PathValue("egg")
	if egg != run.Egg {
		writeJSON(w, http.StatusForbidden, apiError{Error: "forbidden", Detail: "this token's runner belongs to egg " + run.Egg + ", not " + egg})
		return
	}
	e := s.eggs[egg]
	out := riftapi.RunnerConfig{Egg: egg, RunnerID: run.ID}
	if addr := s.address("s3"); addr != "" {
		out.Cache = &s3.Settings{ServerAddress: addr, AccessKey: e.cfg.AccessKey, SecretKey: e.cfg.SecretKey,
			BucketName: e.cfg.Bucket, BucketLocation: s3.DefaultLocation, Insecure: s.cfg.S3Insecure}
	}
	if _, has := s.cfg.Engines[e.cfg.Engine]; has {
		if addr := s.address("engine"); addr != "" {
			proto := "docker"
			if e.cfg.Engine == engine.Nerdctl {
				proto = "containerd"
			}
			out.Engine = &riftapi.EngineSettings{Kind: e.cfg.Engine, Address: addr, Protocol: proto}
		}
	}
	if addr := s.address("mirror"); addr != "" && s.mirror.Has(egg) {
		out.Mirror = &riftapi.MirrorSettings{URL: "https://" + addr}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}
