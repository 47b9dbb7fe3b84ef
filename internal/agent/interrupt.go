package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gosling-ci/gosling/internal/agentapi"
)

// DefaultMetadataURL is the EC2 instance metadata service.
const DefaultMetadataURL = "http://169.254.169.254"

// defaultNoticePoll is how often an EC2 Spot instance's agent looks for
// the interruption notice: AWS gives two minutes and recommends every
// five seconds.
const defaultNoticePoll = 5 * time.Second

// spotNotice is IMDS's spot/instance-action document.
type spotNotice struct {
	Action string    `json:"action"`
	Time   time.Time `json:"time"`
}

// imdsClient reads EC2 instance metadata with IMDSv2: a session token from
// PUT /latest/api/token (X-aws-ec2-metadata-token-ttl-seconds), sent as
// X-aws-ec2-metadata-token; a 401 asks for a new token.
type imdsClient struct {
	base  string
	hc    *http.Client
	token string
	until time.Time
}

const imdsTokenTTL = 6 * time.Hour

func (c *imdsClient) session(ctx context.Context) (string, error) {
	if c.token != "" && time.Now().Before(c.until) {
		return c.token, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/latest/api/token", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", fmt.Sprint(int(imdsTokenTTL/time.Second)))
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("IMDSv2 token: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("IMDSv2 token: %s", resp.Status)
	}
	c.token, c.until = strings.TrimSpace(string(b)), time.Now().Add(imdsTokenTTL-time.Minute)
	return c.token, nil
}

// spotAction reads spot/instance-action: the notice and true once EC2
// has given it, false before (404).
func (c *imdsClient) spotAction(ctx context.Context) (spotNotice, bool, error) {
	for attempt := 0; attempt < 2; attempt++ {
		token, err := c.session(ctx)
		if err != nil {
			return spotNotice{}, false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/latest/meta-data/spot/instance-action", nil)
		if err != nil {
			return spotNotice{}, false, err
		}
		req.Header.Set("X-aws-ec2-metadata-token", token)
		resp, err := c.hc.Do(req)
		if err != nil {
			return spotNotice{}, false, fmt.Errorf("spot/instance-action: %w", err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			var n spotNotice
			if err := json.Unmarshal(b, &n); err != nil {
				return spotNotice{}, false, fmt.Errorf("spot/instance-action %q: %w", b, err)
			}
			return n, true, nil
		case http.StatusNotFound:
			return spotNotice{}, false, nil
		case http.StatusUnauthorized:
			c.token = "" // expired: ask for another
		default:
			return spotNotice{}, false, fmt.Errorf("spot/instance-action: %s", resp.Status)
		}
	}
	return spotNotice{}, false, errors.New("spot/instance-action: IMDSv2 refused a fresh token")
}

// watchSpotNotice polls the EC2 Spot interruption notice until it comes
// (sent once on the channel) or ctx ends. Metadata errors are logged at
// debug level and polled through: the notice matters, not one poll.
func (a *agent) watchSpotNotice(ctx context.Context, ic *agentapi.InterruptConfig) <-chan agentapi.Interruption {
	out := make(chan agentapi.Interruption, 1)
	c := &imdsClient{base: strings.TrimSuffix(ic.MetadataURL, "/"), hc: &http.Client{Timeout: 2 * time.Second}}
	every := defaultNoticePoll
	if ic.PollSeconds > 0 {
		every = time.Duration(ic.PollSeconds) * time.Second
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			n, ok, err := c.spotAction(ctx)
			if err != nil {
				a.log.Debug("spot interruption notice", "error", err)
			}
			if ok {
				out <- agentapi.Interruption{Source: agentapi.InterruptAWSSpot, Action: n.Action, Deadline: n.Time}
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// runningJobs are the jobs gitlab-runner runs now, as its listen_address
// and its log told the agent, in ID order.
func (a *agent) runningJobs() []int64 {
	out := a.watch.jobs()
	for id, status := range a.reported {
		if status == agentapi.JobRunning && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	if out == nil {
		out = []int64{}
	}
	return out
}

// interrupted takes the notice that the machine is going: gitlab-runner
// takes no new job (SIGQUIT: the running one goes on while the machine
// lasts, and may yet finish), and MotherGoose is told, with the jobs
// running now, so the runner's pool retires it and retries them once it
// is gone. The agent then runs until the machine stops under it.
func (a *agent) interrupted(ctx context.Context, n agentapi.Interruption) {
	if a.noticed {
		return
	}
	a.noticed = true
	n.Jobs, n.At = a.runningJobs(), time.Now().UTC()
	a.log.Warn("the cloud is taking this machine away: no new job is taken", "source", n.Source, "action", n.Action, "deadline", n.Deadline, "jobs", n.Jobs)
	a.setPhase(PhaseStopping)
	if a.sup.running() {
		_ = a.sup.proc.Signal(syscall.SIGQUIT)
	}
	if a.api == nil {
		return
	}
	// The machine has seconds to live: a few quick tries.
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := retry(rctx, func() error {
		credential, err := a.tokens.credential(rctx, a.cfg)
		if err != nil {
			return err
		}
		return a.api.Interrupted(rctx, credential, n)
	})
	if err != nil {
		a.log.Warn("interruption not reported", "error", err)
	}
}
