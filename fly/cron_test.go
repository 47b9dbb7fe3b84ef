package fly

import (
	"strings"
	"testing"
	"time"
)

func TestNeverFires(t *testing.T) {
	cases := []struct {
		expr  string
		never bool
	}{
		{"0 0 31 2 *", true},
		{"0 0 30 2 *", true},
		{"0 0 31 4,6,9,11 *", true},
		{"0 0 30,31 feb *", true},
		{"0 0 29 2 * 2023", true},
		{"0 0 29 2 * 2024", false},
		{"0 0 29 2 *", false},
		{"0 0 31 1-4 *", false},
		{"0 0 13 * fri", false},
		{"0 0 0 31 2 * *", true}, // seven fields, seconds first
		{"@every 1h", false},
		{"@monthly", false},
	}
	for _, c := range cases {
		s, err := ParseCron(c.expr)
		if err != nil {
			t.Fatalf("%q: %v", c.expr, err)
		}
		if got := s.NeverFires(); got != c.never {
			t.Errorf("%q: NeverFires = %v, want %v", c.expr, got, c.never)
		}
	}
}

func TestParseCronFields(t *testing.T) {
	s, err := ParseCron("CRON_TZ=Europe/Amsterdam @every 1d/3h # nightly")
	if err != nil {
		t.Fatal(err)
	}
	if !s.HasTimeZone || s.TimeZone != "Europe/Amsterdam" || s.Every != 24*time.Hour || s.Offset != 3*time.Hour || s.Comment != "nightly" || !s.IsInterval() {
		t.Errorf("parsed %+v", s)
	}
	s, err = ParseCron("0 3 * * 1")
	if err != nil || s.HasTimeZone || s.IsInterval() {
		t.Errorf("parsed %+v, %v", s, err)
	}
}

func TestCronErrorsGiveHints(t *testing.T) {
	cases := map[string]string{
		"@every 2w":                       "write 2w as 14d",
		"@every 500ms":                    "minimum interval of 1s",
		"0 0 L * *":                       "Temporal has no L",
		"0 0 12 ? * MON":                  "Temporal has no '?'",
		"0 9 * * 5#3":                     `"0 9 15-21 * FRI" is the third Friday`,
		"CRON_TZ=Local 0 3 * * *":         "whichever machine",
		"CRON_TZ=america/new_york @daily": `"America/New_York"`,
		"CRON_TZ=UTC+3 @daily":            `"Etc/GMT-3"`,
		"* * * *":                         "five fields",
		"@DAILY":                          "lower case",
	}
	for expr, hint := range cases {
		_, err := ParseCron(expr)
		if err == nil || !strings.Contains(err.Error(), hint) {
			t.Errorf("ParseCron(%q) = %v, want a hint with %q", expr, err, hint)
		}
	}
}

// FuzzParseCron checks that no schedule string makes ParseCron or
// NeverFires panic or hang.
func FuzzParseCron(f *testing.F) {
	for _, s := range []string{"*/5 * * * *", "5/9223372036854775807 * * * *", "CRON_TZ=UTC @every 1d/3h # x", "0 0 31 2 * 2000-2100/7", "30 0 3 * * mon-fri 2030"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCron(s)
		if err == nil {
			c.NeverFires()
		}
	})
}

// TestSixFieldsSecondsFirst: six fields with any year are Spring's
// seconds-first form to a reader, and Temporal's minute-first form with a
// year to Temporal; the warning gives the five fields that were meant.
func TestSixFieldsSecondsFirst(t *testing.T) {
	for expr, want := range map[string]string{
		"0 */5 * * * *":                      "*/5 * * * *",
		"30 0 9 * * MON-FRI *":               "",
		"0 3 * * * 2030":                     "",
		"0 9 * * *":                          "",
		"CRON_TZ=Europe/Berlin 0 0 12 * * *": "CRON_TZ=Europe/Berlin 0 12 * * *",
	} {
		c, err := ParseCron(expr)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		if c.SecondsFirst != want {
			t.Errorf("%q: SecondsFirst %q, want %q", expr, c.SecondsFirst, want)
		}
	}
}

// TestSizeHint: a size written as a bare number is shown as what it most
// probably meant: MiB for large numbers, GiB for small ones.
func TestSizeHint(t *testing.T) {
	for f, want := range map[float64]string{
		4096: `memory = "4096MiB" or "4GiB"`,
		1500: `memory = "1500MiB"`,
		4:    `memory = "4GiB"`,
		0.5:  `memory = "0.5GiB"`,
	} {
		if got := sizeHint("memory", f); got != want {
			t.Errorf("%v: %s, want %s", f, got, want)
		}
	}
}
