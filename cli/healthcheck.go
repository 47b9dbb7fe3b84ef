package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// HealthcheckOptions are the inputs of `gosling healthcheck`.
type HealthcheckOptions struct {
	IO  *IOStreams
	URL string
	// Timeout bounds the whole request, connection included.
	Timeout time.Duration
}

// NewCmdHealthcheck builds the hidden `gosling healthcheck URL`: a probe for
// container images that carry no curl or wget (distroless). It GETs URL
// and exits 0 on a 2xx answer, 1 on anything else.
func NewCmdHealthcheck(f *Factory, runF func(*HealthcheckOptions) error) *cobra.Command {
	opts := &HealthcheckOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "healthcheck URL",
		Short: "GET an HTTP URL; exit 0 on a 2xx answer, 1 otherwise (container probes)",
		Long: `Healthcheck GETs an http:// or https:// URL and exits 0 when the answer is
2xx, 1 when it is not or no answer came within --timeout. It is the
HEALTHCHECK of images without curl, such as the distroless one the
Dockerfile builds:

  test: ["CMD", "gosling", "healthcheck", "http://localhost:8080/healthz"]`,
		Example: `  gosling healthcheck http://localhost:8080/healthz
  gosling healthcheck --timeout 2s http://localhost:9090/healthz`,
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := url.Parse(args[0])
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return flagErrorf("%q is not an http:// or https:// URL, such as http://localhost:8080/healthz", args[0])
			}
			if opts.Timeout <= 0 {
				return flagErrorf("--timeout must be positive, such as 3s")
			}
			opts.URL = u.String()
			if runF != nil {
				return runF(opts)
			}
			return healthcheckRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 3*time.Second, "give up after this long")
	return cmd
}

func healthcheckRun(ctx context.Context, opts *HealthcheckOptions) error {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, opts.URL, nil)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", opts.URL, err)
	}
	// No proxy: a probe asks the process beside it, whatever HTTP_PROXY says.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("healthcheck %s: no answer within %s", opts.URL, opts.Timeout)
		}
		return fmt.Errorf("healthcheck %s: %w", opts.URL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("healthcheck %s: %s", opts.URL, resp.Status)
	}
	fmt.Fprintf(opts.IO.Out, "%s: %s\n", opts.URL, resp.Status)
	return nil
}
