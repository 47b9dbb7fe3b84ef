package rift

import "github.com/gosling-ci/gosling/internal/rift/riftapi"

// The control API's paths, messages and client live in internal/rift/riftapi,
// which runners' agents use without the server; these are their names here.
const (
	PathHealth       = riftapi.PathHealth
	PathMetrics      = riftapi.PathMetrics
	PathCA           = riftapi.PathCA
	PathCertificates = riftapi.PathCertificates
	PathEggConfig    = riftapi.PathEggConfig
)

// The control API's messages and its client.
type (
	CertificateRequest  = riftapi.CertificateRequest
	CertificateResponse = riftapi.CertificateResponse
	RunnerConfig        = riftapi.RunnerConfig
	EngineSettings      = riftapi.EngineSettings
	MirrorSettings      = riftapi.MirrorSettings
	Client              = riftapi.Client
	Credentials         = riftapi.Credentials
)

// Errors a Client's calls wrap, and its constructor and health check.
var (
	ErrUnauthorized = riftapi.ErrUnauthorized
	ErrForbidden    = riftapi.ErrForbidden
	NewClient       = riftapi.NewClient
	Check           = riftapi.Check
)
