package fly

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	good := map[string]Size{
		"4GiB": 4 * GiB, "512MiB": 512 * MiB, "1.5GiB": 1536 * MiB, "20GB": 20e9, "1TiB": TiB, "100B": 100, "0B": 0, " 2 KiB ": 2 * KiB,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "4", "4 parsecs", "GiB", "-1GiB", "4gib", "1e400GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	if _, err := ParseSize("4096"); err == nil || !strings.Contains(err.Error(), "4096MiB") {
		t.Errorf("no-unit hint missing: %v", err)
	}
	if s := (1536 * MiB).String(); s != "1536MiB" {
		t.Errorf("String = %s", s)
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"15m": 15 * time.Minute, "1h30m": 90 * time.Minute, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour,
		"90s": 90 * time.Second, "250ms": 250 * time.Millisecond, "0": 0, "1.5h": 90 * time.Minute,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got.D(), err, want)
		}
	}
	for _, in := range []string{"", "15", "m", "15 minutes", "1y", "-5m", "9999999999w"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
	for _, d := range []string{"15m", "1h30m", "7d", "1d2h3m4s"} {
		v, _ := ParseDuration(d)
		if v.String() != d {
			t.Errorf("String(%s) = %s", d, v)
		}
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"1h"`), &d); err != nil || d.D() != time.Hour {
		t.Errorf("unmarshal: %v %v", d, err)
	}
}

func TestValidCron(t *testing.T) {
	for _, c := range []string{"*/5 * * * *", "0 3 * * 1", "30 4 * * SUN", "0 0 1,15 * *", "0 9-17/2 * * MON-FRI", "@daily", "@every 15m", "0 0 * JAN-MAR 7"} {
		if err := ValidCron(c); err != nil {
			t.Errorf("ValidCron(%q): %v", c, err)
		}
	}
	for _, c := range []string{"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "@sometimes", "@every", "@every -1m", "a * * * *", "1,,2 * * * *"} {
		if err := ValidCron(c); err == nil {
			t.Errorf("ValidCron(%q) accepted", c)
		}
	}
}

func TestValidHost(t *testing.T) {
	for _, h := range []string{"gitlab.com", "gitlab.example.com", "acme.gitlab-dedicated.com", "gitlab.example.com:8443", "localhost:8929", "127.0.0.1:8080", "gitlab.com."} {
		if err := ValidHost(h); err != nil {
			t.Errorf("ValidHost(%q): %v", h, err)
		}
	}
	for _, h := range []string{"gitlab", "https://gitlab.com", "-gitlab.com", "gitlab..com", "git_lab.com", "gitlab.com:0", "gitlab.123"} {
		if err := ValidHost(h); err == nil {
			t.Errorf("ValidHost(%q) accepted", h)
		}
	}
}

func TestParseSecretURI(t *testing.T) {
	cases := map[string]SecretURI{
		"yc-lockbox://e6q0abc/token":             {Scheme: SchemeLockbox, Path: "e6q0abc", Key: "token"},
		"aws-sm://ci/gitlab/token":               {Scheme: SchemeAWSSM, Path: "ci/gitlab", Key: "token"},
		"vault://secret/ci/gitlab/token":         {Scheme: SchemeVault, Path: "secret/ci/gitlab", Key: "token"},
		"vault://kv/app/key?version=3":           {Scheme: SchemeVault, Path: "kv/app", Key: "key", Version: "3"},
		"local://gitlab/webhook":                 {Scheme: SchemeLocal, Path: "gitlab", Key: "webhook"},
		"aws-sm://prod/db+creds@v1/password":     {Scheme: SchemeAWSSM, Path: "prod/db+creds@v1", Key: "password"},
		"yc-lockbox://e6q0abc/key?version=abc12": {Scheme: SchemeLockbox, Path: "e6q0abc", Key: "key", Version: "abc12"},
	}
	for in, want := range cases {
		got, err := ParseSecretURI(in)
		if err != nil || got != want {
			t.Errorf("ParseSecretURI(%q) = %+v, %v", in, got, err)
		}
		if got.String() != in {
			t.Errorf("String() = %q, want %q", got.String(), in)
		}
	}
	bad := []string{"glpat-xyz", "s3://bucket/key", "vault://onlypath", "vault://path/", "yc-lockbox://a/b/c", "vault://p/k?v=1", "vault://p/k?version=", "aws-sm://bad name/k", "vault:///abs/k"}
	for _, in := range bad {
		_, err := ParseSecretURI(in)
		if err == nil {
			t.Errorf("ParseSecretURI(%q) accepted", in)
			continue
		}
		if strings.Contains(err.Error(), in) {
			t.Errorf("error repeats the input: %v", err)
		}
	}
}
