package api

import (
	"testing"
)

func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{
		"https://gitlab.com":            "gitlab.com",
		"https://GitLab.example.com/":   "gitlab.example.com",
		"https://gitlab.com:443":        "gitlab.com",
		"http://127.0.0.1:8929":         "127.0.0.1:8929",
		"http://gitlab.local:80/x":      "gitlab.local",
		"gitlab.com":                    "",
		"ftp://gitlab.com":              "",
		"":                              "",
		"https://gitlab.example.com/gl": "gitlab.example.com",
	} {
		if got := hostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}
