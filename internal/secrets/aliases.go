package secrets

import "github.com/gosling-ci/gosling/internal/secretstore"

// The SDK-free core of package secrets lives in internal/secretstore, which
// runner machines' agents use without any cloud SDK; these are its names
// here, for the servers, beside the SDK backends.

// Errors a backend returns (wrapped); test them with errors.Is.
var (
	ErrNotFound     = secretstore.ErrNotFound
	ErrKeyNotFound  = secretstore.ErrKeyNotFound
	ErrVersion      = secretstore.ErrVersion
	ErrPermission   = secretstore.ErrPermission
	ErrNoBackend    = secretstore.ErrNoBackend
	ErrReadOnlyPath = secretstore.ErrReadOnlyPath
	ErrThrottled    = secretstore.ErrThrottled
	ErrAuth         = secretstore.ErrAuth
	ErrNoVersions   = secretstore.ErrNoVersions
)

// Access results (AccessEvent.Result), masking and defaults.
const (
	ResultOK        = secretstore.ResultOK
	ResultNotFound  = secretstore.ResultNotFound
	ResultDenied    = secretstore.ResultDenied
	ResultAuth      = secretstore.ResultAuth
	ResultThrottled = secretstore.ResultThrottled
	ResultCanceled  = secretstore.ResultCanceled
	ResultError     = secretstore.ResultError
	DefaultTTL      = secretstore.DefaultTTL
	LocalKeyEnv     = secretstore.LocalKeyEnv
	Masked          = secretstore.Masked
	MinMaskedLen    = secretstore.MinMaskedLen

	VaultAuthToken       = secretstore.VaultAuthToken
	VaultAuthAppRole     = secretstore.VaultAuthAppRole
	VaultAuthKubernetes  = secretstore.VaultAuthKubernetes
	DefaultKubernetesJWT = secretstore.DefaultKubernetesJWT
)

// Types of the core.
type (
	AccessEvent        = secretstore.AccessEvent
	AccessObserver     = secretstore.AccessObserver
	AccessObserverFunc = secretstore.AccessObserverFunc
	Backend            = secretstore.Backend
	Error              = secretstore.Error
	Local              = secretstore.Local
	Masker             = secretstore.Masker
	Resolver           = secretstore.Resolver
	Version            = secretstore.Version
	Versioner          = secretstore.Versioner
	Writer             = secretstore.Writer
	Vault              = secretstore.Vault
	VaultOptions       = secretstore.VaultOptions
)

// Functions of the core.
var (
	ActorFrom   = secretstore.ActorFrom
	DevBackends = secretstore.DevBackends
	NewHandler  = secretstore.NewHandler
	NewMasker   = secretstore.NewMasker
	NewResolver = secretstore.NewResolver
	NewWriter   = secretstore.NewWriter
	NewVault    = secretstore.NewVault
	OpenLocal   = secretstore.OpenLocal
	WithActor   = secretstore.WithActor
)
