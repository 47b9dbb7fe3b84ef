// Package engine exposes a container engine's API socket to runners over
// mutual TLS, and renders the client side: Docker contexts, Podman
// connections and nerdctl's containerd address.
//
// The proxy works at the TCP level: once a connection's TLS handshake has
// verified a client certificate from Rift's CA, its bytes are copied both
// ways to the engine's unix socket. HTTP upgrades and hijacked streams
// (docker attach, exec and logs -f), HTTP/2 and gRPC (containerd) pass
// through unchanged; half-closes are passed on, so a client that closes
// its input ends the container's stdin as it does locally.
package engine

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/pki"
)

// Route picks the engine socket a client's connection goes to, or refuses
// the client with an error; a *Refusal error is answered to HTTP clients.
type Route func(ctx context.Context, id pki.Identity) (network, address string, err error)

// Refusal is a Route error the proxy answers, when the engine speaks HTTP
// (Docker's and Podman's APIs), with an HTTP status and a Docker API error
// body ({"message": ...}), which the Docker CLI prints as "Error response
// from daemon: ...". Other clients see the connection closed.
type Refusal struct {
	Status  int
	Message string
	// HTTP says whether the client speaks HTTP/1.1 (not containerd's gRPC).
	HTTP bool
}

func (r *Refusal) Error() string { return r.Message }

// Proxy accepts mutual-TLS connections and copies them to engine sockets.
type Proxy struct {
	// TLS must require and verify client certificates
	// (tls.RequireAndVerifyClientCert with Rift's CA as ClientCAs).
	TLS   *tls.Config
	Route Route
	// HandshakeTimeout bounds a TLS handshake (default 10s).
	HandshakeTimeout time.Duration
	Logger           *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Serve accepts connections on ln until ctx ends, then closes ln and every
// open connection.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	if p.TLS == nil || p.TLS.ClientAuth != tls.RequireAndVerifyClientCert || p.TLS.ClientCAs == nil {
		return errors.New("engine proxy: the TLS config must require and verify client certificates")
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.HandshakeTimeout == 0 {
		p.HandshakeTimeout = 10 * time.Second
	}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("engine proxy: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.handle(ctx, c)
		}()
	}
}

func (p *Proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		p.conns = map[net.Conn]struct{}{}
	}
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) handle(ctx context.Context, raw net.Conn) {
	p.track(raw, true)
	defer p.track(raw, false)
	defer raw.Close()
	tc := tls.Server(raw, p.TLS)
	hctx, cancel := context.WithTimeout(ctx, p.HandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		p.Logger.DebugContext(ctx, "rift engine: TLS handshake failed", "remote", raw.RemoteAddr().String(), "error", err)
		return
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return
	}
	id, err := pki.ClientIdentity(certs[0])
	if err != nil {
		p.Logger.WarnContext(ctx, "rift engine: refused a client", "remote", raw.RemoteAddr().String(), "error", err)
		return
	}
	network, addr, err := p.Route(ctx, id)
	if err != nil {
		p.Logger.WarnContext(ctx, "rift engine: refused a runner", "runner", id.RunnerID, "egg", id.Egg, "error", err)
		var ref *Refusal
		if errors.As(err, &ref) && ref.HTTP {
			refuse(tc, ref)
		}
		return
	}
	var d net.Dialer
	up, err := d.DialContext(ctx, network, addr)
	if err != nil {
		p.Logger.ErrorContext(ctx, "rift engine: cannot reach the engine", "egg", id.Egg, "address", addr, "error", err)
		return
	}
	p.track(up, true)
	defer p.track(up, false)
	defer up.Close()
	Pipe(tc, up)
}

// closeWriter is a connection that can close its sending half.
type closeWriter interface {
	CloseWrite() error
}

// Pipe copies a to b and b to a until both directions end. When one side
// stops sending, the other's sending half is closed (a TLS close_notify or
// a socket shutdown), so half-closed streams behave as they do locally.
func Pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok && err == nil {
			_ = cw.CloseWrite()
		} else {
			// An error, or no half-close: end both directions.
			dst.Close()
			src.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// ForwardUnix serves a local unix socket whose connections go to Rift
// through dial (a mutual-TLS dial to Rift's engine listener): for clients
// that cannot speak TLS themselves, such as nerdctl (containerd's gRPC)
// and Podman 4's remote client. The socket is made readable and writable
// by its owner only. It returns when ctx ends.
func ForwardUnix(ctx context.Context, socketPath string, dial func(ctx context.Context) (net.Conn, error)) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "unix", socketPath)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", socketPath, err)
	}
	if err := chmodSocket(socketPath); err != nil {
		ln.Close()
		return err
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", socketPath, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			up, err := dial(ctx)
			if err != nil {
				return
			}
			defer up.Close()
			stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
			defer stop()
			Pipe(c, up)
		}()
	}
}

// Dialer returns a dial function for ForwardUnix: mutual TLS to addr
// (host:port of Rift's engine listener) with the runner's certificate.
func Dialer(addr string, cfg *tls.Config) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		d := tls.Dialer{Config: cfg}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// refuse answers the client's first HTTP request with the refusal.
func refuse(c *tls.Conn, r *Refusal) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// Read the request head, so the client is not cut off mid-send.
	if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
		req.Body.Close()
	}
	body, _ := json.Marshal(map[string]string{"message": r.Message})
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		r.Status, http.StatusText(r.Status), len(body), body)
	_ = c.CloseWrite()
}
