package cli

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthcheckFlagsToOptions(t *testing.T) {
	var got *HealthcheckOptions
	cmd := NewCmdHealthcheck(newTestIO("", false).f, func(o *HealthcheckOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--timeout", "5s", "http://localhost:8080/healthz"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.URL != "http://localhost:8080/healthz" || got.Timeout != 5*time.Second {
		t.Errorf("options = %+v", got)
	}
	if !cmd.Hidden {
		t.Error("healthcheck is for images, not people: it should be hidden")
	}
}

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	// A port nothing listens on: a listener opened and closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/healthz"
	ln.Close()

	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		errText string
	}{
		{"ok", []string{srv.URL + "/healthz"}, ExitOK, ""},
		{"not ready", []string{srv.URL + "/readyz"}, ExitError, "503 Service Unavailable"},
		{"no answer in time", []string{"--timeout", "200ms", srv.URL + "/slow"}, ExitError, "no answer within 200ms"},
		{"nothing listens", []string{closed}, ExitError, "connect"},
		{"not a URL", []string{"localhost:8080"}, ExitError, "is not an http:// or https:// URL"},
		{"no URL", nil, ExitError, "accepts 1 arg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tio := newTestIO("", false)
			code := run(t, tio, append([]string{"healthcheck"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, tio.err)
			}
			if tc.errText != "" && !strings.Contains(tio.err.String(), tc.errText) {
				t.Errorf("stderr %q does not say %q", tio.err, tc.errText)
			}
			if tc.code == ExitOK && !strings.Contains(tio.out.String(), "200 OK") {
				t.Errorf("stdout = %q", tio.out)
			}
		})
	}
}
