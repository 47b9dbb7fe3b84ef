package secretstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/fly"
)

// A runner machine reads its secrets as itself, with its egg's runner
// identity: on Yandex Cloud the IAM token of the instance's (or the
// container's) service account from the metadata service, on AWS the
// instance profile's keys from IMDSv2, an ECS task role's from the
// container credentials endpoint, or a Lambda function's from its
// environment. These backends call the clouds' HTTPS APIs with those
// credentials directly, read-only, so the agent carries no cloud SDK.

// Environment variables the machine backends read.
const (
	// EnvYCIAMToken is a fixed Yandex Cloud IAM token.
	EnvYCIAMToken = "YC_IAM_TOKEN"
	// EnvYCMetadataAddr is the metadata service's host:port
	// (169.254.169.254), as Yandex's SDKs name it.
	EnvYCMetadataAddr = "YC_METADATA_ADDR"
	// EnvLockboxAPI and EnvLockboxPayloadAPI replace Lockbox's REST
	// endpoints (https://lockbox.api.cloud.yandex.net and
	// https://payload.lockbox.api.cloud.yandex.net).
	EnvLockboxAPI        = "GOSLING_LOCKBOX_API"
	EnvLockboxPayloadAPI = "GOSLING_LOCKBOX_PAYLOAD_API"
	// AWS's standard variables: keys (Lambda sets them), the ECS
	// container credentials endpoint, IMDS, the region and endpoints.
	envAWSAccessKey       = "AWS_ACCESS_KEY_ID"
	envAWSSecretKey       = "AWS_SECRET_ACCESS_KEY"
	envAWSSessionToken    = "AWS_SESSION_TOKEN"
	envAWSContainerRelURI = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
	envAWSContainerURI    = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	envAWSContainerAuth   = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
	envAWSIMDSEndpoint    = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
	envAWSRegion          = "AWS_REGION"
	envAWSDefaultRegion   = "AWS_DEFAULT_REGION"
	envAWSEndpoint        = "AWS_ENDPOINT_URL"
	envAWSSMEndpoint      = "AWS_ENDPOINT_URL_SECRETS_MANAGER"
)

// MachineOptions say how a runner machine reaches its secret backends.
type MachineOptions struct {
	// Getenv reads the environment (default os.LookupEnv).
	Getenv func(string) (string, bool)
	// HTTP sends every request (default: a client with a 30-second
	// timeout).
	HTTP *http.Client
	// LocalDir, when set, serves local:// from that directory.
	LocalDir string
	// Masker, when set, is shared with the resolver.
	Masker *Masker
}

// OpenMachine returns a resolver over the backends cfg (MG/config.fly's
// secrets block, as the agent's configuration carries it) names, as a
// runner machine reads them: yc-lockbox and aws-sm over their REST APIs
// with the machine's identity, vault with the block's auth, local from
// LocalDir or the block's path. Nothing is contacted until the first
// lookup. The backends only read: a machine writes no secret.
func OpenMachine(cfg fly.Secrets, o MachineOptions) (*Resolver, error) {
	if o.Getenv == nil {
		o.Getenv = os.LookupEnv
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	env := func(k string) string { v, _ := o.Getenv(k); return v }
	r, err := NewBaseResolver(cfg, o.LocalDir, o.Masker, env)
	if err != nil {
		return nil, err
	}
	region := cfg.Backends[fly.SchemeAWSSM].Region
	if region == "" {
		region = firstNonEmpty(env(envAWSRegion), env(envAWSDefaultRegion))
	}
	r.Register(&machineSecretsManager{hc: o.HTTP, getenv: o.Getenv, region: region,
		endpoint: firstNonEmpty(env(envAWSSMEndpoint), env(envAWSEndpoint)), creds: &awsCredentialChain{hc: o.HTTP, getenv: o.Getenv}})
	r.Register(&machineLockbox{hc: o.HTTP,
		api:     strings.TrimSuffix(firstNonEmpty(env(EnvLockboxAPI), "https://lockbox.api.cloud.yandex.net"), "/"),
		payload: strings.TrimSuffix(firstNonEmpty(env(EnvLockboxPayloadAPI), "https://payload.lockbox.api.cloud.yandex.net"), "/"),
		token:   &yandexMetadataToken{hc: o.HTTP, fixed: env(EnvYCIAMToken), addr: firstNonEmpty(env(EnvYCMetadataAddr), "169.254.169.254")}})
	return r, nil
}

// NewBaseResolver is what every process's resolver starts with, whatever
// reaches its clouds: cfg's cache TTLs, the shared masker (nil: its own),
// local:// from localDir (else cfg's local block's path, when it has one),
// and vault:// when cfg has a vault block or $VAULT_ADDR is set (its token
// from $VAULT_TOKEN). env reads the environment.
func NewBaseResolver(cfg fly.Secrets, localDir string, masker *Masker, env func(string) string) (*Resolver, error) {
	r := NewResolver()
	if masker != nil {
		r.SetMasker(masker)
	}
	r.Configure(cfg)
	if b, ok := cfg.Backends[fly.SchemeLocal]; ok && localDir == "" {
		localDir = b.Path
	}
	if localDir != "" {
		l, err := OpenLocal(localDir)
		if err != nil {
			return nil, err
		}
		r.Register(l)
	}
	vc, ok := cfg.Backends[fly.SchemeVault]
	if addr := firstNonEmpty(vc.Address, env(EnvVaultAddr)); ok || addr != "" {
		v, err := NewVault(VaultOptions{Address: addr, Mount: vc.Mount, Auth: vc.Auth, Role: vc.Role, Token: env(EnvVaultToken)})
		if err != nil {
			return nil, err
		}
		r.Register(v)
	}
	return r, nil
}

// Vault's variables NewBaseResolver reads.
const (
	EnvVaultAddr  = "VAULT_ADDR"
	EnvVaultToken = "VAULT_TOKEN"
)

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// errReadOnly is what the machine backends answer to writes.
func errReadOnly(scheme string) error {
	return fmt.Errorf("%w: a runner machine reads %s secrets, it writes none", ErrReadOnlyPath, scheme)
}

// httpError maps an API's HTTP status onto this package's errors; the
// body (an API error, never a secret) says more.
func httpError(status int, body []byte, pinned bool) error {
	detail := strings.TrimSpace(string(body))
	if len(detail) > 300 {
		detail = detail[:300]
	}
	var kind error
	switch {
	case status == http.StatusNotFound && pinned:
		kind = fmt.Errorf("%w (or the secret does not exist)", ErrVersion)
	case status == http.StatusNotFound:
		kind = ErrNotFound
	case status == http.StatusForbidden:
		kind = ErrPermission
	case status == http.StatusUnauthorized:
		kind = ErrAuth
	case status == http.StatusTooManyRequests:
		kind = ErrThrottled
	default:
		return fmt.Errorf("the API answered %d: %s", status, detail)
	}
	return fmt.Errorf("%w: %s", kind, detail)
}

// ---- Yandex Cloud: Lockbox over REST with the metadata service's token ----

// yandexMetadataToken hands out the IAM token of the machine's service
// account from the metadata service
// (http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token,
// Metadata-Flavor: Google), reused until shortly before it expires, or a
// fixed token.
type yandexMetadataToken struct {
	hc    *http.Client
	fixed string
	addr  string

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

func (t *yandexMetadataToken) get(ctx context.Context) (string, error) {
	if t.fixed != "" {
		return t.fixed, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && time.Now().Before(t.renewAt) {
		return t.token, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.addr+"/computeMetadata/v1/instance/service-accounts/default/token", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := t.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: the metadata service at %s: %v (is the machine given a service account?)", ErrAuth, t.addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%w: the metadata service answered %d for the service account's token", ErrAuth, resp.StatusCode)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(b, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("%w: the metadata service's token answer holds no access_token", ErrAuth)
	}
	life := time.Duration(tok.ExpiresIn) * time.Second
	t.token, t.renewAt = tok.AccessToken, time.Now().Add(min(life-5*time.Minute, time.Hour))
	return t.token, nil
}

// machineLockbox is yc-lockbox:// over Lockbox's REST API
// (https://yandex.cloud/en/docs/lockbox/api-ref/): payloads from
// GET payload.lockbox.api.cloud.yandex.net/lockbox/v1/secrets/{id}/payload,
// versions from lockbox.api.cloud.yandex.net.
type machineLockbox struct {
	hc           *http.Client
	api, payload string
	token        *yandexMetadataToken
}

// Scheme implements Backend.
func (l *machineLockbox) Scheme() string { return fly.SchemeLockbox }

func (l *machineLockbox) get(ctx context.Context, u string, out any, pinned bool) error {
	tok, err := l.token.get(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := l.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		return httpError(resp.StatusCode, b, pinned)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("lockbox's answer is not JSON: %w", err)
	}
	return nil
}

// Get implements Backend.
func (l *machineLockbox) Get(ctx context.Context, u fly.SecretURI) (string, error) {
	q := ""
	if u.Version != "" {
		q = "?versionId=" + url.QueryEscape(u.Version)
	}
	var p struct {
		VersionID string `json:"versionId"`
		Entries   []struct {
			Key         string  `json:"key"`
			TextValue   *string `json:"textValue"`
			BinaryValue *string `json:"binaryValue"`
		} `json:"entries"`
	}
	if err := l.get(ctx, l.payload+"/lockbox/v1/secrets/"+url.PathEscape(u.Path)+"/payload"+q, &p, u.Version != ""); err != nil {
		return "", err
	}
	for _, e := range p.Entries {
		if e.Key != u.Key {
			continue
		}
		v := ""
		switch {
		case e.BinaryValue != nil:
			b, err := base64.StdEncoding.DecodeString(*e.BinaryValue)
			if err != nil {
				return "", fmt.Errorf("%w: the entry's binary value is not base64", ErrKeyNotFound)
			}
			v = string(b)
		case e.TextValue != nil:
			v = *e.TextValue
		}
		if v == "" {
			return "", fmt.Errorf("%w (deleted in version %s)", ErrKeyNotFound, p.VersionID)
		}
		return v, nil
	}
	return "", ErrKeyNotFound
}

// Put implements Backend: machines write nothing.
func (l *machineLockbox) Put(context.Context, fly.SecretURI, string) (string, error) {
	return "", errReadOnly(fly.SchemeLockbox)
}

// Delete implements Backend: machines delete nothing.
func (l *machineLockbox) Delete(context.Context, fly.SecretURI) error {
	return errReadOnly(fly.SchemeLockbox)
}

// ListVersions implements Versioner (it needs lockbox.viewer on the
// secret, which runner identities do not hold: the agent then reads the
// current value unpinned).
func (l *machineLockbox) ListVersions(ctx context.Context, u fly.SecretURI) ([]Version, error) {
	var sec struct {
		CurrentVersion struct {
			ID string `json:"id"`
		} `json:"currentVersion"`
	}
	base := l.api + "/lockbox/v1/secrets/" + url.PathEscape(u.Path)
	if err := l.get(ctx, base, &sec, false); err != nil {
		return nil, err
	}
	var out []Version
	token := ""
	for {
		var page struct {
			Versions []struct {
				ID        string    `json:"id"`
				CreatedAt time.Time `json:"createdAt"`
				Status    string    `json:"status"`
			} `json:"versions"`
			NextPageToken string `json:"nextPageToken"`
		}
		q := "?pageSize=100"
		if token != "" {
			q += "&pageToken=" + url.QueryEscape(token)
		}
		if err := l.get(ctx, base+"/versions"+q, &page, false); err != nil {
			return nil, err
		}
		for _, v := range page.Versions {
			x := Version{ID: v.ID, Created: v.CreatedAt, Current: v.ID == sec.CurrentVersion.ID}
			if v.Status != "" && v.Status != "ACTIVE" {
				x.Labels = []string{v.Status}
			}
			out = append(out, x)
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	slices.SortStableFunc(out, func(a, b Version) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// ---- AWS: Secrets Manager over its JSON API, SigV4-signed ----

// awsCredentialChain finds the machine's AWS keys as the SDKs' default
// chain does, in order: the environment (a Lambda function's), the ECS
// container credentials endpoint (a task role's), IMDSv2 (an instance
// profile's). Temporary keys are reused until five minutes before they
// expire.
type awsCredentialChain struct {
	hc     *http.Client
	getenv func(string) (string, bool)

	mu     sync.Mutex
	cached awsCredentials
}

func (c *awsCredentialChain) env(k string) string { v, _ := c.getenv(k); return v }

func (c *awsCredentialChain) get(ctx context.Context) (awsCredentials, error) {
	if id, key := c.env(envAWSAccessKey), c.env(envAWSSecretKey); id != "" && key != "" {
		return awsCredentials{AccessKeyID: id, SecretAccessKey: key, SessionToken: c.env(envAWSSessionToken)}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached.AccessKeyID != "" && (c.cached.Expires.IsZero() || time.Until(c.cached.Expires) > 5*time.Minute) {
		return c.cached, nil
	}
	var creds awsCredentials
	var err error
	if rel, full := c.env(envAWSContainerRelURI), c.env(envAWSContainerURI); rel != "" || full != "" {
		u := full
		if rel != "" {
			u = "http://169.254.170.2" + rel
		}
		creds, err = c.fetch(ctx, u, map[string]string{"Authorization": c.env(envAWSContainerAuth)})
	} else {
		creds, err = c.imds(ctx)
	}
	if err != nil {
		return awsCredentials{}, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	c.cached = creds
	return creds, nil
}

// fetch reads keys in the container and instance credentials' JSON shape.
func (c *awsCredentialChain) fetch(ctx context.Context, u string, headers map[string]string) (awsCredentials, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return awsCredentials{}, err
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return awsCredentials{}, fmt.Errorf("credentials from %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return awsCredentials{}, fmt.Errorf("credentials from %s: %d", u, resp.StatusCode)
	}
	var k struct {
		AccessKeyID     string    `json:"AccessKeyId"`
		SecretAccessKey string    `json:"SecretAccessKey"`
		Token           string    `json:"Token"`
		Expiration      time.Time `json:"Expiration"`
	}
	if err := json.Unmarshal(b, &k); err != nil || k.AccessKeyID == "" {
		return awsCredentials{}, fmt.Errorf("credentials from %s: no AccessKeyId in the answer", u)
	}
	return awsCredentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey, SessionToken: k.Token, Expires: k.Expiration}, nil
}

// imds reads the instance profile's keys with IMDSv2: a session token
// (PUT /latest/api/token), the role's name, then its keys.
func (c *awsCredentialChain) imds(ctx context.Context) (awsCredentials, error) {
	base := strings.TrimSuffix(firstNonEmpty(c.env(envAWSIMDSEndpoint), "http://169.254.169.254"), "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/latest/api/token", nil)
	if err != nil {
		return awsCredentials{}, err
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	resp, err := c.hc.Do(req)
	if err != nil {
		return awsCredentials{}, fmt.Errorf("IMDS at %s: %w (no keys in the environment, no container credentials, no instance metadata)", base, err)
	}
	tok, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return awsCredentials{}, fmt.Errorf("IMDS session token: %d", resp.StatusCode)
	}
	h := map[string]string{"X-aws-ec2-metadata-token": string(tok)}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, base+"/latest/meta-data/iam/security-credentials/", nil)
	req.Header.Set("X-aws-ec2-metadata-token", string(tok))
	resp, err = c.hc.Do(req)
	if err != nil {
		return awsCredentials{}, err
	}
	names, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	role := strings.TrimSpace(strings.SplitN(string(names), "\n", 2)[0])
	if resp.StatusCode != http.StatusOK || role == "" {
		return awsCredentials{}, fmt.Errorf("the instance has no instance profile (IMDS answered %d)", resp.StatusCode)
	}
	return c.fetch(ctx, base+"/latest/meta-data/iam/security-credentials/"+role, h)
}

// machineSecretsManager is aws-sm:// over Secrets Manager's JSON API
// (awsJson1_1: POST / with X-Amz-Target secretsmanager.<Operation>).
type machineSecretsManager struct {
	hc       *http.Client
	getenv   func(string) (string, bool)
	region   string
	endpoint string
	creds    *awsCredentialChain
}

// Scheme implements Backend.
func (s *machineSecretsManager) Scheme() string { return fly.SchemeAWSSM }

// call sends one operation and decodes its answer; AWS's error codes map
// as the SDK backend maps them.
func (s *machineSecretsManager) call(ctx context.Context, op string, in, out any, pinned bool) error {
	if s.region == "" {
		return fmt.Errorf("%w: no AWS region: set region in the aws_sm block or $AWS_REGION", ErrAuth)
	}
	creds, err := s.creds.get(ctx)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(in)
	u := firstNonEmpty(s.endpoint, "https://secretsmanager."+s.region+".amazonaws.com")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(u, "/")+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "secretsmanager."+op)
	if err := signV4(req, creds, "secretsmanager", s.region, time.Now()); err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
			Msg     string `json:"Message"`
		}
		_ = json.Unmarshal(b, &e)
		code := e.Type[strings.LastIndexByte(e.Type, '#')+1:]
		msg := firstNonEmpty(e.Message, e.Msg)
		var kind error
		switch {
		case code == "ResourceNotFoundException" && pinned:
			kind = fmt.Errorf("%w (or the secret does not exist)", ErrVersion)
		case code == "ResourceNotFoundException":
			kind = ErrNotFound
		case code == "AccessDeniedException" || code == "DecryptionFailure":
			kind = ErrPermission
		case code == "UnrecognizedClientException" || code == "InvalidSignatureException" || code == "ExpiredTokenException" || code == "InvalidClientTokenId":
			kind = ErrAuth
		case strings.Contains(code, "Throttl") || code == "TooManyRequestsException":
			kind = ErrThrottled
		default:
			return httpError(resp.StatusCode, b, pinned)
		}
		return fmt.Errorf("%w: %s: %s", kind, code, msg)
	}
	return json.Unmarshal(b, out)
}

// Get implements Backend: the key of the secret's JSON object.
func (s *machineSecretsManager) Get(ctx context.Context, u fly.SecretURI) (string, error) {
	in := map[string]string{"SecretId": u.Path}
	if v := u.Version; v != "" {
		if len(v) >= 32 {
			in["VersionId"] = v
		} else {
			in["VersionStage"] = v
		}
	}
	var out struct {
		SecretString *string `json:"SecretString"`
	}
	if err := s.call(ctx, "GetSecretValue", in, &out, u.Version != ""); err != nil {
		return "", err
	}
	if out.SecretString == nil {
		return "", fmt.Errorf("%w: the secret holds binary data, not a JSON object", ErrKeyNotFound)
	}
	var m map[string]any
	if json.Unmarshal([]byte(*out.SecretString), &m) != nil || m == nil {
		return "", fmt.Errorf("%w: the secret's value is not a JSON object", ErrKeyNotFound)
	}
	return JSONField(m, u.Key)
}

// Put implements Backend: machines write nothing.
func (s *machineSecretsManager) Put(context.Context, fly.SecretURI, string) (string, error) {
	return "", errReadOnly(fly.SchemeAWSSM)
}

// Delete implements Backend: machines delete nothing.
func (s *machineSecretsManager) Delete(context.Context, fly.SecretURI) error {
	return errReadOnly(fly.SchemeAWSSM)
}

// ListVersions implements Versioner with ListSecretVersionIds (which
// runner roles may not call: the agent then reads the current value).
func (s *machineSecretsManager) ListVersions(ctx context.Context, u fly.SecretURI) ([]Version, error) {
	var out []Version
	token := ""
	for {
		in := map[string]any{"SecretId": u.Path, "IncludeDeprecated": true}
		if token != "" {
			in["NextToken"] = token
		}
		var page struct {
			Versions []struct {
				VersionID     string   `json:"VersionId"`
				VersionStages []string `json:"VersionStages"`
				CreatedDate   float64  `json:"CreatedDate"`
			} `json:"Versions"`
			NextToken string `json:"NextToken"`
		}
		if err := s.call(ctx, "ListSecretVersionIds", in, &page, false); err != nil {
			return nil, err
		}
		for _, v := range page.Versions {
			sec := int64(v.CreatedDate)
			out = append(out, Version{ID: v.VersionID, Created: time.Unix(sec, int64((v.CreatedDate-float64(sec))*1e9)).UTC(),
				Current: slices.Contains(v.VersionStages, "AWSCURRENT"), Labels: v.VersionStages})
		}
		if token = page.NextToken; token == "" {
			break
		}
	}
	slices.SortStableFunc(out, func(x, y Version) int { return x.Created.Compare(y.Created) })
	return out, nil
}
