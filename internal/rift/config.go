package rift

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/rift/mirror"
)

// EggConfig is what Rift serves one egg: its rift block with secrets
// resolved.
type EggConfig struct {
	Name string
	// Bucket is the build cache's bucket name.
	Bucket string
	// Engine is docker, podman or nerdctl.
	Engine string
	// CacheBytes bounds the egg's build cache and mirror together.
	CacheBytes int64
	// MaxAge evicts entries unused for longer.
	MaxAge time.Duration
	// AccessKey and SecretKey are the bucket's S3 credentials.
	AccessKey string
	SecretKey string
	// Mirror is the image mirror's upstream; nil: no mirror.
	Mirror *mirror.Upstream
}

// Keyring is Rift's own secret, kept in its directory, from which it
// derives the S3 credentials of eggs whose rift block names none.
type Keyring struct {
	key []byte
}

// keyFile is the keyring's file in Rift's directory.
const keyFile = "keyring"

// LoadOrCreateKeyring reads dir/keyring, or makes it (32 random bytes,
// readable by the owner only). Removing it changes every derived key.
func LoadOrCreateKeyring(dir string) (*Keyring, error) {
	p := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(p)
	if err == nil {
		if len(b) != 32 {
			return nil, fmt.Errorf("%s holds %d bytes, not 32: remove it to make a new one (every derived S3 key changes)", p, len(b))
		}
		return &Keyring{key: b}, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, err
	}
	return &Keyring{key: b}, nil
}

func (k *Keyring) mac(label string) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// S3Key derives an egg's access key ID (20 upper-case characters starting
// GR, like AWS's) and secret access key (43 characters).
func (k *Keyring) S3Key(egg string) (accessKeyID, secret string) {
	id := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(k.mac("s3-access-key-id:" + egg))
	return "GR" + id[:18], base64.RawURLEncoding.EncodeToString(k.mac("s3-secret-access-key:" + egg))
}

// EggsFromNest reads the eggs with an enabled rift block and resolves
// their secrets: S3 credentials (derived from keyring when the block names
// none) and the mirror's upstream password. Eggs without a rift block get
// nothing from Rift.
func EggsFromNest(ctx context.Context, nest *fly.Nest, res SecretResolver, keyring *Keyring) ([]EggConfig, error) {
	var out []EggConfig
	var errs []error
	buckets := map[string]string{}
	for _, e := range nest.Eggs {
		r := e.Rift
		if r == nil || !r.Enabled {
			continue
		}
		c := EggConfig{Name: e.Name, Bucket: r.Bucket, Engine: r.Engine, CacheBytes: int64(r.Cache), MaxAge: r.MaxAge.D()}
		if c.Bucket == "" {
			c.Bucket = e.Name
		}
		if prev, dup := buckets[c.Bucket]; dup {
			errs = append(errs, fmt.Errorf("eggs %s and %s both name bucket %s: set bucket = \"...\" in one rift block", prev, e.Name, c.Bucket))
			continue
		}
		buckets[c.Bucket] = e.Name
		if r.SecretKey != "" {
			ak := r.AccessKey
			if strings.Contains(ak, "://") {
				v, err := res.Resolve(ctx, fly.SecretRef(ak))
				if err != nil {
					errs = append(errs, fmt.Errorf("egg %s: read rift.access_key: %w", e.Name, err))
					continue
				}
				ak = strings.TrimSpace(v)
			}
			sk, err := res.Resolve(ctx, r.SecretKey)
			if err != nil {
				errs = append(errs, fmt.Errorf("egg %s: read rift.secret_key: %w", e.Name, err))
				continue
			}
			c.AccessKey, c.SecretKey = ak, strings.TrimSpace(sk)
		} else {
			c.AccessKey, c.SecretKey = keyring.S3Key(e.Name)
		}
		if m := r.Mirror; m != nil {
			up := &mirror.Upstream{URL: m.Upstream, Username: m.Username}
			if m.Password != "" {
				pw, err := res.Resolve(ctx, m.Password)
				if err != nil {
					errs = append(errs, fmt.Errorf("egg %s: read rift.mirror.password: %w", e.Name, err))
					continue
				}
				up.Password = pw
			}
			c.Mirror = up
		}
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}
