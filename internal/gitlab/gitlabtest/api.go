package gitlabtest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// GitLab stops counting past this many records: X-Total, X-Total-Pages and
// the last link disappear, and clients must follow X-Next-Page.
const maxCountedRecords = 10000

const (
	defaultPerPage = 20
	maxPerPage     = 100
)

func (s *Server) routes() {
	m := http.NewServeMux()
	authed := func(pattern string, h func(http.ResponseWriter, *http.Request, *user)) {
		m.HandleFunc(pattern, s.authenticate(h))
	}
	authed("GET "+apiPrefix+"/version", s.getVersion)

	authed("POST "+apiPrefix+"/user/runners", s.createUserRunner)
	authed("GET "+apiPrefix+"/runners", s.listOwnedRunners)
	authed("GET "+apiPrefix+"/runners/all", s.listAllRunners)
	authed("GET "+apiPrefix+"/runners/{id}", s.getRunner)
	authed("PUT "+apiPrefix+"/runners/{id}", s.updateRunner)
	authed("DELETE "+apiPrefix+"/runners/{id}", s.deleteRunner)
	authed("POST "+apiPrefix+"/runners/{id}/reset_authentication_token", s.resetRunnerToken)
	authed("GET "+apiPrefix+"/runners/{id}/jobs", s.listRunnerJobs)
	authed("GET "+apiPrefix+"/runners/{id}/managers", s.listRunnerManagers)
	// Runner endpoints authenticate by the runner token in the body (or a
	// job token), not a user.
	m.HandleFunc("POST "+apiPrefix+"/runners/verify", s.verifyRunner)
	m.HandleFunc("POST "+apiPrefix+"/jobs/request", s.requestJob)
	m.HandleFunc("PUT "+apiPrefix+"/jobs/{id}", s.updateJob)
	m.HandleFunc("PATCH "+apiPrefix+"/jobs/{id}/trace", s.patchTrace)

	authed("GET "+apiPrefix+"/projects/{id}", s.getProject)
	authed("GET "+apiPrefix+"/projects/{id}/hooks", s.listProjectHooks)
	authed("POST "+apiPrefix+"/projects/{id}/runners", s.enableProjectRunner)
	authed("DELETE "+apiPrefix+"/projects/{id}/runners/{runner_id}", s.disableProjectRunner)
	authed("POST "+apiPrefix+"/projects/{id}/hooks", s.addProjectHook)
	authed("GET "+apiPrefix+"/projects/{id}/hooks/{hook_id}", s.getProjectHook)
	authed("PUT "+apiPrefix+"/projects/{id}/hooks/{hook_id}", s.editProjectHook)
	authed("DELETE "+apiPrefix+"/projects/{id}/hooks/{hook_id}", s.deleteProjectHook)
	authed("POST "+apiPrefix+"/projects/{id}/hooks/{hook_id}/test/{trigger}", s.testProjectHook)
	authed("GET "+apiPrefix+"/projects/{id}/hooks/{hook_id}/events", s.listHookEvents)
	authed("POST "+apiPrefix+"/projects/{id}/hooks/{hook_id}/events/{hook_event_id}/resend", s.resendHookEvent)
	authed("GET "+apiPrefix+"/projects/{id}/jobs", s.listProjectJobs)
	authed("GET "+apiPrefix+"/projects/{id}/jobs/{job_id}", s.getJob)
	authed("GET "+apiPrefix+"/projects/{id}/repository/branches/{branch}", s.getBranch)
	authed("GET "+apiPrefix+"/projects/{id}/repository/archive", s.getArchive)
	authed("GET "+apiPrefix+"/projects/{id}/repository/archive.tar.gz", s.getArchive)
	authed("GET "+apiPrefix+"/projects/{id}/jobs/{job_id}/trace", s.getJobTrace)
	authed("POST "+apiPrefix+"/projects/{id}/jobs/{job_id}/cancel", s.cancelJobRoute)
	authed("POST "+apiPrefix+"/projects/{id}/jobs/{job_id}/retry", s.retryJobRoute)
	authed("POST "+apiPrefix+"/projects/{id}/pipeline", s.createPipelineRoute)
	authed("GET "+apiPrefix+"/projects/{id}/pipelines/{pipeline_id}", s.getPipelineRoute)
	authed("GET "+apiPrefix+"/projects/{id}/pipelines/{pipeline_id}/jobs", s.listPipelineJobs)
	authed("GET "+apiPrefix+"/projects/{id}/repository/files/{file_path}/raw", s.getRawFile)
	authed("GET "+apiPrefix+"/groups/{id}", s.getGroup)
	authed("GET "+apiPrefix+"/groups/{id}/projects", s.listGroupProjects)

	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "404 Not Found"})
	})
	s.mux = m
}

// authenticate resolves the user from PRIVATE-TOKEN or Authorization:
// Bearer, answering 401 like GitLab when neither names a known token.
func (s *Server) authenticate(h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := r.Header.Get("PRIVATE-TOKEN")
		if token == "" {
			if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
				token = strings.TrimSpace(v)
			}
		}
		s.mu.Lock()
		u, ok := s.users[token]
		s.mu.Unlock()
		if token == "" || !ok {
			writeMessage(w, http.StatusUnauthorized, "401 Unauthorized")
			return
		}
		h(w, r, u)
	}
}

func (s *Server) getVersion(w http.ResponseWriter, _ *http.Request, _ *user) {
	writeJSON(w, http.StatusOK, map[string]any{"version": "18.2.0", "revision": "gitlabtest", "kas": map[string]any{"enabled": false}, "enterprise": false})
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeMessage answers GitLab's usual error body, {"message": "..."}.
func writeMessage(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]any{"message": message})
}

// writeParamError answers like Grape's parameter validation: {"error": "..."}.
func writeParamError(w http.ResponseWriter, message string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": message})
}

// params reads request parameters the way Grape does: from the query string,
// a JSON body or a form body.
type params struct {
	body map[string]any
	form url.Values
}

func readParams(r *http.Request) (params, error) {
	p := params{form: r.URL.Query()}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return p, fmt.Errorf("read body: %w", err)
		}
		if len(strings.TrimSpace(string(raw))) == 0 {
			return p, nil
		}
		if err := json.Unmarshal(raw, &p.body); err != nil {
			return p, fmt.Errorf("body is not a JSON object: %w", err)
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		if err := r.ParseForm(); err != nil {
			return p, fmt.Errorf("parse form: %w", err)
		}
		p.form = r.Form
	}
	return p, nil
}

func (p params) raw(key string) (any, bool) {
	if v, ok := p.body[key]; ok {
		return v, true
	}
	if vs, ok := p.form[key]; ok && len(vs) > 0 {
		return vs[len(vs)-1], true
	}
	if vs, ok := p.form[key+"[]"]; ok {
		out := make([]any, len(vs))
		for i, v := range vs {
			out[i] = v
		}
		return out, true
	}
	return nil, false
}

func (p params) has(key string) bool {
	v, ok := p.raw(key)
	return ok && v != nil
}

func (p params) str(key string) string {
	v, _ := p.raw(key)
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// boolean coerces like Grape's Boolean; ok is false when the value is not one.
func (p params) boolean(key string) (val, ok bool) {
	v, _ := p.raw(key)
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		switch strings.ToLower(v) {
		case "true", "t", "1", "yes", "y":
			return true, true
		case "false", "f", "0", "no", "n":
			return false, true
		}
	case float64:
		return v != 0, v == 0 || v == 1
	}
	return false, false
}

func (p params) integer(key string) (int64, bool) {
	v, _ := p.raw(key)
	switch v := v.(type) {
	case float64:
		return int64(v), v == float64(int64(v))
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// list reads an array parameter: a JSON array, repeated key[] values or a
// comma-separated string, as GitLab's CommaSeparatedToArray coercion does.
func (p params) list(key string) []string {
	v, _ := p.raw(key)
	var parts []string
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				parts = append(parts, strings.Split(s, ",")...)
			}
		}
	case string:
		parts = strings.Split(v, ",")
	}
	var out []string
	for _, s := range parts {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// pathID reads a numeric path parameter; Grape answers 400 "<name> is
// invalid" for anything else.
func pathID(w http.ResponseWriter, r *http.Request, name string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil {
		writeParamError(w, name+" is invalid")
		return 0, false
	}
	return id, true
}

// paginate writes GitLab's offset pagination headers for items and returns
// the requested page of them, or false after answering 400.
func paginate[T any](w http.ResponseWriter, r *http.Request, items []T) ([]T, bool) {
	q := r.URL.Query()
	page, perPage := 1, defaultPerPage
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeParamError(w, "page is invalid")
			return nil, false
		}
		page = max(n, 1)
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeParamError(w, "per_page is invalid")
			return nil, false
		}
		if n >= 1 {
			perPage = min(n, maxPerPage)
		}
	}
	total := len(items)
	start := min((page-1)*perPage, total)
	end := min(start+perPage, total)
	hasNext := end < total
	counted := total <= maxCountedRecords
	totalPages := (total + perPage - 1) / perPage

	h := w.Header()
	h.Set("X-Page", strconv.Itoa(page))
	h.Set("X-Per-Page", strconv.Itoa(perPage))
	h.Set("X-Next-Page", "")
	if hasNext {
		h.Set("X-Next-Page", strconv.Itoa(page+1))
	}
	h.Set("X-Prev-Page", "")
	if page > 1 {
		h.Set("X-Prev-Page", strconv.Itoa(page-1))
	}
	if counted {
		h.Set("X-Total", strconv.Itoa(total))
		h.Set("X-Total-Pages", strconv.Itoa(totalPages))
	}

	link := func(p int, rel string) string {
		lq := r.URL.Query()
		lq.Set("page", strconv.Itoa(p))
		lq.Set("per_page", strconv.Itoa(perPage))
		return fmt.Sprintf(`<http://%s%s?%s>; rel="%s"`, r.Host, r.URL.EscapedPath(), lq.Encode(), rel)
	}
	var links []string
	if page > 1 {
		links = append(links, link(page-1, "prev"))
	}
	if hasNext {
		links = append(links, link(page+1, "next"))
	}
	links = append(links, link(1, "first"))
	if counted {
		links = append(links, link(max(totalPages, 1), "last"))
	}
	h.Set("Link", strings.Join(links, ", "))
	return items[start:end], true
}

// timestamp formats like GitLab's API: UTC with milliseconds.
func timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func timestampPtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := timestamp(*t)
	return &s
}

// baseURL is the instance URL as the request reached it, for web_url fields.
func baseURL(r *http.Request) string {
	return "http://" + r.Host
}
