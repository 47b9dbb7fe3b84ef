package fly

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The schedule strings of UF/config.fly and Jobs/*.fly become Temporal
// Schedules' cron strings (ScheduleSpec.cron_string). ParseCron accepts what
// the Temporal server accepts there and refuses what it refuses; its rules
// follow go.temporal.io/server v1.29.1 (the server inside the Temporal CLI
// v1.5.1): service/worker/scheduler/calendar.go (parseCronString, makeRange,
// parseValue, parseCronStringInterval), spec.go (canonicalizeSpec,
// validateInterval, validateStructuredCalendar, loadTimezone) and
// common/primitives/timestamp/parse_duration.go. fly_test's
// TestCronAgreesWithTemporal holds the two side by side.
//
// fly is stricter than Temporal in three places, each on purpose:
//   - a CRON_TZ=/TZ= zone must be an IANA name, not "Local" or empty (they
//     mean the zone of whichever machine runs the server), and must exist
//     even before @every, where Temporal ignores it;
//   - "5#3" (Quartz's third Friday) is refused: Temporal reads everything
//     after '#' as a comment, so it would run every Friday;
//   - see CheckTimeZone for the zone rules.

// CronSchedule is a parsed schedule string: a calendar (second, minute, hour,
// day of month, month, day of week, year) or an @every interval.
type CronSchedule struct {
	// TimeZone is the zone of a CRON_TZ= or TZ= prefix; HasTimeZone tells
	// whether there was one.
	TimeZone    string
	HasTimeZone bool
	// Comment is the text after '#'.
	Comment string
	// Every and Offset are an "@every 1h/15m" interval and its offset
	// (Temporal's IntervalSpec interval and phase); zero for calendars.
	Every, Offset time.Duration
	// SecondsFirst is set for six fields whose sixth, the year, is "*":
	// Spring's and Quartz's seconds-first form, which Temporal reads as
	// minute, hour, day of month, month, day of week and year. It holds
	// the five-field form that was probably meant (the first field
	// dropped).
	SecondsFirst string

	cal *cronCalendar
}

// IsInterval tells whether the schedule is an @every interval.
func (c CronSchedule) IsInterval() bool { return c.cal == nil }

// cronCalendar holds each calendar field as the set of values it matches.
// Days of the week run from 0 (Sunday) to 6; 7 is folded into 0.
type cronCalendar struct {
	second, minute, hour, dayOfMonth, month, dayOfWeek uint64
	// years has bit y-2000 set for each matching year; all years when allYears.
	years    [2]uint64
	allYears bool
}

// Limits of Temporal's calendar specs.
const (
	cronMinYear       = 2000
	cronMaxYear       = 2100
	cronMaxCommentLen = 200
)

type cronParseMode int

const (
	cronInt cronParseMode = iota
	cronYear
	cronMonth
	cronDow
)

var (
	cronMonthNames = []string{"january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}
	cronDowNames   = []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}
	// Temporal's duration reader turns "1.5d" into hours before Go reads it.
	cronDaysRE = regexp.MustCompile(`(\d+(\.\d*)?|(\.\d+))d`)
)

const cronFormHint = `Use five fields "minute hour day-of-month month day-of-week" (such as "0 3 * * 1"), ` +
	`six with a year, seven with seconds first, a descriptor (@hourly, @daily, @weekly, @monthly, @yearly) ` +
	`or "@every <duration>" (such as "@every 15m")`

// ValidCron checks a schedule string as Temporal Schedules accept it; see
// ParseCron.
func ValidCron(expr string) error {
	_, err := ParseCron(expr)
	return err
}

// ParseCron reads a schedule string as Temporal Schedules read a cron string:
//
//   - an optional "CRON_TZ=Europe/Amsterdam " (or "TZ=") prefix;
//   - five fields (minute hour day-of-month month day-of-week), six (a year
//     after them, 2000 to 2100) or seven (seconds first), each "*", a value,
//     a range "a-b", a step "*/n", "a/n" or "a-b/n", or a comma list of these;
//     months by number or by at least three letters of their name ("jan",
//     "sept"), days of the week 0 to 7 (0 and 7 are Sunday) or at least two
//     letters ("mo", "thurs"); a day must match both the day of month and the
//     day of the week when both are given;
//   - @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly;
//   - "@every <duration>" or "@every <duration>/<offset>", durations in Go's
//     units (ns, us, ms, s, m, h) plus d for 24 hours, the interval at least
//     one second and the offset below it: "@every 90m", "@every 1d/3h";
//   - a comment after '#', at most 200 characters.
//
// "2w", "L", "W" and "?" are not Temporal's; the error names a form that is.
func ParseCron(expr string) (CronSchedule, error) {
	var out CronSchedule
	c := strings.TrimSpace(expr)
	if strings.HasPrefix(c, "TZ=") || strings.HasPrefix(c, "CRON_TZ=") {
		tz, rest, found := strings.Cut(c, " ")
		if !found {
			return out, fmt.Errorf("%q names a time zone but no schedule: write the schedule after a space, such as \"CRON_TZ=Europe/Amsterdam 0 3 * * *\"", expr)
		}
		c = rest
		_, out.TimeZone, _ = strings.Cut(tz, "=")
		out.HasTimeZone = true
		if err := CheckTimeZone(out.TimeZone); err != nil {
			return out, fmt.Errorf("the %s prefix: %w", strings.SplitN(tz, "=", 2)[0]+"=", err)
		}
	}
	if i := strings.IndexByte(c, '#'); i > 0 && !unicode.IsSpace(rune(c[i-1])) {
		return out, fmt.Errorf("%q: Temporal reads everything after '#' as a comment, so %q would run on every such day, not on the nth one. "+
			"For \"the nth weekday\", give the days it can fall on and the weekday, which Temporal matches together: \"0 9 15-21 * FRI\" is the third Friday; "+
			"for a comment, put a space before '#'", expr, c[strings.LastIndexAny(c[:i], " \t")+1:])
	}
	c, out.Comment, _ = strings.Cut(c, "#")
	c = strings.TrimSpace(c)
	out.Comment = strings.TrimSpace(out.Comment)

	if strings.HasPrefix(c, "@every") {
		if err := parseCronInterval(c, &out); err != nil {
			return out, err
		}
		return out, nil
	}
	switch c {
	case "@yearly", "@annually":
		c = "0 0 1 1 *"
	case "@monthly":
		c = "0 0 1 * *"
	case "@weekly":
		c = "0 0 * * 0"
	case "@daily", "@midnight":
		c = "0 0 * * *"
	case "@hourly":
		c = "0 * * * *"
	}
	if strings.HasPrefix(c, "@") {
		return out, fmt.Errorf("unknown descriptor %q: use @hourly, @daily, @weekly, @monthly, @yearly or @every <duration> (descriptors are lower case)", c)
	}
	f := strings.Fields(c)
	var sec, minute, hour, dom, mon, dow, year string
	switch len(f) {
	case 5:
		sec, minute, hour, dom, mon, dow, year = "0", f[0], f[1], f[2], f[3], f[4], "*"
	case 6:
		sec, minute, hour, dom, mon, dow, year = "0", f[0], f[1], f[2], f[3], f[4], f[5]
		if f[5] == "*" {
			out.SecondsFirst = strings.Join(f[1:], " ")
			if out.HasTimeZone {
				out.SecondsFirst = "CRON_TZ=" + out.TimeZone + " " + out.SecondsFirst
			}
		}
	case 7:
		sec, minute, hour, dom, mon, dow, year = f[0], f[1], f[2], f[3], f[4], f[5], f[6]
	default:
		return out, fmt.Errorf("a schedule has 5 to 7 fields, this one has %d. %s", len(f), cronFormHint)
	}
	cal := &cronCalendar{}
	var errs []string
	field := func(s, name string, lo, hi int, mode cronParseMode) []int {
		vals, err := cronRange(s, lo, hi, mode)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s field %q: %v", name, s, err))
		}
		return vals
	}
	cal.second = bits(field(sec, "second", 0, 59, cronInt))
	cal.minute = bits(field(minute, "minute", 0, 59, cronInt))
	cal.hour = bits(field(hour, "hour", 0, 23, cronInt))
	cal.dayOfMonth = bits(field(dom, "day-of-month", 1, 31, cronInt))
	cal.month = bits(field(mon, "month", 1, 12, cronMonth))
	dows := field(dow, "day-of-week", 0, 7, cronDow)
	for i, d := range dows {
		if d == 7 {
			dows[i] = 0
		}
	}
	cal.dayOfWeek = bits(dows)
	if year == "*" {
		cal.allYears = true
	} else {
		for _, y := range field(year, "year", cronMinYear, cronMaxYear, cronYear) {
			cal.years[(y-cronMinYear)/64] |= 1 << ((y - cronMinYear) % 64)
		}
	}
	if len(errs) > 0 {
		if len(f) == 6 {
			errs = append(errs, "six fields are minute, hour, day of month, month, day of week and year; seconds come first only in seven fields")
		}
		return out, errors.New(strings.Join(errs, "; "))
	}
	if len(out.Comment) > cronMaxCommentLen {
		return out, fmt.Errorf("the comment after '#' has %d characters; Temporal takes at most %d", len(out.Comment), cronMaxCommentLen)
	}
	out.cal = cal
	return out, nil
}

func bits(vals []int) uint64 {
	var b uint64
	for _, v := range vals {
		b |= 1 << v
	}
	return b
}

// cronRange reads one calendar field into the values it matches, as
// Temporal's makeRange does.
func cronRange(s string, lo, hi int, mode cronParseMode) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		step, hasStep := 1, false
		switch strings.Count(part, "/") {
		case 0:
		case 1:
			var stepStr string
			part, stepStr, _ = strings.Cut(part, "/")
			if stepStr == "" {
				return nil, fmt.Errorf("a step needs a number after '/', such as */5")
			}
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("step %q is not a whole number of at least 1", stepStr)
			}
			step, hasStep = n, true
		default:
			return nil, fmt.Errorf("%q has more than one '/'", part)
		}
		start, end := lo, hi
		if part != "*" {
			if strings.Contains(part, "-") {
				if strings.Count(part, "-") > 1 {
					return nil, fmt.Errorf("%q has more than one '-'", part)
				}
				a, b, _ := strings.Cut(part, "-")
				var err error
				if start, err = cronValue(a, lo, hi, mode); err != nil {
					return nil, fmt.Errorf("range start: %v", err)
				}
				if end, err = cronValue(b, start, hi, mode); err != nil {
					return nil, fmt.Errorf("range end: %v (a range runs upwards, from %d to %d at most)", err, start, hi)
				}
			} else {
				var err error
				if start, err = cronValue(part, lo, hi, mode); err != nil {
					return nil, err
				}
				if !hasStep {
					end = start
				}
			}
		}
		for v := start; v <= end; v += step {
			out = append(out, v)
			if end-v < step { // a huge step must not overflow v
				break
			}
		}
	}
	return out, nil
}

// cronValue reads one value: a number, or a month or weekday name prefix.
func cronValue(s string, lo, hi int, mode cronParseMode) (int, error) {
	names, minLen := []string(nil), 0
	switch mode {
	case cronMonth:
		names, minLen = cronMonthNames, 3
	case cronDow:
		names, minLen = cronDowNames, 2
	}
	if names != nil && len(s) >= minLen {
		low := strings.ToLower(s)
		for i, n := range names {
			if strings.HasPrefix(n, low) {
				v := i
				if mode == cronMonth {
					v = i + 1
				}
				if v < lo || v > hi {
					return v, fmt.Errorf("%s is outside %d-%d", s, lo, hi)
				}
				return v, nil
			}
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not %s%s", s, cronValueKind(mode), cronSpecialHint(s))
	}
	if n < lo || n > hi {
		return n, fmt.Errorf("%d is outside %d-%d", n, lo, hi)
	}
	return n, nil
}

func cronValueKind(mode cronParseMode) string {
	switch mode {
	case cronMonth:
		return "a month (1-12, or jan, feb, ...)"
	case cronDow:
		return "a day of the week (0-7, or sun, mon, ...)"
	}
	return "a number"
}

func cronSpecialHint(s string) string {
	switch u := strings.ToUpper(s); {
	case u == "?":
		return "; Temporal has no '?': use '*'"
	case strings.Contains(u, "L"), strings.Contains(u, "W"):
		return "; Temporal has no L (last) or W (weekday) in calendar fields: list the days instead, such as 28-31"
	}
	return ""
}

// parseCronInterval reads "@every <interval>[/<offset>]" as Temporal's
// parseCronStringInterval and validateInterval do.
func parseCronInterval(c string, out *CronSchedule) error {
	_, interval, found := strings.Cut(c, " ")
	if !found {
		return fmt.Errorf("@every needs a duration after a space, such as \"@every 15m\"")
	}
	interval, offset, _ := strings.Cut(interval, "/")
	iv, err := temporalDuration(interval)
	if err != nil {
		return fmt.Errorf("@every %s: %v", interval, err)
	}
	var off time.Duration
	if offset != "" {
		if off, err = temporalDuration(offset); err != nil {
			return fmt.Errorf("@every offset %s: %v", offset, err)
		}
	}
	switch {
	case iv < time.Second:
		return fmt.Errorf("@every %s is shorter than Temporal's minimum interval of 1s", interval)
	case off < 0:
		return fmt.Errorf("the offset %s of @every is negative", offset)
	case off >= iv:
		return fmt.Errorf("the offset %s of @every must be shorter than the interval %s", offset, interval)
	}
	out.Every, out.Offset = iv, off
	return nil
}

// temporalDuration is Temporal's timestamp.ParseDuration: Go's durations plus
// d for exactly 24 hours.
func temporalDuration(s string) (time.Duration, error) {
	conv := cronDaysRE.ReplaceAllStringFunc(s, func(v string) string {
		f, err := strconv.ParseFloat(strings.TrimSuffix(v, "d"), 64)
		if err != nil {
			return v
		}
		return fmt.Sprintf("%fh", 24*f)
	})
	d, err := time.ParseDuration(conv)
	if err != nil {
		hint := "use the units s, m, h and d, such as 90s, 15m, 12h or 7d"
		if strings.HasSuffix(s, "w") {
			hint = "Temporal has no w (weeks): write 2w as 14d"
		}
		return 0, fmt.Errorf("%q is not a Temporal duration: %s", s, hint)
	}
	return d, nil
}

// NeverFires tells whether a calendar schedule matches no date at all
// between 2000 and 2100, such as "0 0 31 2 *" (no 31 February) or
// "0 0 31 4,6,9,11 *". Temporal accepts such schedules; they never run.
func (c CronSchedule) NeverFires() bool {
	cal := c.cal
	if cal == nil {
		return false
	}
	for y := cronMinYear; y <= cronMaxYear; y++ {
		if !cal.allYears && cal.years[(y-cronMinYear)/64]&(1<<((y-cronMinYear)%64)) == 0 {
			continue
		}
		for m := time.January; m <= time.December; m++ {
			if cal.month&(1<<m) == 0 {
				continue
			}
			first := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
			days := first.AddDate(0, 1, -1).Day()
			for d := 1; d <= days; d++ {
				weekday := (int(first.Weekday()) + d - 1) % 7
				if cal.dayOfMonth&(1<<d) != 0 && cal.dayOfWeek&(1<<weekday) != 0 {
					return false
				}
			}
		}
	}
	return true
}

// neverFiresDetail explains why a schedule that NeverFires never runs.
func (c CronSchedule) neverFiresDetail() string {
	const allDays = (uint64(1)<<32 - 1) &^ 1 // 1-31
	const allWeekdays = uint64(1)<<7 - 1     // 0-6
	cal := c.cal
	var b strings.Builder
	if cal.dayOfMonth != allDays {
		b.WriteString(" February has 28 days (29 in leap years); April, June, September and November have 30.")
	}
	if cal.dayOfMonth != allDays && cal.dayOfWeek != allWeekdays {
		b.WriteString(" When a day of month and a day of the week are both given, Temporal runs only on days that match both.")
	}
	if !cal.allYears {
		b.WriteString(" Only the years given count.")
	}
	b.WriteString(" For the last day of a month, run early on the 1st instead, such as \"5 0 1 * *\".")
	return b.String()
}

// CheckTimeZone checks the time zone of a schedule: an IANA time zone name
// such as "Europe/Amsterdam" or "UTC", as Temporal's ScheduleSpec
// timezone_name takes it. "Local" and "" are refused: each means the zone of
// whichever machine runs the Temporal server, so the schedule would move
// with the server.
func CheckTimeZone(name string) error {
	switch name {
	case "":
		return fmt.Errorf("an empty time zone %w: name one, such as \"UTC\" or \"Europe/Amsterdam\"", errMachineZone)
	case "Local":
		return fmt.Errorf("\"Local\" %w: name one, such as \"UTC\" or \"Europe/Amsterdam\"", errMachineZone)
	}
	if zoneExists(name) {
		return nil
	}
	return fmt.Errorf("%q is not an IANA time zone name%s", name, timeZoneHint(name))
}

func zoneExists(name string) bool {
	if name == "" || name == "Local" {
		return false
	}
	_, err := time.LoadLocation(name)
	return err == nil
}

// errMachineZone marks the zones that depend on the machine.
var errMachineZone = errors.New("means the zone of whichever machine runs the Temporal server")

// zoneSummary is the diagnostic summary of a CheckTimeZone error.
func zoneSummary(err error) string {
	if errors.Is(err, errMachineZone) {
		return "Machine-dependent time zone"
	}
	return "Unknown time zone"
}

// timeZoneHint suggests a known zone for a misspelt one.
func timeZoneHint(name string) string {
	const general = `; use a name from the IANA time zone database such as "UTC", "Europe/Amsterdam" or "America/New_York" (names are case-sensitive)`
	if t := strings.TrimSpace(name); t != name {
		if zoneExists(t) {
			return fmt.Sprintf("; remove the spaces: %q", t)
		}
	}
	for _, prefix := range []string{"UTC", "GMT"} {
		if rest, ok := strings.CutPrefix(strings.ToUpper(name), prefix); ok && len(rest) > 1 && (rest[0] == '+' || rest[0] == '-') {
			if h, err := strconv.Atoi(rest[1:]); err == nil && h >= 0 && h <= 14 {
				sign := "-"
				if rest[0] == '-' {
					sign = "+"
				}
				if h == 0 {
					return `; use "UTC"`
				}
				return fmt.Sprintf("; a fixed offset of %s hours is %q (the IANA sign is inverted), but a city's zone such as \"Europe/Moscow\" also follows its daylight saving time", rest, "Etc/GMT"+sign+strconv.Itoa(h))
			}
		}
	}
	for _, cand := range []string{strings.ToUpper(name), titleZone(name)} {
		if cand != name && zoneExists(cand) {
			return fmt.Sprintf("; names are case-sensitive: %q", cand)
		}
	}
	return general
}

// titleZone capitalises each word of a zone name: "america/new_york" becomes
// "America/New_York".
func titleZone(s string) string {
	b := []byte(strings.ToLower(s))
	up := true
	for i, c := range b {
		if up && c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		up = c == '/' || c == '_' || c == '-'
	}
	return string(b)
}
