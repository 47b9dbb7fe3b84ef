package gitlab

import (
	"regexp"
	"strings"
)

// Job logs as runners send them (PATCH /jobs/:id/trace) carry terminal
// markup: ANSI colour codes, "\r\x1b[0K" line clears, and collapsible
// section markers ("section_start:<unix time>:<name>[<options>]\r\x1b[0K"
// and "section_end:<unix time>:<name>\r\x1b[0K"), which GitLab's log viewer
// renders and a plain terminal or a file should not show.
var (
	logSectionRE = regexp.MustCompile(`section_(?:start|end):\d+:[A-Za-z0-9_.-]+(?:\[[^\]\r\n]*\])?\r?`)
	logANSIRE    = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)
)

// PlainLogLine is one line of a job log as GitLab's viewer shows it, in
// plain text: section markers and ANSI codes dropped, and of text that a
// carriage return rewrote, the last.
func PlainLogLine(line string) string {
	line = logSectionRE.ReplaceAllString(line, "")
	line = logANSIRE.ReplaceAllString(line, "")
	line = strings.TrimRight(line, "\r")
	if i := strings.LastIndexByte(line, '\r'); i >= 0 {
		line = line[i+1:]
	}
	return line
}
