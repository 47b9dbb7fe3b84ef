package cli

import (
	"errors"
	"fmt"
)

// Exit codes of the gosling command.
const (
	ExitOK            = 0
	ExitError         = 1
	ExitCancelled     = 2
	ExitInvalidConfig = 3
	ExitAuth          = 4
)

// CodeError carries an exit code. Its message, if any, has been printed or is
// printed by Execute.
type CodeError struct {
	Code int
	Err  error
}

func (e *CodeError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *CodeError) Unwrap() error { return e.Err }

var errCancelled = &CodeError{Code: ExitCancelled, Err: errors.New("cancelled")}

// errSilent is a CodeError whose explanation was already printed.
func errSilent(code int) error { return &CodeError{Code: code} }

// flagError is a usage mistake; it is reported with a pointer to --help.
type flagError struct{ error }

func flagErrorf(format string, args ...any) error {
	return &flagError{fmt.Errorf(format, args...)}
}

// errMissing reports an answer that could not be asked for.
func errMissing(flag, what string) error {
	return flagErrorf("%s is required: pass --%s (no terminal to ask on, or --no-input was given)", what, flag)
}
