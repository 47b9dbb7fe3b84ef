package secretstore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gosling-ci/gosling/fly"
)

// Local is the local:// backend of the embedded development setup: an
// AES-256-GCM encrypted file. NOT FOR PRODUCTION: the key sits next to the
// data (dir/key, mode 0600) unless GOSLING_LOCAL_SECRETS_KEY (base64 of 32
// bytes) provides it, so anyone who can read the directory can read the
// secrets. It exists so that runner tokens are never written in plain text,
// even on a laptop.
type Local struct {
	dir string
	key []byte
	mu  sync.Mutex
}

// localFile is the on-disk layout: values are sealed, names are not secret.
type localFile struct {
	Secrets map[string]map[string][]localVersion `json:"secrets"` // path -> key -> versions (oldest first)
}

type localVersion struct {
	Version string    `json:"version"`
	Created time.Time `json:"created"`
	Nonce   string    `json:"nonce"`
	Sealed  string    `json:"sealed"`
}

// LocalKeyEnv names the environment variable that may hold the local key.
const LocalKeyEnv = "GOSLING_LOCAL_SECRETS_KEY"

// OpenLocal opens the local backend in dir. Nothing is created until the
// first write: a process that configures it but never stores a local://
// secret (a Lockbox-only Nest's server) leaves no directory and no key
// behind. A key in $GOSLING_LOCAL_SECRETS_KEY is checked here.
func OpenLocal(dir string) (*Local, error) {
	if s := os.Getenv(LocalKeyEnv); s != "" {
		if _, err := localKey(dir); err != nil {
			return nil, err
		}
	}
	return &Local{dir: dir}, nil
}

// ready loads the key, making the directory and the key first when create
// is set; without create, a backend that holds nothing yet is errEmpty.
// Callers hold l.mu.
func (l *Local) ready(create bool) error {
	if l.key != nil {
		return nil
	}
	if !create {
		if _, err := os.Stat(filepath.Join(l.dir, "secrets.json")); errors.Is(err, fs.ErrNotExist) {
			return errEmpty
		}
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return fmt.Errorf("local secrets: %w", err)
	}
	key, err := localKey(l.dir)
	if err != nil {
		return err
	}
	l.key = key
	return nil
}

// errEmpty says the local backend has stored nothing yet.
var errEmpty = errors.New("local secrets: nothing stored yet")

func localKey(dir string) ([]byte, error) {
	if s := os.Getenv(LocalKeyEnv); s != "" {
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("local secrets: %s must be the base64 of 32 bytes", LocalKeyEnv)
		}
		return k, nil
	}
	path := filepath.Join(dir, "key")
	if b, err := os.ReadFile(path); err == nil {
		k, err := hex.DecodeString(string(b))
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("local secrets: %s is not a 32-byte hex key", path)
		}
		return k, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("local secrets: %w", err)
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	// Write it aside, then link it into place: a reader never sees a
	// half-written key, and of two processes racing only one key wins.
	f, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return nil, fmt.Errorf("local secrets: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(hex.EncodeToString(k)); err != nil {
		f.Close()
		return nil, fmt.Errorf("local secrets: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("local secrets: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("local secrets: %w", err)
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return localKey(dir) // another process made it first
	} else if err != nil {
		return nil, fmt.Errorf("local secrets: %w", err)
	}
	return k, nil
}

// Scheme implements Backend.
func (l *Local) Scheme() string { return fly.SchemeLocal }

// Dir is the backend's directory.
func (l *Local) Dir() string { return l.dir }

func (l *Local) aead() (cipher.AEAD, error) {
	b, err := aes.NewCipher(l.key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// withFile runs fn with the file loaded under an exclusive lock shared by
// every process using dir; when write is set, fn's changes are saved atomically.
func (l *Local) withFile(write bool, fn func(*localFile) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ready(write); errors.Is(err, errEmpty) {
		return fn(&localFile{Secrets: map[string]map[string][]localVersion{}})
	} else if err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(l.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	how := syscall.LOCK_SH
	if write {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(lock.Fd()), how); err != nil {
		return err
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	path := filepath.Join(l.dir, "secrets.json")
	lf := &localFile{Secrets: map[string]map[string][]localVersion{}}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, lf); err != nil {
			return fmt.Errorf("%s is corrupt: %w", path, err)
		}
		if lf.Secrets == nil {
			lf.Secrets = map[string]map[string][]localVersion{}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := fn(lf); err != nil {
		return err
	}
	if !write {
		return nil
	}
	b, err := json.MarshalIndent(lf, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func aad(u fly.SecretURI, version string) []byte {
	return []byte(u.Path + "/" + u.Key + "#" + version)
}

// Get implements Backend.
func (l *Local) Get(_ context.Context, u fly.SecretURI) (string, error) {
	var out string
	err := l.withFile(false, func(lf *localFile) error {
		keys, ok := lf.Secrets[u.Path]
		if !ok {
			return ErrNotFound
		}
		versions, ok := keys[u.Key]
		if !ok || len(versions) == 0 {
			return ErrKeyNotFound
		}
		v := versions[len(versions)-1]
		if u.Version != "" {
			found := false
			for _, x := range versions {
				if x.Version == u.Version {
					v, found = x, true
				}
			}
			if !found {
				return fmt.Errorf("%w: %s", ErrVersion, u.Version)
			}
		}
		a, err := l.aead()
		if err != nil {
			return err
		}
		nonce, err1 := base64.StdEncoding.DecodeString(v.Nonce)
		sealed, err2 := base64.StdEncoding.DecodeString(v.Sealed)
		if err1 != nil || err2 != nil {
			return errors.New("stored value is corrupt")
		}
		plain, err := a.Open(nil, nonce, sealed, aad(u, v.Version))
		if err != nil {
			return errors.New("cannot decrypt the stored value: wrong key")
		}
		out = string(plain)
		return nil
	})
	return out, err
}

// Put implements Backend; versions count up from 1.
func (l *Local) Put(_ context.Context, u fly.SecretURI, value string) (string, error) {
	if u.Version != "" {
		return "", fmt.Errorf("%w: a write cannot name a version", ErrReadOnlyPath)
	}
	var version string
	err := l.withFile(true, func(lf *localFile) error {
		keys := lf.Secrets[u.Path]
		if keys == nil {
			keys = map[string][]localVersion{}
			lf.Secrets[u.Path] = keys
		}
		version = strconv.Itoa(len(keys[u.Key]) + 1)
		if n := len(keys[u.Key]); n > 0 {
			last, _ := strconv.Atoi(keys[u.Key][n-1].Version)
			version = strconv.Itoa(last + 1)
		}
		a, err := l.aead()
		if err != nil {
			return err
		}
		nonce := make([]byte, a.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return err
		}
		sealed := a.Seal(nil, nonce, []byte(value), aad(u, version))
		keys[u.Key] = append(keys[u.Key], localVersion{
			Version: version, Created: time.Now().UTC(),
			Nonce: base64.StdEncoding.EncodeToString(nonce), Sealed: base64.StdEncoding.EncodeToString(sealed),
		})
		return nil
	})
	return version, err
}

// Delete implements Backend.
func (l *Local) Delete(_ context.Context, u fly.SecretURI) error {
	return l.withFile(true, func(lf *localFile) error {
		keys := lf.Secrets[u.Path]
		delete(keys, u.Key)
		if len(keys) == 0 {
			delete(lf.Secrets, u.Path)
		}
		return nil
	})
}

// Versions lists the versions of u's key, oldest first.
func (l *Local) Versions(_ context.Context, u fly.SecretURI) ([]string, error) {
	var out []string
	err := l.withFile(false, func(lf *localFile) error {
		versions, ok := lf.Secrets[u.Path][u.Key]
		if !ok {
			return ErrNotFound
		}
		for _, v := range versions {
			out = append(out, v.Version)
		}
		return nil
	})
	return out, err
}

// ListVersions implements Versioner.
func (l *Local) ListVersions(_ context.Context, u fly.SecretURI) ([]Version, error) {
	var out []Version
	err := l.withFile(false, func(lf *localFile) error {
		keys, ok := lf.Secrets[u.Path]
		if !ok {
			return ErrNotFound
		}
		versions, ok := keys[u.Key]
		if !ok {
			return ErrKeyNotFound
		}
		for i, v := range versions {
			out = append(out, Version{ID: v.Version, Created: v.Created, Current: i == len(versions)-1})
		}
		return nil
	})
	return out, err
}
