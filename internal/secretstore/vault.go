package secretstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/gosling-ci/gosling/fly"
)

// Vault authentication methods.
const (
	VaultAuthToken      = "token"
	VaultAuthAppRole    = "approle"
	VaultAuthKubernetes = "kubernetes"
)

// DefaultKubernetesJWT is where a pod's service-account token is mounted.
const DefaultKubernetesJWT = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// VaultOptions configure the Vault backend.
type VaultOptions struct {
	// Address is Vault's URL; empty means $VAULT_ADDR.
	Address string
	// Mount is the KV v2 mount (default "secret").
	Mount string
	// Auth is token (default), approle or kubernetes.
	Auth string
	// Token is used by token auth; empty means $VAULT_TOKEN.
	Token string
	// Role is the AppRole role ID or the Kubernetes auth role.
	Role string
	// SecretID is the AppRole secret ID; empty means
	// $VAULT_APPROLE_SECRET_ID, or the file SecretIDFile names.
	SecretID     string
	SecretIDFile string
	// JWTFile holds the service-account JWT for Kubernetes auth
	// (default DefaultKubernetesJWT).
	JWTFile string
	// AuthMount is where the auth method is mounted (default: its name).
	AuthMount string
	// RetryWait is the wait between retries of 429 and 5xx answers
	// (default: the client's, about a second).
	RetryWait time.Duration
}

// Vault is the vault://{path}/{key} backend over KV version 2. The path's
// first segment is the mount when it equals the configured one
// (vault://secret/ci/runner/token); any other path lives under the
// configured mount (vault://ci/runner/token). ?version= takes a KV version
// number. Writes merge the key into the latest version with check-and-set.
type Vault struct {
	client *vault.Client
	opts   VaultOptions

	mu       sync.Mutex
	loggedIn bool
}

// NewVault builds the backend; it logs in on first use.
func NewVault(o VaultOptions) (*Vault, error) {
	if o.Mount == "" {
		o.Mount = "secret"
	}
	if o.Auth == "" {
		o.Auth = VaultAuthToken
	}
	if o.AuthMount == "" {
		o.AuthMount = o.Auth
	}
	if o.JWTFile == "" {
		o.JWTFile = DefaultKubernetesJWT
	}
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault: %w", cfg.Error)
	}
	if o.Address != "" {
		cfg.Address = o.Address
	}
	if o.RetryWait > 0 {
		cfg.MinRetryWait, cfg.MaxRetryWait = o.RetryWait, o.RetryWait
	}
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	switch o.Auth {
	case VaultAuthToken:
		if o.Token != "" {
			c.SetToken(o.Token)
		}
	case VaultAuthAppRole, VaultAuthKubernetes:
		if o.Role == "" {
			return nil, fmt.Errorf("vault: %s auth needs a role", o.Auth)
		}
		c.ClearToken()
	default:
		return nil, fmt.Errorf("vault: unknown auth method %q: use token, approle or kubernetes", o.Auth)
	}
	return &Vault{client: c, opts: o}, nil
}

// Scheme implements Backend.
func (v *Vault) Scheme() string { return fly.SchemeVault }

func (v *Vault) path(u fly.SecretURI) string {
	if p, ok := strings.CutPrefix(u.Path, v.opts.Mount+"/"); ok {
		return p
	}
	return u.Path
}

func (v *Vault) kv() *vault.KVv2 { return v.client.KVv2(v.opts.Mount) }

// login gets a token for AppRole and Kubernetes auth; force renews it.
func (v *Vault) login(ctx context.Context, force bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.opts.Auth == VaultAuthToken {
		if v.client.Token() == "" {
			return fmt.Errorf("%w: no Vault token (set VAULT_TOKEN)", ErrAuth)
		}
		return nil
	}
	if v.loggedIn && !force {
		return nil
	}
	body := map[string]any{}
	switch v.opts.Auth {
	case VaultAuthAppRole:
		sid := v.opts.SecretID
		if sid == "" {
			sid = os.Getenv("VAULT_APPROLE_SECRET_ID")
		}
		if sid == "" && v.opts.SecretIDFile != "" {
			b, err := os.ReadFile(v.opts.SecretIDFile)
			if err != nil {
				return fmt.Errorf("%w: read the AppRole secret ID: %v", ErrAuth, err)
			}
			sid = strings.TrimSpace(string(b))
		}
		if sid == "" {
			return fmt.Errorf("%w: no AppRole secret ID (set VAULT_APPROLE_SECRET_ID)", ErrAuth)
		}
		body["role_id"], body["secret_id"] = v.opts.Role, sid
	case VaultAuthKubernetes:
		b, err := os.ReadFile(v.opts.JWTFile)
		if err != nil {
			return fmt.Errorf("%w: read the Kubernetes service-account token: %v", ErrAuth, err)
		}
		body["role"], body["jwt"] = v.opts.Role, strings.TrimSpace(string(b))
	}
	// The login request carries no token; other calls keep the old one.
	lc, err := v.client.Clone()
	if err != nil {
		return err
	}
	lc.ClearToken()
	s, err := lc.Logical().WriteWithContext(ctx, "auth/"+v.opts.AuthMount+"/login", body)
	if err != nil {
		var re *vault.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusTooManyRequests {
			return vaultError(err, false)
		}
		return fmt.Errorf("%w: Vault %s login as role %q: %v", ErrAuth, v.opts.Auth, v.opts.Role, vaultError(err, false))
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return fmt.Errorf("%w: Vault %s login returned no token", ErrAuth, v.opts.Auth)
	}
	v.client.SetToken(s.Auth.ClientToken)
	v.loggedIn = true
	return nil
}

// do runs op with a token, logging in again once when Vault refuses a
// token obtained by login (it may have expired).
func (v *Vault) do(ctx context.Context, op func() error) error {
	if err := v.login(ctx, false); err != nil {
		return err
	}
	err := op()
	var re *vault.ResponseError
	if v.opts.Auth != VaultAuthToken && errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
		if lerr := v.login(ctx, true); lerr != nil {
			return lerr
		}
		err = op()
	}
	return err
}

func (v *Vault) read(ctx context.Context, u fly.SecretURI) (*vault.KVSecret, error) {
	var n int
	if u.Version != "" {
		var err error
		if n, err = strconv.Atoi(u.Version); err != nil || n <= 0 {
			return nil, fmt.Errorf("%w: Vault KV versions are positive numbers", ErrVersion)
		}
	}
	var s *vault.KVSecret
	err := v.do(ctx, func() (err error) {
		if n > 0 {
			s, err = v.kv().GetVersion(ctx, v.path(u), n)
		} else {
			s, err = v.kv().Get(ctx, v.path(u))
		}
		return err
	})
	if err != nil {
		return nil, vaultError(err, n > 0)
	}
	if s.Data == nil {
		if n > 0 {
			return nil, fmt.Errorf("%w: version %d was deleted", ErrVersion, n)
		}
		return nil, fmt.Errorf("%w: its current version was deleted", ErrNotFound)
	}
	return s, nil
}

// Get implements Backend.
func (v *Vault) Get(ctx context.Context, u fly.SecretURI) (string, error) {
	s, err := v.read(ctx, u)
	if err != nil {
		return "", err
	}
	return JSONField(s.Data, u.Key)
}

// Put implements Backend.
func (v *Vault) Put(ctx context.Context, u fly.SecretURI, value string) (string, error) {
	if u.Version != "" {
		return "", fmt.Errorf("%w: a write cannot name a version", ErrReadOnlyPath)
	}
	return v.update(ctx, u, func(m map[string]any) bool { m[u.Key] = value; return true })
}

// Delete implements Backend: a new version without the key; earlier
// versions keep it.
func (v *Vault) Delete(ctx context.Context, u fly.SecretURI) error {
	_, err := v.update(ctx, u, func(m map[string]any) bool {
		_, ok := m[u.Key]
		delete(m, u.Key)
		return ok
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// update writes change's result as a new version with check-and-set,
// reading again when another writer got in first.
func (v *Vault) update(ctx context.Context, u fly.SecretURI, change func(map[string]any) bool) (string, error) {
	for range 5 {
		data, cas := map[string]any{}, 0
		s, err := v.read(ctx, u)
		switch {
		case err == nil:
			data, cas = s.Data, s.VersionMetadata.Version
		case errors.Is(err, ErrNotFound):
		default:
			return "", err
		}
		if !change(data) {
			if cas == 0 {
				return "", ErrNotFound
			}
			return strconv.Itoa(cas), nil
		}
		var out *vault.KVSecret
		err = v.do(ctx, func() (err error) {
			out, err = v.kv().Put(ctx, v.path(u), data, vault.WithCheckAndSet(cas))
			return err
		})
		var re *vault.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest && strings.Contains(strings.Join(re.Errors, " "), "check-and-set") {
			continue
		}
		if err != nil {
			return "", vaultError(err, false)
		}
		return strconv.Itoa(out.VersionMetadata.Version), nil
	}
	return "", errors.New("other writers kept changing the secret: gave up after 5 tries")
}

// ListVersions implements Versioner from the secret's metadata.
func (v *Vault) ListVersions(ctx context.Context, u fly.SecretURI) ([]Version, error) {
	var md *vault.KVMetadata
	err := v.do(ctx, func() (err error) {
		md, err = v.kv().GetMetadata(ctx, v.path(u))
		return err
	})
	if err != nil {
		return nil, vaultError(err, false)
	}
	if md == nil {
		return nil, ErrNotFound
	}
	var out []Version
	for id, m := range md.Versions {
		x := Version{ID: id, Created: m.CreatedTime, Current: id == strconv.Itoa(md.CurrentVersion)}
		if m.Destroyed {
			x.Labels = append(x.Labels, "destroyed")
		} else if !m.DeletionTime.IsZero() {
			x.Labels = append(x.Labels, "deleted")
		}
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.Atoi(out[i].ID)
		b, _ := strconv.Atoi(out[j].ID)
		return a < b
	})
	return out, nil
}

// vaultError maps Vault's answers onto this package's errors. Vault's
// error strings name paths, never values.
func vaultError(err error, pinned bool) error {
	if errors.Is(err, vault.ErrSecretNotFound) {
		if pinned {
			return ErrVersion
		}
		return ErrNotFound
	}
	var re *vault.ResponseError
	if !errors.As(err, &re) {
		return err
	}
	detail := strings.Join(re.Errors, "; ")
	if detail == "" || re.RawError {
		detail = http.StatusText(re.StatusCode)
	}
	switch re.StatusCode {
	case http.StatusNotFound:
		if pinned {
			return ErrVersion
		}
		return ErrNotFound
	case http.StatusForbidden:
		return fmt.Errorf("%w: Vault answered 403: %s", ErrPermission, detail)
	case http.StatusUnauthorized:
		return fmt.Errorf("%w: Vault answered 401: %s", ErrAuth, detail)
	case http.StatusTooManyRequests:
		return fmt.Errorf("%w: Vault answered 429: %s", ErrThrottled, detail)
	}
	return fmt.Errorf("vault answered %d: %s", re.StatusCode, detail)
}
