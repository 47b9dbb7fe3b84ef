package runnerstandin

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/runnerapi"
	"github.com/pelletier/go-toml/v2"
)

// Config is gitlab-runner's config.toml (docs.gitlab.com/runner/configuration
// /advanced-configuration), the part the stand-in reads. Keys it does not
// know are reported as warnings and ignored, as gitlab-runner does.
type Config struct {
	// Concurrent limits the jobs run at once across all runners (default 1).
	Concurrent int `toml:"concurrent"`
	// CheckInterval is the pause, in seconds, between two job requests of
	// a runner that got none (default 3); long polling makes it matter
	// little.
	CheckInterval int `toml:"check_interval"`
	// LogLevel is accepted; the stand-in logs at the level its logger has.
	LogLevel  string `toml:"log_level"`
	LogFormat string `toml:"log_format"`
	// ListenAddress serves /metrics (and /debug/jobs/list), host:port.
	ListenAddress string `toml:"listen_address"`
	// ShutdownTimeout is how long, in seconds, a forceful stop waits for
	// aborted jobs to report (default 30).
	ShutdownTimeout int            `toml:"shutdown_timeout"`
	SessionServer   map[string]any `toml:"session_server"`
	Runners         []RunnerConfig `toml:"runners"`
}

// RunnerConfig is one [[runners]] entry.
type RunnerConfig struct {
	Name string `toml:"name"`
	// URL is the GitLab instance, such as https://gitlab.example.com.
	URL   string `toml:"url"`
	ID    int64  `toml:"id"`
	Token string `toml:"token"`
	// TokenObtainedAt and TokenExpiresAt are kept as gitlab-runner writes
	// them; the stand-in does not rotate tokens itself.
	TokenObtainedAt time.Time `toml:"token_obtained_at"`
	TokenExpiresAt  time.Time `toml:"token_expires_at"`
	// Executor must be shell: the stand-in refuses the others.
	Executor string `toml:"executor"`
	// Shell is bash (the default) for the shell executor.
	Shell string `toml:"shell"`
	// BuildsDir is where jobs run (default builds/ in the working
	// directory).
	BuildsDir string `toml:"builds_dir"`
	CacheDir  string `toml:"cache_dir"`
	// Environment adds or overrides variables, each "KEY=value"; job
	// variables override them in turn.
	Environment []string `toml:"environment"`
	// Limit caps this runner's jobs at once (0: only concurrent applies).
	Limit              int `toml:"limit"`
	RequestConcurrency int `toml:"request_concurrency"`
	// OutputLimit caps a job's log, in kilobytes (default 4096).
	OutputLimit int          `toml:"output_limit"`
	Cache       *CacheConfig `toml:"cache"`
	// Docker, Kubernetes and the like are recognised only to refuse them.
	Docker     map[string]any `toml:"docker"`
	Kubernetes map[string]any `toml:"kubernetes"`
	Machine    map[string]any `toml:"machine"`
	Autoscaler map[string]any `toml:"autoscaler"`
	Custom     map[string]any `toml:"custom"`
	// FeatureFlags are accepted and ignored.
	FeatureFlags map[string]bool `toml:"feature_flags"`
}

// CacheConfig is [runners.cache]: with Type = "s3" the stand-in restores
// and saves job caches in that bucket as gitlab-runner does; without a
// Type, in the runner's cache_dir. GCS and Azure are refused.
type CacheConfig struct {
	Type                   string         `toml:"Type"`
	Path                   string         `toml:"Path"`
	Shared                 bool           `toml:"Shared"`
	MaxUploadedArchiveSize int64          `toml:"MaxUploadedArchiveSize"`
	S3                     *CacheS3Config `toml:"s3"`
	GCS                    map[string]any `toml:"gcs"`
	Azure                  map[string]any `toml:"azure"`
}

// CacheS3Config is [runners.cache.s3]. AccessKey, SecretKey and
// SessionToken are secrets: never logged.
type CacheS3Config struct {
	ServerAddress      string `toml:"ServerAddress"`
	AccessKey          string `toml:"AccessKey"`
	SecretKey          string `toml:"SecretKey"`
	SessionToken       string `toml:"SessionToken"`
	BucketName         string `toml:"BucketName"`
	BucketLocation     string `toml:"BucketLocation"`
	Insecure           bool   `toml:"Insecure"`
	AuthenticationType string `toml:"AuthenticationType"`
	// PathStyle puts the bucket in the URL's path (host/bucket/key); it is
	// used anyway for addresses other than AWS's.
	PathStyle bool `toml:"PathStyle"`
}

// Defaults gitlab-runner applies.
const (
	DefaultConcurrent      = 1
	DefaultCheckInterval   = 3 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	DefaultOutputLimitKB   = 4096
)

// ErrInvalidConfig wraps every problem LoadConfig and Validate find.
var ErrInvalidConfig = errors.New("invalid config.toml")

// LoadConfig reads and checks a config.toml. Unknown keys come back as
// warnings (file:line and key), not errors.
func LoadConfig(path string) (*Config, []string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w (give the file with --config)", path, err)
	}
	cfg, warnings, err := ParseConfig(b)
	if err != nil {
		return nil, warnings, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, warnings, nil
}

// ParseConfig decodes and checks config.toml content.
func ParseConfig(b []byte) (*Config, []string, error) {
	var cfg Config
	var warnings []string
	err := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields().Decode(&cfg)
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		for _, e := range strict.Errors {
			row, _ := e.Position()
			warnings = append(warnings, fmt.Sprintf("line %d: unknown key %s is ignored by the stand-in", row, strings.Join(e.Key(), ".")))
		}
		cfg = Config{}
		err = toml.Unmarshal(b, &cfg)
	}
	if err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, warnings, fmt.Errorf("%w: line %d column %d: %s", ErrInvalidConfig, row, col, de.Error())
		}
		return nil, warnings, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, warnings, err
	}
	return &cfg, warnings, nil
}

func (c *Config) applyDefaults() {
	if c.Concurrent <= 0 {
		c.Concurrent = DefaultConcurrent
	}
	for i := range c.Runners {
		r := &c.Runners[i]
		if r.Shell == "" {
			r.Shell = "bash"
		}
		if r.OutputLimit <= 0 {
			r.OutputLimit = DefaultOutputLimitKB
		}
		if r.RequestConcurrency <= 0 {
			r.RequestConcurrency = 1
		}
	}
}

// checkInterval is the pause between requests of an idle runner.
func (c *Config) checkInterval() time.Duration {
	if c.CheckInterval <= 0 {
		return DefaultCheckInterval
	}
	return time.Duration(c.CheckInterval) * time.Second
}

func (c *Config) shutdownTimeout() time.Duration {
	if c.ShutdownTimeout <= 0 {
		return DefaultShutdownTimeout
	}
	return time.Duration(c.ShutdownTimeout) * time.Second
}

// Validate checks what the stand-in needs: every runner has a URL, a token
// and the shell executor with bash.
func (c *Config) Validate() error {
	var errs []error
	for i, r := range c.Runners {
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		if err := r.validate(); err != nil {
			errs = append(errs, fmt.Errorf("%w: runner %s: %v", ErrInvalidConfig, name, err))
		}
	}
	return errors.Join(errs...)
}

// unsupportedExecutors are gitlab-runner's executors the stand-in cannot
// run.
var unsupportedExecutors = []string{
	"docker", "docker-windows", "docker+machine", "docker-autoscaler", "instance",
	"kubernetes", "custom", "ssh", "parallels", "virtualbox",
}

func (r RunnerConfig) validate() error {
	switch {
	case r.URL == "":
		return errors.New("url is missing: set url = \"https://gitlab.example.com\"")
	case !strings.HasPrefix(r.URL, "http://") && !strings.HasPrefix(r.URL, "https://"):
		return fmt.Errorf("url %q: only http and https are supported", r.URL)
	case r.Token == "":
		return errors.New("token is missing: set the runner authentication token (glrt-...)")
	case r.Executor == "":
		return errors.New(`executor is missing: the stand-in runs executor = "shell"`)
	case slices.Contains(unsupportedExecutors, r.Executor) || r.Docker != nil && r.Executor != "shell":
		return fmt.Errorf("executor %q is not supported by the gitlab-runner STAND-IN, which runs only the shell executor; the real gitlab-runner runs %s jobs (on cloud machines the agent installs it)", r.Executor, r.Executor)
	case r.Executor != "shell":
		return fmt.Errorf("executor %q is unknown: use shell", r.Executor)
	case r.Shell != "bash":
		return fmt.Errorf("shell %q is not supported by the stand-in: use bash", r.Shell)
	}
	return nil
}

// ShortToken is how gitlab-runner names a runner in logs and metrics
// (helpers.ShortenToken): for glrt- tokens the nine characters after the
// prefix, else the first eight.
func ShortToken(token string) string {
	switch {
	case len(token) < 8:
		return token
	case strings.HasPrefix(token, "glrt-") && len(token) >= 14:
		return token[5:14]
	case strings.HasPrefix(token, "glcbt-") && len(token) >= 15:
		return token[6:15]
	default:
		return token[:8]
	}
}

// systemID reads or makes the runner system ID kept in dir's
// .runner_system_id (config.toml's directory), as gitlab-runner does
// (runnerapi.RunnerSystemID); r_ and 12 hex characters when there is no
// dir or it cannot be kept.
func systemID(dir string) string {
	if dir != "" {
		if id, err := runnerapi.RunnerSystemID(dir); err == nil {
			return id
		}
	}
	return "r_" + randomHex(6)
}
