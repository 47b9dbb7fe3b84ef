package cli

import (
	"errors"
	"strconv"

	"github.com/spf13/pflag"
)

type pflagFlag = pflag.Flag

// unsetInt is a non-negative int flag that is -1 until given, so its
// usage can say what it defaults to instead of pflag showing "-1".
type unsetInt struct{ p *int }

func (u unsetInt) String() string {
	if u.p == nil || *u.p < 0 {
		return ""
	}
	return strconv.Itoa(*u.p)
}

func (u unsetInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not a whole number")
	}
	if n < 0 {
		return errors.New("must not be negative")
	}
	*u.p = n
	return nil
}

func (u unsetInt) Type() string { return "int" }

// nestFlag registers --nest the same way on every command: it reads
// $GOSLING_NEST; a command that needs a Nest falls back to the current
// directory, one that can run without one falls back to none, and its
// usage says what none means.
func nestFlag(fs *pflag.FlagSet, dst *string, getenv func(string) (string, bool), usage, withoutNest string) {
	def := "."
	if withoutNest != "" {
		def = ""
		usage += "; none: " + withoutNest
	}
	if v, ok := getenv("GOSLING_NEST"); ok && v != "" {
		def = v
	}
	fs.StringVar(dst, "nest", def, usage+" ($GOSLING_NEST)")
}
