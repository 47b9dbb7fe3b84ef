package fly

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// WriteText prints diagnostics for people: severity, summary, file:line:column,
// the source line with the problem underlined, and the detail that says how
// to fix it. A sensitive subject (a plaintext secret) is masked.
func WriteText(w io.Writer, diags hcl.Diagnostics, files map[string]*hcl.File, color bool) error {
	var b strings.Builder
	for _, d := range diags {
		sev, paint := "Error", "\x1b[1;31m"
		if d.Severity == hcl.DiagWarning {
			sev, paint = "Warning", "\x1b[1;33m"
		}
		if color {
			fmt.Fprintf(&b, "%s%s:\x1b[0m \x1b[1m%s\x1b[0m\n", paint, sev, d.Summary)
		} else {
			fmt.Fprintf(&b, "%s: %s\n", sev, d.Summary)
		}
		if s := d.Subject; s != nil {
			fmt.Fprintf(&b, "\n  on %s:%d:%d:\n", s.Filename, s.Start.Line, s.Start.Column)
			if f, ok := files[s.Filename]; ok && f != nil {
				writeSnippet(&b, f.Bytes, *s, IsSensitive(d))
			}
		}
		if d.Detail != "" {
			b.WriteString("\n")
			for _, line := range strings.Split(d.Detail, "\n") {
				b.WriteString(wrap(line, 78, ""))
				b.WriteString("\n")
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSnippet(b *strings.Builder, src []byte, rng hcl.Range, mask bool) {
	if rng.Start.Byte < 0 || rng.Start.Byte > len(src) {
		return
	}
	// Work in byte offsets: columns count characters, not bytes.
	lineStart := bytes.LastIndexByte(src[:rng.Start.Byte], '\n') + 1
	lineEnd := bytes.IndexByte(src[lineStart:], '\n')
	if lineEnd < 0 {
		lineEnd = len(src)
	} else {
		lineEnd += lineStart
	}
	line := strings.TrimRight(string(src[lineStart:lineEnd]), "\r")
	start := min(rng.Start.Byte-lineStart, len(line))
	end := min(max(rng.End.Byte-lineStart, start), len(line))
	if mask {
		m := maskOf(line[start:end])
		line = line[:start] + m + line[end:]
		end = start + len(m)
	}
	prefix := fmt.Sprintf("  %4d: ", rng.Start.Line)
	b.WriteString(prefix)
	b.WriteString(line)
	b.WriteString("\n")
	if end > start {
		b.WriteString(strings.Repeat(" ", len(prefix)+displayWidth(line[:start])))
		b.WriteString(strings.Repeat("^", max(1, displayWidth(line[start:end]))))
		b.WriteString("\n")
	}
}

// maskOf hides a secret but keeps its surrounding quotes, so the line still reads as code.
func maskOf(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return `"` + strings.Repeat("*", 8) + `"`
	}
	return strings.Repeat("*", 8)
}

func displayWidth(s string) int { return len([]rune(s)) }

func wrap(s string, width int, indent string) string {
	if len(s) <= width {
		return indent + s
	}
	var out strings.Builder
	col := 0
	for i, word := range strings.Fields(s) {
		if i > 0 && col+1+len(word) > width {
			out.WriteString("\n")
			col = 0
		} else if i > 0 {
			out.WriteString(" ")
			col++
		}
		if col == 0 {
			out.WriteString(indent)
		}
		out.WriteString(word)
		col += len(word)
	}
	return out.String()
}

// JSONDiagnostic is the machine-readable form of one diagnostic, for CI and editors.
type JSONDiagnostic struct {
	Severity string     `json:"severity"`
	Summary  string     `json:"summary"`
	Detail   string     `json:"detail,omitempty"`
	Range    *JSONRange `json:"range,omitempty"`
	// Snippet is the source line, masked when it holds a secret.
	Snippet string `json:"snippet,omitempty"`
}

// JSONRange is a source range; lines and columns count from 1.
type JSONRange struct {
	Filename    string `json:"filename"`
	Line        int    `json:"line"`
	Column      int    `json:"column"`
	EndLine     int    `json:"end_line"`
	EndColumn   int    `json:"end_column"`
	StartOffset int    `json:"start_offset"`
	EndOffset   int    `json:"end_offset"`
}

// ToJSON converts diagnostics to their JSON form.
func ToJSON(diags hcl.Diagnostics, files map[string]*hcl.File) []JSONDiagnostic {
	out := make([]JSONDiagnostic, 0, len(diags))
	for _, d := range diags {
		j := JSONDiagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			j.Severity = "warning"
		}
		if s := d.Subject; s != nil {
			j.Range = &JSONRange{
				Filename: s.Filename, Line: s.Start.Line, Column: s.Start.Column,
				EndLine: s.End.Line, EndColumn: s.End.Column,
				StartOffset: s.Start.Byte, EndOffset: s.End.Byte,
			}
			if f, ok := files[s.Filename]; ok && f != nil {
				var b strings.Builder
				writeSnippet(&b, f.Bytes, *s, IsSensitive(d))
				if first, _, ok := strings.Cut(b.String(), "\n"); ok {
					_, code, _ := strings.Cut(first, ": ")
					j.Snippet = code
				}
			}
		}
		out = append(out, j)
	}
	return out
}

// WriteJSON prints diagnostics as one JSON document.
func WriteJSON(w io.Writer, diags hcl.Diagnostics, files map[string]*hcl.File) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{
		"valid":       !diags.HasErrors(),
		"errors":      countSeverity(diags, hcl.DiagError),
		"warnings":    countSeverity(diags, hcl.DiagWarning),
		"diagnostics": ToJSON(diags, files),
	})
}

func countSeverity(diags hcl.Diagnostics, sev hcl.DiagnosticSeverity) int {
	n := 0
	for _, d := range diags {
		if d.Severity == sev {
			n++
		}
	}
	return n
}

// at writes a range's start as file:line:column.
func at(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}
