package agent

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runnerCaps is what the agent knows of the gitlab-runner binary it runs:
// its version (`gitlab-runner --version`) and the flags its run-single
// takes (`gitlab-runner run-single --help`). run-single read its runner
// from config.toml (--config, --runner) only from GitLab Runner 17; before
// that every setting is a flag or an environment variable
// (CI_SERVER_TOKEN, RUNNER_*, CACHE_*), and it serves no metrics: a 12.8
// run-single given --config ends with "FATAL: flag provided but not
// defined: -config".
type runnerCaps struct {
	version string
	// singleFlags are the long flags run-single lists.
	singleFlags []string
}

// singleReadsConfig tells whether run-single takes --config and --runner.
func (c runnerCaps) singleReadsConfig() bool {
	if len(c.singleFlags) > 0 {
		return slices.Contains(c.singleFlags, "config") && slices.Contains(c.singleFlags, "runner")
	}
	// No help to read: go by the version.
	major, _ := versionMajorMinor(c.version)
	return major >= 17
}

// singleListens tells whether run-single takes --listen-address.
func (c runnerCaps) singleListens() bool {
	if len(c.singleFlags) > 0 {
		return slices.Contains(c.singleFlags, "listen-address")
	}
	major, _ := versionMajorMinor(c.version)
	return major >= 17
}

var (
	versionRE  = regexp.MustCompile(`(?m)^Version:\s*(\S+)`)
	longFlagRE = regexp.MustCompile(`--([a-z][a-z0-9_-]*)`)
	majMinRE   = regexp.MustCompile(`^v?(\d+)\.(\d+)`)
)

// versionMajorMinor reads "12.8.0~pre.8e5683f8" as 12, 8 (0, 0 when it
// cannot).
func versionMajorMinor(v string) (int, int) {
	m := majMinRE.FindStringSubmatch(v)
	if m == nil {
		return 0, 0
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major, minor
}

// detectRunner asks gitlab-runner its version and run-single's flags.
func detectRunner(ctx context.Context, binary string) (runnerCaps, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return runnerCaps{}, fmt.Errorf("%s --version: %w", binary, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return runnerCaps{}, fmt.Errorf("%s --version printed no Version: line", binary)
	}
	caps := runnerCaps{version: string(m[1])}
	// Help goes to stdout or stderr depending on the version.
	help, _ := exec.CommandContext(ctx, binary, "run-single", "--help").CombinedOutput()
	for _, f := range longFlagRE.FindAllStringSubmatch(string(help), -1) {
		if !slices.Contains(caps.singleFlags, f[1]) {
			caps.singleFlags = append(caps.singleFlags, f[1])
		}
	}
	return caps, nil
}

// runnerVersion asks gitlab-runner its version.
func runnerVersion(ctx context.Context, binary string) (string, error) {
	caps, err := detectRunner(ctx, binary)
	return caps.version, err
}

// legacySingle is run-single's command line and environment for a
// gitlab-runner whose run-single reads no config.toml: the settings of
// sp as flags, and as environment variables what must stay off the
// command line (the token, the runner's variables, the cache's keys). The
// shell executor passes gitlab-runner's environment on to the job, which
// is how the runner's variables reach it.
func legacySingle(sp runnerSpec, flags []string) (args, env []string) {
	e := runnerEntryOf(sp)
	args = []string{"run-single", "--url", e.URL, "--name", e.Name, "--executor", e.Executor}
	if e.Shell != "" {
		args = append(args, "--shell", e.Shell)
	}
	if e.BuildsDir != "" {
		args = append(args, "--builds-dir", e.BuildsDir)
	}
	if e.Docker != nil {
		args = append(args, "--docker-image", e.Docker.Image, "--docker-pull-policy", strings.Join(e.Docker.PullPolicy, ","))
	}
	args = append(args, flags...)
	env = append(env, "CI_SERVER_TOKEN="+e.Token)
	env = append(env, e.Environment...)
	if c := e.Cache; c != nil {
		env = append(env, "CACHE_TYPE="+c.Type, "CACHE_SHARED="+strconv.FormatBool(c.Shared),
			"CACHE_S3_SERVER_ADDRESS="+c.S3.ServerAddress, "CACHE_S3_ACCESS_KEY="+c.S3.AccessKey,
			"CACHE_S3_SECRET_KEY="+c.S3.SecretKey, "CACHE_S3_BUCKET_NAME="+c.S3.BucketName,
			"CACHE_S3_BUCKET_LOCATION="+c.S3.BucketLocation, "CACHE_S3_INSECURE="+strconv.FormatBool(c.S3.Insecure))
	}
	return args, env
}
