package secretstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

type token struct{ v string }

func (t token) String() string { return "token(" + t.v + ")" }

func TestHandlerMasksMessagesAndAttrs(t *testing.T) {
	m := NewMasker()
	const secret = "glrt-HandlerSecret-42"
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), m))
	// Attributes bound before the value is known are masked too.
	bound := log.With("early", "prefix "+secret).WithGroup("g").With("inner", secret)
	m.Add(secret, "ab") // "ab" is too short to mask
	log.Info("token is "+secret, "plain", secret, "err", errors.New("bad token "+secret),
		"stringer", token{secret}, "struct", struct{ T string }{secret},
		slog.Group("grp", "nested", secret), "n", 42, "ab", "ab")
	bound.Info("bound", "x", "quote\"d "+secret)
	out := buf.String()
	if strings.Contains(out, "HandlerSecret") {
		t.Fatalf("log holds the secret:\n%s", out)
	}
	for _, want := range []string{`"msg":"token is [masked]"`, `"plain":"[masked]"`, `"err":"bad token [masked]"`,
		`"stringer":"token([masked])"`, `"nested":"[masked]"`, `"n":42`, `"ab":"ab"`, `"early":"prefix [masked]"`, `"inner":"[masked]"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

func TestHandlerKeepsValuesWithoutSecrets(t *testing.T) {
	m := NewMasker()
	m.Add("some-secret-value")
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), m))
	log.Info("ok", "err", errors.New("plain"), "list", []int{1, 2})
	if out := buf.String(); !strings.Contains(out, `"list":[1,2]`) || !strings.Contains(out, `"err":"plain"`) {
		t.Errorf("values changed: %s", out)
	}
	if !log.Enabled(context.Background(), slog.LevelInfo) || log.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("Enabled is not the inner handler's")
	}
}

func TestMaskerOverlapsAndEscapes(t *testing.T) {
	m := NewMasker()
	m.Add("abcd", "abcdefgh", "with\"quote", "  padded-value\n")
	if got := m.Mask("x abcdefgh y abcd"); got != "x [masked] y [masked]" {
		t.Errorf("overlap = %q", got)
	}
	if got := m.Mask(`{"v":"with\"quote"}`); got != `{"v":"[masked]"}` {
		t.Errorf("JSON-escaped = %q", got)
	}
	if got := m.Mask("v=padded-value."); got != "v=[masked]." {
		t.Errorf("trimmed = %q", got)
	}
	var nilMasker *Masker
	if nilMasker.Mask("abcd") != "abcd" {
		t.Error("a nil Masker changed text")
	}
}

func TestWriterMasksAcrossWrites(t *testing.T) {
	m := NewMasker()
	const secret = "glrt-WriterSecret-99"
	m.Add(secret, "Secret-99-other")
	var out bytes.Buffer
	w := NewWriter(&out, m)
	text := "token: " + secret + "\nagain " + secret + " end\nglrt-Writ"
	// Byte by byte, the worst split.
	for i := range len(text) {
		if _, err := w.Write([]byte{text[i]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "token: [masked]\nagain [masked] end\nglrt-Writ"
	if out.String() != want {
		t.Errorf("output = %q, want %q", out.String(), want)
	}
	// Larger chunks at every split point.
	for cut := range len(text) {
		out.Reset()
		fmt.Fprint(w, text[:cut])
		fmt.Fprint(w, text[cut:])
		_ = w.Flush()
		if out.String() != want {
			t.Fatalf("split at %d: %q", cut, out.String())
		}
	}
}

func TestWriterPassesPlainTextAtOnce(t *testing.T) {
	m := NewMasker()
	m.Add("zzzz-secret")
	var out bytes.Buffer
	w := NewWriter(&out, m)
	fmt.Fprint(w, "hello world\n")
	if out.String() != "hello world\n" {
		t.Errorf("plain text held back: %q", out.String())
	}
	fmt.Fprint(w, "ends with zz")
	if out.String() != "hello world\nends with " {
		t.Errorf("a possible prefix was not held: %q", out.String())
	}
	_ = w.Flush()
	if out.String() != "hello world\nends with zz" {
		t.Errorf("flush: %q", out.String())
	}
}
