package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gosling-ci/gosling/internal/secretstore"
	"golang.org/x/term"
)

// IOStreams are a command's standard streams. Data goes to Out, progress and
// diagnostics to ErrOut.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	// StdinTTY and StdoutTTY say whether the streams are terminals.
	StdinTTY  bool
	StdoutTTY bool
	StderrTTY bool
	// NoInput forbids prompts even on a terminal.
	NoInput bool

	in *bufio.Reader
	// masked are the masking writers Out and ErrOut go through.
	masked []*secretstore.Writer
}

// System returns the process's streams.
func System() *IOStreams {
	return &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		StdinTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		StdoutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		StderrTTY: term.IsTerminal(int(os.Stderr.Fd())) && os.Getenv("NO_COLOR") == "",
	}
}

// Mask routes Out and ErrOut through writers that replace m's values with
// secretstore.Masked. Call Flush when done: a tail that may begin a value is
// held back until more is written.
func (s *IOStreams) Mask(m *secretstore.Masker) {
	out, errOut := secretstore.NewWriter(s.Out, m), secretstore.NewWriter(s.ErrOut, m)
	s.Out, s.ErrOut = out, errOut
	s.masked = append(s.masked, out, errOut)
}

// Flush writes what the masking writers hold back.
func (s *IOStreams) Flush() error {
	var first error
	for _, w := range s.masked {
		if err := w.Flush(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// CanPrompt tells whether the user can be asked a question.
func (s *IOStreams) CanPrompt() bool { return s.StdinTTY && s.StdoutTTY && !s.NoInput }

// Prompt asks a question on the terminal and returns the answer, or def when
// the answer is empty.
func (s *IOStreams) Prompt(question, def string) (string, error) {
	if s.in == nil {
		s.in = bufio.NewReader(s.In)
	}
	if def != "" {
		fmt.Fprintf(s.ErrOut, "? %s [%s]: ", question, def)
	} else {
		fmt.Fprintf(s.ErrOut, "? %s: ", question)
	}
	_ = s.Flush() // the whole question, before waiting for the answer
	line, err := s.in.ReadString('\n')
	if err != nil && line == "" {
		if err == io.EOF {
			return "", errCancelled
		}
		return "", err
	}
	line = strings.TrimSpace(line)
	if line == "" {
		return def, nil
	}
	return line, nil
}
