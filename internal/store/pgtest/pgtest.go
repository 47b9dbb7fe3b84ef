// Package pgtest starts throwaway PostgreSQL servers for tests.
//
// A package whose tests need PostgreSQL shares one server between them:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.Start(t) // a new, empty database on the shared server
//		...
//	}
//
// Without pgtest.Main, every Start call runs a server of its own and
// stops it when the test ends; that works, but costs a second or two each.
//
// The server binaries (initdb, pg_ctl, postgres) come from PATH or from
// /usr/lib/postgresql/*/bin. PostgreSQL refuses to run as root, so when the
// tests run as root the server runs as the "postgres" system user.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// InstallHint is what to do when the PostgreSQL binaries are missing.
const InstallHint = "run scripts/tools.sh postgres to install them"

// serverUser runs the server when the tests run as root.
const serverUser = "postgres"

// startTimeout bounds initdb plus the server's start.
const startTimeout = 2 * time.Minute

var shared struct {
	// managed is set by Main before any test runs and read only afterwards.
	managed bool
	once    sync.Once
	srv     *server
	err     error
}

// M is what Main runs: a *testing.M, or a wrapper of one such as
// dynamotest.Runner's.
type M interface{ Run() int }

// Main runs the tests of a package with one PostgreSQL server shared by every
// Start call, then stops the server and exits with the tests' status.
func Main(m M) {
	shared.managed = true
	stopOnSignal()
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// stopOnSignal stops the shared server when the tests are interrupted, since
// pg_ctl detaches the server and it would outlive the test binary.
func stopOnSignal() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		if err := stopShared(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
		fmt.Fprintf(os.Stderr, "pgtest: %v: stopped the PostgreSQL server\n", sig)
		os.Exit(1)
	}()
}

var stopSharedOnce sync.Once

func stopShared() error {
	var err error
	stopSharedOnce.Do(func() {
		// once.Do waits for a start in progress, and afterwards stops
		// later Start calls from starting a server nobody would stop.
		shared.once.Do(func() { shared.err = errors.New("the shared PostgreSQL server has been stopped") })
		if shared.srv != nil {
			err = shared.srv.stop()
		}
	})
	return err
}

// Start returns the DSN (postgres://...) of a new, empty database that lives
// at least as long as the test. It fails the test when no server can start,
// including when PostgreSQL is not installed: tests that need it must not
// silently pass without it.
func Start(t testing.TB) string {
	t.Helper()
	srv := sharedServer(t)
	if srv == nil {
		var err error
		srv, err = startServer()
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		t.Cleanup(func() {
			if err := srv.stop(); err != nil {
				t.Errorf("pgtest: %v", err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := srv.createDatabase(ctx)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// sharedServer returns the server Main manages, starting it on first use, or
// nil when Main is not in charge.
func sharedServer(t testing.TB) *server {
	t.Helper()
	if !shared.managed {
		return nil
	}
	shared.once.Do(func() { shared.srv, shared.err = startServer() })
	if shared.err != nil {
		t.Fatalf("pgtest: %v", shared.err)
	}
	return shared.srv
}

// server is one running PostgreSQL server and the directory holding it.
type server struct {
	binDir string
	root   string // removed on stop
	data   string
	socket string
	log    string
	port   int
	// asUser runs the server's programs as another user; nil runs them as us.
	asUser    *syscall.Credential
	databases atomic.Int64
}

func startServer() (*server, error) {
	binDir, err := findBinaries()
	if err != nil {
		return nil, err
	}
	srv := &server{binDir: binDir}
	if os.Geteuid() == 0 {
		if srv.asUser, err = lookupCredential(serverUser); err != nil {
			return nil, fmt.Errorf("postgres refuses to run as root and there is no user to run it as: %w", err)
		}
	}
	if err := srv.makeDirs(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := srv.initdb(ctx); err != nil {
		return nil, errors.Join(err, os.RemoveAll(srv.root))
	}
	// The port is free when chosen but another process may take it before
	// the server binds it, so a failed start is retried on another port.
	for attempt := 1; ; attempt++ {
		err = srv.startOnFreePort(ctx)
		if err == nil {
			return srv, nil
		}
		if attempt == 3 || ctx.Err() != nil {
			return nil, errors.Join(err, os.RemoveAll(srv.root))
		}
	}
}

// packagedBinDirs is where Debian's postgresql packages put the binaries.
var packagedBinDirs = "/usr/lib/postgresql/*/bin"

// findBinaries returns the directory holding initdb and pg_ctl: PATH first,
// then the newest of packagedBinDirs.
func findBinaries() (string, error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if resolved, err := filepath.EvalSymlinks(initdb); err == nil {
			initdb = resolved
		}
		dir := filepath.Dir(initdb)
		if isExecutable(filepath.Join(dir, "pg_ctl")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob(packagedBinDirs)
	slices.SortFunc(dirs, func(a, b string) int { return majorVersion(b) - majorVersion(a) })
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: %s", InstallHint)
}

// majorVersion reads the version out of /usr/lib/postgresql/<version>/bin.
func majorVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0
}

func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	// An empty Groups drops root's supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// makeDirs creates root (owned by the server's user, so initdb and pg_ctl
// can create the data directory and the log there) and the socket directory.
func (s *server) makeDirs() error {
	root, err := os.MkdirTemp("", "gosling-pgtest-")
	if err != nil {
		return fmt.Errorf("create server directory: %w", err)
	}
	s.root = root
	s.data = filepath.Join(root, "data")
	s.socket = filepath.Join(root, "socket")
	s.log = filepath.Join(root, "postgres.log")
	err = os.Mkdir(s.socket, 0o700)
	if err == nil && s.asUser != nil {
		err = s.handOver()
	}
	if err != nil {
		return errors.Join(err, os.RemoveAll(root))
	}
	return nil
}

// handOver gives the server's directories to the user that runs it and
// checks that user can reach them.
func (s *server) handOver() error {
	for _, dir := range []string{s.root, s.socket} {
		if err := os.Chown(dir, int(s.asUser.Uid), int(s.asUser.Gid)); err != nil {
			return fmt.Errorf("hand %s to user %s: %w", dir, serverUser, err)
		}
	}
	for dir := filepath.Dir(s.root); ; dir = filepath.Dir(dir) {
		info, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("check %s: %w", dir, err)
		}
		if info.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("user %s cannot reach %s because %s is not searchable by other users: set TMPDIR to a directory every user can traverse, such as /tmp", serverUser, s.root, dir)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// command prepares one of the server's programs to run as the server's user
// in a clean environment: PG* variables of the caller must not redirect it.
func (s *server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	cmd.Dir = s.root
	env := []string{"LC_ALL=C", "TZ=UTC"}
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(key, "PG") || strings.HasPrefix(key, "LC_") || key == "LANG" || key == "TZ" {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	if s.asUser != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.asUser}
	}
	return cmd
}

func run(cmd *exec.Cmd) error {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (s *server) initdb(ctx context.Context) error {
	err := run(s.command(ctx, "initdb",
		"--pgdata", s.data,
		"--username", "postgres",
		"--auth", "trust",
		"--encoding", "UTF8",
		"--no-locale",
		// A throwaway cluster need not survive a crash.
		"--no-sync",
	))
	if err != nil {
		return fmt.Errorf("initialise the database cluster: %w", err)
	}
	return nil
}

func (s *server) startOnFreePort(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	if strings.ContainsRune(s.socket, '\'') {
		return fmt.Errorf("socket directory %s contains a quote, which pg_ctl's shell would misread", s.socket)
	}
	// pg_ctl hands -o to a shell, hence the quoted socket path. Durability
	// settings are off: the data is thrown away anyway.
	options := fmt.Sprintf("-p %d -k '%s' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300", port, s.socket)
	err = run(s.command(ctx, "pg_ctl", "start", "--wait", "--timeout", "60", "--pgdata", s.data, "--log", s.log, "-o", options))
	if err != nil {
		// pg_ctl gives up waiting without stopping what it started; the next
		// attempt or RemoveAll must not find a server still running. When
		// there is none, this stop fails, and that says nothing new.
		_ = run(s.command(ctx, "pg_ctl", "stop", "--pgdata", s.data, "--mode", "immediate"))
		return fmt.Errorf("start the server on port %d: %w%s", port, err, s.logTail())
	}
	s.port = port
	return nil
}

// logTail is the end of the server's log, to explain a failed start.
func (s *server) logTail() string {
	log, err := os.ReadFile(s.log)
	if err != nil || len(log) == 0 {
		return ""
	}
	const keep = 2000
	if len(log) > keep {
		log = log[len(log)-keep:]
	}
	return "\nserver log (end):\n" + strings.TrimSpace(string(log))
}

// freePort asks the kernel for a port nobody listens on.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

func (s *server) dsn(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, database)
}

func (s *server) createDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("test_%d", s.databases.Add(1))
	conn, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to the server: %w", err)
	}
	defer conn.Close(context.Background())
	// CREATE DATABASE takes no parameters; name is ours and safe to splice.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.dsn(name), nil
}

// stop kills the server (its data is thrown away, so there is nothing to
// shut down cleanly) and removes its directory.
func (s *server) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if s.port != 0 {
		if err := run(s.command(ctx, "pg_ctl", "stop", "--wait", "--pgdata", s.data, "--mode", "immediate")); err != nil {
			errs = append(errs, fmt.Errorf("stop the server: %w", err))
		}
	}
	if err := os.RemoveAll(s.root); err != nil {
		errs = append(errs, fmt.Errorf("remove the server directory: %w", err))
	}
	return errors.Join(errs...)
}
