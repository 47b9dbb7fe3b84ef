package runnerstandin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The client side of GitLab's runner API, with gitlab-runner's field names
// (network/gitlab.go and common/network.go of gitlab-runner).

// jobResponse is the part of common.JobResponse the stand-in uses.
type jobResponse struct {
	ID      int64  `json:"id"`
	Token   string `json:"token"`
	JobInfo struct {
		Name        string `json:"name"`
		Stage       string `json:"stage"`
		ProjectID   int64  `json:"project_id"`
		ProjectName string `json:"project_name"`
	} `json:"job_info"`
	GitInfo struct {
		RepoURL  string   `json:"repo_url"`
		Ref      string   `json:"ref"`
		Sha      string   `json:"sha"`
		RefType  string   `json:"ref_type"`
		Refspecs []string `json:"refspecs"`
		Depth    int      `json:"depth"`
	} `json:"git_info"`
	RunnerInfo struct {
		Timeout int `json:"timeout"`
	} `json:"runner_info"`
	Variables []jobVariable `json:"variables"`
	Steps     []jobStep     `json:"steps"`
	Image     *struct {
		Name string `json:"name"`
	} `json:"image"`
	Services []struct {
		Name string `json:"name"`
	} `json:"services"`
	Features struct {
		TokenMaskPrefixes []string `json:"token_mask_prefixes"`
	} `json:"features"`
	Cache []jobCache `json:"cache"`
}

type jobVariable struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Public bool   `json:"public"`
	Masked bool   `json:"masked"`
	File   bool   `json:"file"`
	Raw    bool   `json:"raw"`
}

type jobStep struct {
	Name         string   `json:"name"`
	Script       []string `json:"script"`
	Timeout      int      `json:"timeout"`
	When         string   `json:"when"`
	AllowFailure bool     `json:"allow_failure"`
}

type featuresInfo struct {
	Variables      bool `json:"variables"`
	Image          bool `json:"image"`
	Services       bool `json:"services"`
	Artifacts      bool `json:"artifacts"`
	Cache          bool `json:"cache"`
	Shared         bool `json:"shared"`
	Refspecs       bool `json:"refspecs"`
	Masking        bool `json:"masking"`
	RawVariables   bool `json:"raw_variables"`
	MultiBuildStep bool `json:"multi_build_steps"`
	TraceReset     bool `json:"trace_reset"`
	TraceChecksum  bool `json:"trace_checksum"`
	TraceSize      bool `json:"trace_size"`
	Cancelable     bool `json:"cancelable"`
	ReturnExitCode bool `json:"return_exit_code"`
}

type versionInfo struct {
	Name         string       `json:"name,omitempty"`
	Version      string       `json:"version,omitempty"`
	Revision     string       `json:"revision,omitempty"`
	Platform     string       `json:"platform,omitempty"`
	Architecture string       `json:"architecture,omitempty"`
	Executor     string       `json:"executor,omitempty"`
	Shell        string       `json:"shell,omitempty"`
	Features     featuresInfo `json:"features"`
}

// network talks to GitLab for every runner of the process.
type network struct {
	http *http.Client
}

func newNetwork() *network {
	// No client timeout: a long poll lasts as long as GitLab holds it;
	// contexts bound every call.
	return &network{http: &http.Client{}}
}

// apiURL is the runner API base for a configured url, without a trailing
// /ci as gitlab-runner's fixCIURL does.
func apiURL(base, path string) string {
	base = strings.TrimSuffix(strings.TrimRight(base, "/"), "/ci")
	return base + "/api/v4/" + path
}

func (n *network) info(rc RunnerConfig) versionInfo {
	return versionInfo{
		Name: Name, Version: Version, Revision: Revision, Platform: runtime.GOOS, Architecture: runtime.GOARCH,
		Executor: rc.Executor, Shell: rc.Shell,
		Features: featuresInfo{Variables: true, Masking: true, RawVariables: true, MultiBuildStep: true, TraceReset: true,
			TraceChecksum: true, TraceSize: true, Cancelable: true, ReturnExitCode: true, Refspecs: true, Cache: true},
	}
}

func (n *network) do(ctx context.Context, method, url string, body io.Reader, contentType string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", UserAgent())
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	return n.http.Do(req)
}

func (n *network) doJSON(ctx context.Context, method, url string, in, out any) (*http.Response, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	resp, err := n.do(ctx, method, url, bytes.NewReader(b), "application/json", http.Header{"Accept": {"application/json"}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out != nil && (resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK) {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp, fmt.Errorf("decode %s answer: %w", url, err)
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp, nil
}

// verify is POST /runners/verify: true when GitLab knows the token.
func (n *network) verify(ctx context.Context, rc RunnerConfig, systemID string) (bool, error) {
	resp, err := n.doJSON(ctx, http.MethodPost, apiURL(rc.URL, "runners/verify"), map[string]string{"token": rc.Token, "system_id": systemID}, nil)
	if err != nil {
		return false, fmt.Errorf("verify runner %s: %w", ShortToken(rc.Token), err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusForbidden:
		return false, nil
	}
	return false, fmt.Errorf("verify runner %s: %s", ShortToken(rc.Token), resp.Status)
}

// requestJob is POST /jobs/request. It returns the job (nil for none), the
// X-GitLab-Last-Update to send next time, and the status code.
func (n *network) requestJob(ctx context.Context, rc RunnerConfig, systemID, lastUpdate string) (*jobResponse, string, int, error) {
	in := map[string]any{"info": n.info(rc), "token": rc.Token, "system_id": systemID, "last_update": lastUpdate}
	var job jobResponse
	resp, err := n.doJSON(ctx, http.MethodPost, apiURL(rc.URL, "jobs/request"), in, &job)
	if err != nil {
		return nil, lastUpdate, 0, err
	}
	if lu := resp.Header.Get("X-GitLab-Last-Update"); lu != "" {
		lastUpdate = lu
	}
	if resp.StatusCode == http.StatusCreated {
		return &job, lastUpdate, resp.StatusCode, nil
	}
	return nil, lastUpdate, resp.StatusCode, nil
}

// updateResult is what PUT /jobs/:id answered.
type updateResult struct {
	status    int
	jobStatus string
}

// updateJob is PUT /jobs/:id with the job token.
func (n *network) updateJob(ctx context.Context, rc RunnerConfig, job *jobResponse, state, failureReason string, exitCode int, trace []byte) (updateResult, error) {
	in := map[string]any{"info": n.info(rc), "token": job.Token, "state": state}
	if failureReason != "" {
		in["failure_reason"] = failureReason
	}
	if exitCode != 0 {
		in["exit_code"] = exitCode
	}
	if trace != nil {
		checksum := "crc32:" + crc32Hex(trace)
		in["checksum"] = checksum
		in["output"] = map[string]any{"checksum": checksum, "bytesize": len(trace)}
	}
	resp, err := n.doJSON(ctx, http.MethodPut, apiURL(rc.URL, "jobs/"+strconv.FormatInt(job.ID, 10)), in, nil)
	if err != nil {
		return updateResult{}, err
	}
	return updateResult{status: resp.StatusCode, jobStatus: resp.Header.Get("Job-Status")}, nil
}

// patchResult is what PATCH /jobs/:id/trace answered.
type patchResult struct {
	status    int
	jobStatus string
	// remoteSize is the end of Range: 0-<size>, the log GitLab holds.
	remoteSize int
	interval   time.Duration
}

// patchTrace is PATCH /jobs/:id/trace with Content-Range: start-end
// (inclusive) and the bytes.
func (n *network) patchTrace(ctx context.Context, rc RunnerConfig, job *jobResponse, offset int, data []byte) (patchResult, error) {
	h := http.Header{}
	h.Set("JOB-TOKEN", job.Token)
	h.Set("Content-Range", fmt.Sprintf("%d-%d", offset, offset+len(data)-1))
	url := apiURL(rc.URL, fmt.Sprintf("jobs/%d/trace?debug_trace=false", job.ID))
	resp, err := n.do(ctx, http.MethodPatch, url, bytes.NewReader(data), "text/plain", h)
	if err != nil {
		return patchResult{}, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	out := patchResult{status: resp.StatusCode, jobStatus: resp.Header.Get("Job-Status"), remoteSize: -1}
	if _, end, ok := strings.Cut(resp.Header.Get("Range"), "-"); ok {
		if n, err := strconv.Atoi(end); err == nil {
			out.remoteSize = n
		}
	}
	if s, err := strconv.Atoi(resp.Header.Get("X-GitLab-Trace-Update-Interval")); err == nil && s > 0 {
		out.interval = time.Duration(s) * time.Second
	}
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("runnerstandin: random: %v", err))
	}
	return hex.EncodeToString(b)
}
