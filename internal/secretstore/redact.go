package secretstore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Masked replaces a secret value in logs and output.
const Masked = "[masked]"

// MinMaskedLen is the shortest value a Masker registers: masking every
// "1" or "yes" in a log would hide more than it protects.
const MinMaskedLen = 4

// Masker holds the secret values that must never be shown. It is safe for
// concurrent use; one Masker is shared by the resolvers, the log handler and
// the output writers of a process.
type Masker struct {
	mu     sync.RWMutex
	values map[string]struct{}
	gen    atomic.Uint64
	// rep is rebuilt after each Add, longest values first so that a value
	// containing another is masked whole.
	rep    *strings.Replacer
	maxLen int
}

// NewMasker returns an empty Masker.
func NewMasker() *Masker {
	return &Masker{values: map[string]struct{}{}}
}

// Add registers values (and their JSON-escaped forms) for masking.
func (m *Masker) Add(values ...string) {
	if m == nil {
		return
	}
	var add []string
	for _, v := range values {
		if len(v) < MinMaskedLen {
			continue
		}
		add = append(add, v)
		if b, err := json.Marshal(v); err == nil {
			if esc := string(b[1 : len(b)-1]); esc != v {
				add = append(add, esc)
			}
		}
		if t := strings.TrimSpace(v); t != v && len(t) >= MinMaskedLen {
			add = append(add, t)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	for _, v := range add {
		if _, ok := m.values[v]; !ok {
			m.values[v] = struct{}{}
			changed = true
		}
	}
	if !changed {
		return
	}
	all := make([]string, 0, len(m.values))
	for v := range m.values {
		all = append(all, v)
		m.maxLen = max(m.maxLen, len(v))
	}
	slices.SortFunc(all, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(all))
	for _, v := range all {
		pairs = append(pairs, v, Masked)
	}
	m.rep = strings.NewReplacer(pairs...)
	m.gen.Add(1)
}

// Len is the number of registered values.
func (m *Masker) Len() int {
	if m == nil {
		return 0
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.values)
}

func (m *Masker) replacer() *strings.Replacer {
	if m == nil {
		return nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rep
}

// Mask returns s with every registered value replaced by Masked.
func (m *Masker) Mask(s string) string {
	rep := m.replacer()
	if rep == nil || s == "" {
		return s
	}
	return rep.Replace(s)
}

// Contains tells whether s holds a registered value.
func (m *Masker) Contains(s string) bool {
	return m.Mask(s) != s
}

// NewHandler wraps h so that every registered value in a record's message
// and attributes (including those added by WithAttrs, and values registered
// after them) is replaced by Masked.
func NewHandler(h slog.Handler, m *Masker) slog.Handler {
	return &redactHandler{inner: h, masker: m, derived: &atomic.Pointer[derivedHandler]{}}
}

type redactHandler struct {
	inner  slog.Handler
	masker *Masker
	// steps are the WithGroup and WithAttrs calls, replayed on inner with
	// masked attributes whenever the Masker has changed.
	steps   []handlerStep
	derived *atomic.Pointer[derivedHandler]
}

type handlerStep struct {
	group string
	attrs []slog.Attr
}

type derivedHandler struct {
	gen uint64
	h   slog.Handler
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(handlerStep{attrs: slices.Clone(attrs)})
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(handlerStep{group: name})
}

func (h *redactHandler) with(s handlerStep) *redactHandler {
	return &redactHandler{
		inner: h.inner, masker: h.masker,
		steps:   append(slices.Clip(h.steps), s),
		derived: &atomic.Pointer[derivedHandler]{},
	}
}

// target is inner with the steps applied, rebuilt when the Masker changed.
func (h *redactHandler) target() slog.Handler {
	if len(h.steps) == 0 {
		return h.inner
	}
	gen := h.masker.generation()
	if d := h.derived.Load(); d != nil && d.gen == gen {
		return d.h
	}
	t := h.inner
	for _, s := range h.steps {
		if s.group != "" {
			t = t.WithGroup(s.group)
			continue
		}
		masked := make([]slog.Attr, len(s.attrs))
		for i, a := range s.attrs {
			masked[i] = h.maskAttr(a)
		}
		t = t.WithAttrs(masked)
	}
	h.derived.Store(&derivedHandler{gen: gen, h: t})
	return t
}

func (m *Masker) generation() uint64 {
	if m == nil {
		return 0
	}
	return m.gen.Load()
}

func (h *redactHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.masker.Mask(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.maskAttr(a))
		return true
	})
	return h.target().Handle(ctx, out)
}

func (h *redactHandler) maskAttr(a slog.Attr) slog.Attr {
	a.Key = h.masker.Mask(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(h.masker.Mask(v.String()))
	case slog.KindGroup:
		g := v.Group()
		masked := make([]slog.Attr, len(g))
		for i, x := range g {
			masked[i] = h.maskAttr(x)
		}
		a.Value = slog.GroupValue(masked...)
	case slog.KindAny:
		// Errors, Stringers and structs: compare their text; keep the
		// value as it is when it holds no secret.
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			s = fmt.Sprintf("%+v", x)
		}
		if m := h.masker.Mask(s); m != s {
			a.Value = slog.StringValue(m)
		} else {
			a.Value = v
		}
	default:
		a.Value = v
	}
	return a
}

// Writer masks registered values in what is written through it. A value
// split across two writes is still masked: a tail that may begin a value is
// held back until the next write or Flush.
type Writer struct {
	mu      sync.Mutex
	w       io.Writer
	masker  *Masker
	pending []byte
}

// NewWriter returns a masking writer over w. Call Flush when done.
func NewWriter(w io.Writer, m *Masker) *Writer {
	return &Writer{w: w, masker: m}
}

// Write implements io.Writer; it reports len(p) when everything before the
// held-back tail was written.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = append(w.pending, p...)
	cut := w.holdFrom(w.pending)
	if err := w.emit(w.pending[:cut]); err != nil {
		w.pending = w.pending[:0]
		return 0, err
	}
	w.pending = append(w.pending[:0], w.pending[cut:]...)
	return len(p), nil
}

// Flush writes what was held back.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.emit(w.pending)
	w.pending = w.pending[:0]
	return err
}

func (w *Writer) emit(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := io.WriteString(w.w, w.masker.Mask(string(b)))
	return err
}

// holdFrom returns where the held-back tail of b starts: at the longest
// tail that is a proper prefix of a registered value, moved back to the
// start of any value that crosses it, so emit never splits a value.
func (w *Writer) holdFrom(b []byte) int {
	m := w.masker
	if m == nil || len(b) == 0 {
		return len(b)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	cut := len(b)
	for i := max(0, len(b)-m.maxLen+1); i < len(b) && cut == len(b); i++ {
		tail := string(b[i:])
		for v := range m.values {
			if len(v) > len(tail) && strings.HasPrefix(v, tail) {
				cut = i
				break
			}
		}
	}
	for moved := true; moved && cut > 0 && cut < len(b); {
		moved = false
		for v := range m.values {
			lo := max(0, cut-len(v)+1)
			if j := strings.Index(string(b[lo:min(len(b), cut+len(v)-1)]), v); j >= 0 && lo+j < cut {
				cut, moved = lo+j, true
			}
		}
	}
	return cut
}
