// Package mirror is Rift's image cache: a pull-through mirror of a
// container registry per egg, speaking the Docker Registry HTTP API v2. It
// is CNCF Distribution's registry (github.com/distribution/distribution/v3)
// used as a library in proxy mode (registry/handlers.NewApp with
// Proxy.RemoteURL set), storing on the filesystem under Rift's directory.
//
// Each egg gets its own registry and storage, so one egg's upstream
// credentials never serve another egg's runners. The mirror is read-only
// (pulls). Distribution's own expiry (proxy.ttl) is off: Rift's space books
// evict blobs by the egg's max_age and cache size, least recently used
// first; a blob evicted is fetched from the upstream again at its next pull.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the filesystem storage driver
	"github.com/gosling-ci/gosling/internal/rift/space"
	"github.com/sirupsen/logrus"
)

// Upstream is the registry an egg's mirror pulls from.
type Upstream struct {
	// URL is the registry's base URL, such as https://registry-1.docker.io.
	URL string
	// Username and Password log in to the upstream (both empty: anonymous).
	Username string
	Password string
}

// Egg is one egg's mirror.
type Egg struct {
	Name     string
	Dir      string
	Upstream Upstream
	Space    *space.Space
}

// Mirror serves every egg's mirror.
type Mirror struct {
	eggs map[string]*eggMirror
	log  *slog.Logger
}

type eggMirror struct {
	name  string
	root  string
	app   *handlers.App
	space *space.Space
}

var logOnce sync.Once

// RouteLogs sends Distribution's logs (logrus's standard logger, which the
// library logs to) at warning level and above to log; the first Mirror's
// logger is used for the process.
func RouteLogs(log *slog.Logger) {
	logOnce.Do(func() {
		logrus.SetLevel(logrus.WarnLevel)
		logrus.SetOutput(io.Discard)
		logrus.AddHook(slogHook{log})
	})
}

type slogHook struct{ log *slog.Logger }

func (slogHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h slogHook) Fire(e *logrus.Entry) error {
	level := slog.LevelWarn
	if e.Level <= logrus.ErrorLevel {
		level = slog.LevelError
	}
	h.log.Log(context.Background(), level, "rift mirror: "+e.Message)
	return nil
}

// New starts one registry per egg. ctx bounds the registries' background
// work.
func New(ctx context.Context, eggs []Egg, log *slog.Logger) (*Mirror, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	RouteLogs(log)
	m := &Mirror{eggs: map[string]*eggMirror{}, log: log}
	for _, e := range eggs {
		app, err := newApp(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("start egg %s's image mirror: %w", e.Name, err)
		}
		em := &eggMirror{name: e.Name, root: e.Dir, app: app, space: e.Space}
		e.Space.Register(space.KindMirror, em.remove)
		if err := em.scan(); err != nil {
			return nil, fmt.Errorf("read egg %s's image mirror: %w", e.Name, err)
		}
		m.eggs[e.Name] = em
	}
	return m, nil
}

func newApp(ctx context.Context, e Egg) (app *handlers.App, err error) {
	if err := os.MkdirAll(e.Dir, 0o750); err != nil {
		return nil, err
	}
	noTTL := time.Duration(0)
	cfg := &configuration.Configuration{
		Version: "0.1",
		Storage: configuration.Storage{
			"filesystem":  configuration.Parameters{"rootdirectory": e.Dir},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
			"redirect":    configuration.Parameters{"disable": true},
		},
		Proxy: configuration.Proxy{
			RemoteURL: e.Upstream.URL,
			Username:  e.Upstream.Username,
			Password:  e.Upstream.Password,
			TTL:       &noTTL, // Rift's books evict, not Distribution's scheduler
		},
	}
	cfg.Validation.Disabled = true
	// NewApp panics on a configuration it cannot use.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

// Eggs names the eggs that have a mirror.
func (m *Mirror) Eggs() []string {
	out := make([]string, 0, len(m.eggs))
	for n := range m.eggs {
		out = append(out, n)
	}
	return out
}

// Has tells whether egg has a mirror.
func (m *Mirror) Has(egg string) bool { _, ok := m.eggs[egg]; return ok }

// blobPath matches /v2/<name>/blobs/<algorithm>:<hex>.
var blobPath = regexp.MustCompile(`^/v2/.+/blobs/(sha256:[a-f0-9]{64})$`)

// Serve answers one registry request for egg, whose runner the caller has
// authenticated. Only pulls are served (GET and HEAD).
func (m *Mirror) Serve(w http.ResponseWriter, r *http.Request, egg string) {
	em, ok := m.eggs[egg]
	if !ok {
		registryError(w, http.StatusNotFound, "NAME_UNKNOWN", "egg "+egg+" has no image mirror: add a mirror block to its rift block")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		registryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the mirror is read-only: pull only")
		return
	}
	var blob string
	before := false
	if mm := blobPath.FindStringSubmatch(r.URL.Path); mm != nil {
		blob = mm[1]
		_, err := os.Stat(em.dataPath(blob))
		before = err == nil
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	em.app.ServeHTTP(rec, r)
	dgst := blob
	if dgst == "" {
		dgst = rec.Header().Get("Docker-Content-Digest")
	}
	if rec.status != http.StatusOK || !strings.HasPrefix(dgst, "sha256:") || len(dgst) != 71 {
		return
	}
	info, err := os.Stat(em.dataPath(dgst))
	if err != nil {
		return
	}
	switch {
	case blob != "" && before && r.Method == http.MethodGet:
		now := em.space.Now()
		_ = os.Chtimes(em.dataPath(dgst), now, now)
		em.space.Used(space.KindMirror, dgst, info.Size())
	case blob != "" && r.Method == http.MethodGet:
		em.space.Missed(space.KindMirror)
		em.space.Added(r.Context(), space.KindMirror, dgst, info.Size())
	case !em.space.Has(space.KindMirror, dgst):
		em.space.Added(r.Context(), space.KindMirror, dgst, info.Size())
	}
}

// dataPath is where Distribution's filesystem driver keeps a blob.
func (em *eggMirror) dataPath(dgst string) string {
	hex := strings.TrimPrefix(dgst, "sha256:")
	return filepath.Join(em.root, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// remove deletes a blob's data (the Space's remover). Repository links to
// it stay; Distribution then finds the blob unknown and pulls it again.
func (em *eggMirror) remove(dgst string) error {
	if !strings.HasPrefix(dgst, "sha256:") || len(dgst) != 71 {
		return fmt.Errorf("not a blob digest: %q", dgst)
	}
	err := os.RemoveAll(filepath.Dir(em.dataPath(dgst)))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// scan loads the blobs on disk into the books, last used at their
// modification time.
func (em *eggMirror) scan() error {
	root := filepath.Join(em.root, "docker", "registry", "v2", "blobs", "sha256")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || d.Name() != "data" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		em.space.Load(space.KindMirror, "sha256:"+filepath.Base(filepath.Dir(p)), info.Size(), info.ModTime())
		return nil
	})
	return err
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// registryError writes a Docker Registry API v2 error document.
func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`+"\n", code, msg)
}

// Challenge asks a registry client to authenticate, as a v2 registry does
// with 401 and WWW-Authenticate (Docker Registry HTTP API v2, "API Version
// Check").
func Challenge(w http.ResponseWriter, realm, msg string) {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", realm))
	registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", msg)
}
