package gitlab

import "testing"

// Lines of the real gitlab-runner 12.8's job log and the stand-in's, as
// GitLab's log viewer shows them.
func TestPlainLogLine(t *testing.T) {
	for in, want := range map[string]string{
		"section_start:1796000000:get_sources\r\x1b[0K\x1b[0K\x1b[36;1mFetching changes with git depth set to 20...\x1b[0;m": "Fetching changes with git depth set to 20...",
		"section_end:1796000001:get_sources\r\x1b[0K":                                                   "",
		"\x1b[32;1m$ echo deploying\x1b[0;m":                                                            "$ echo deploying",
		"section_start:1796000002:step_script[collapsed=true]\r\x1b[0K\x1b[0KExecuting \"step_script\"": "Executing \"step_script\"",
		"\x1b[0KDownloading 10%\rDownloading 100%\r":                                                    "Downloading 100%",
		"plain line": "plain line",
	} {
		if got := PlainLogLine(in); got != want {
			t.Errorf("PlainLogLine(%q) = %q, want %q", in, got, want)
		}
	}
}
