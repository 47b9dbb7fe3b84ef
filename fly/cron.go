package fly

import (
	"fmt"
	"strconv"
	"strings"
)

// cronField describes one field of a five-field cron expression.
type cronField struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{name: "day of week", min: 0, max: 7, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}

var cronDescriptors = map[string]bool{
	"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true,
	"@daily": true, "@midnight": true, "@hourly": true,
}

// ValidCron checks a cron expression as Temporal Schedules accept it: five
// fields (minute hour day-of-month month day-of-week) with *, lists, ranges
// and steps, or a descriptor such as @daily, or "@every 15m".
func ValidCron(expr string) error {
	s := strings.TrimSpace(expr)
	if strings.HasPrefix(s, "@") {
		if cronDescriptors[s] {
			return nil
		}
		if rest, ok := strings.CutPrefix(s, "@every "); ok {
			d, err := ParseDuration(rest)
			if err != nil {
				return fmt.Errorf("@every needs a duration: %v", err)
			}
			if d.D() <= 0 {
				return fmt.Errorf("@every needs a positive duration")
			}
			return nil
		}
		return fmt.Errorf("unknown descriptor %q: use @hourly, @daily, @weekly, @monthly, @yearly or @every <duration>", s)
	}
	parts := strings.Fields(s)
	if len(parts) != len(cronFields) {
		return fmt.Errorf("a cron expression has 5 fields (minute hour day-of-month month day-of-week), this one has %d", len(parts))
	}
	for i, p := range parts {
		if err := checkCronField(p, cronFields[i]); err != nil {
			return fmt.Errorf("%s field %q: %v", cronFields[i].name, p, err)
		}
	}
	return nil
}

func checkCronField(p string, f cronField) error {
	for _, item := range strings.Split(p, ",") {
		if item == "" {
			return fmt.Errorf("empty list item")
		}
		rng, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 || n > f.max-f.min+1 {
				return fmt.Errorf("step %q must be a number from 1 to %d", step, f.max-f.min+1)
			}
		}
		if rng == "*" {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := cronValue(lo, f)
		if err != nil {
			return err
		}
		if isRange {
			b, err := cronValue(hi, f)
			if err != nil {
				return err
			}
			if b < a {
				return fmt.Errorf("range %s runs backwards", rng)
			}
		} else if hasStep {
			continue
		}
	}
	return nil
}

func cronValue(s string, f cronField) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("%d is outside %d-%d", n, f.min, f.max)
	}
	return n, nil
}
