package fly_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/testbin"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
)

const (
	accepts = true
	refuses = false
)

// cronCorpus holds schedule strings with the answer of the Temporal server
// (a Schedule created with the string as its cron expression) and of fly.
// The two differ only where fly is stricter on purpose; note says why.
var cronCorpus = []struct {
	expr     string
	temporal bool
	fly      bool
	note     string
}{
	// Five fields.
	{"*/5 * * * *", accepts, accepts, ""},
	{"0 3 * * 1", accepts, accepts, ""},
	{"  0 3 * * 1  ", accepts, accepts, "surrounding spaces"},
	{"30 4 * * SUN", accepts, accepts, ""},
	{"0 0 * * MON-FRI", accepts, accepts, ""},
	{"0 12 * * tu", accepts, accepts, "two letters name a weekday"},
	{"0 12 1 sept *", accepts, accepts, "a prefix of the month's name"},
	{"0 12 1 JANUARY *", accepts, accepts, ""},
	{"0 9 15-21 jan,sept fri", accepts, accepts, "third Friday of two months"},
	{"5,9 */2 * * *", accepts, accepts, ""},
	{"0 0 * * 7", accepts, accepts, "7 is Sunday"},
	{"0 0 * * 0-7", accepts, accepts, ""},
	{"0 0 * * 5-7/2", accepts, accepts, "Friday and Sunday"},
	{"0 3 * * 1-1", accepts, accepts, ""},
	{"0 +5 * * *", accepts, accepts, "a signed number, as strconv.Atoi reads it"},
	{"0 0 29 2 *", accepts, accepts, "leap days"},
	{"0 0 31 2 *", accepts, accepts, "never runs: a warning, not an error"},
	{"0 3 * * 1 # weekly", accepts, accepts, "a comment"},
	// Six and seven fields.
	{"0 0 1 1 * 2030", accepts, accepts, "a year"},
	{"0 0 1 1 * 2000-2100/10", accepts, accepts, ""},
	{"30 0 3 * * * 2030", accepts, accepts, "seconds first"},
	{"*/10 * * * * * *", accepts, accepts, "every ten seconds"},
	// Descriptors and intervals.
	{"@hourly", accepts, accepts, ""},
	{"@daily", accepts, accepts, ""},
	{"@midnight", accepts, accepts, ""},
	{"@weekly", accepts, accepts, ""},
	{"@monthly", accepts, accepts, ""},
	{"@yearly", accepts, accepts, ""},
	{"@annually", accepts, accepts, ""},
	{"@every 15m", accepts, accepts, ""},
	{"@every 1s", accepts, accepts, "the smallest interval"},
	{"@every 1.5d", accepts, accepts, "d is 24 hours"},
	{"@every 1d2h", accepts, accepts, ""},
	{"@every 14d", accepts, accepts, "two weeks, in days"},
	{"@every 1h/5m", accepts, accepts, "an offset"},
	{"@every 1h/", accepts, accepts, "an empty offset is none"},
	{"@every 90m # hourly and a half", accepts, accepts, ""},
	// Time zone prefixes.
	{"CRON_TZ=Europe/Amsterdam 0 3 * * *", accepts, accepts, ""},
	{"TZ=America/New_York @daily", accepts, accepts, ""},
	{"CRON_TZ=UTC */15 8-18 * * mon-fri # office hours", accepts, accepts, ""},
	// Refused by both.
	{"@every 2w", refuses, refuses, "no weeks in Temporal's durations"},
	{"@every 500ms", refuses, refuses, "below the 1s minimum"},
	{"@every 0s", refuses, refuses, ""},
	{"@every -1h", refuses, refuses, ""},
	{"@every 1h/1h", refuses, refuses, "the offset must be below the interval"},
	{"@every 1h/2h", refuses, refuses, ""},
	{"@every 1h/-5m", refuses, refuses, "a negative offset"},
	{"@every", refuses, refuses, ""},
	{"@every1h", refuses, refuses, ""},
	{"@every 15 minutes", refuses, refuses, ""},
	{"@reboot", refuses, refuses, ""},
	{"@DAILY", refuses, refuses, "descriptors are lower case"},
	{"", refuses, refuses, ""},
	{"* * * *", refuses, refuses, "four fields"},
	{"0 0 0 1 1 * 2030 x", refuses, refuses, "eight fields"},
	{"60 * * * *", refuses, refuses, ""},
	{"0 24 * * *", refuses, refuses, ""},
	{"0 0 0 * *", refuses, refuses, "days of the month start at 1"},
	{"0 0 32 * *", refuses, refuses, ""},
	{"0 0 1 13 *", refuses, refuses, ""},
	{"0 0 1 0 *", refuses, refuses, ""},
	{"0 0 * * 8", refuses, refuses, ""},
	{"0 0 * ju *", refuses, refuses, "a month needs three letters"},
	{"0 0 * * m", refuses, refuses, "a weekday needs two letters"},
	{"5-1 * * * *", refuses, refuses, "a backwards range"},
	{"*/0 * * * *", refuses, refuses, ""},
	{"*/ * * * *", refuses, refuses, ""},
	{"1/2/3 * * * *", refuses, refuses, ""},
	{"1-2-3 * * * *", refuses, refuses, ""},
	{"1,,2 * * * *", refuses, refuses, ""},
	{"0 0 L * *", refuses, refuses, "no L (last day)"},
	{"0 0 1W * *", refuses, refuses, "no W (nearest weekday)"},
	{"0 0 * * 5L", refuses, refuses, ""},
	{"0 0 12 ? * MON", refuses, refuses, "Quartz's six fields"},
	{"0 0 1 1 * 1999", refuses, refuses, "years run from 2000"},
	{"0 0 1 1 * 2101", refuses, refuses, "to 2100"},
	{"CRON_TZ=Mars/Olympus 0 3 * * *", refuses, refuses, "an unknown zone"},
	{"CRON_TZ=europe/amsterdam 0 3 * * *", refuses, refuses, "zone names are case-sensitive"},
	{"CRON_TZ=UTC", refuses, refuses, "a zone and no schedule"},
	{"0 3 * * 1 # " + strings.Repeat("x", 201), refuses, refuses, "a comment over 200 characters"},
	// fly is stricter.
	{"0 9 * * 5#3", accepts, refuses, "Temporal cuts at '#' and runs every Friday, not the third"},
	{"CRON_TZ=Local 0 3 * * *", accepts, refuses, "the server machine's zone"},
	{"CRON_TZ= 0 3 * * *", accepts, refuses, "an empty zone: the server's default"},
	{"CRON_TZ=Mars/Olympus @every 1h", accepts, refuses, "Temporal ignores the zone of @every; fly still checks it"},
}

// zoneCorpus holds schedule time zones (ScheduleSpec.TimeZoneName beside a
// plain cron string), answered as cronCorpus is.
var zoneCorpus = []struct {
	zone     string
	temporal bool
	fly      bool
	note     string
}{
	{"UTC", accepts, accepts, ""},
	{"Europe/Amsterdam", accepts, accepts, ""},
	{"America/Argentina/Buenos_Aires", accepts, accepts, ""},
	{"Asia/Kolkata", accepts, accepts, ""},
	{"Etc/GMT-3", accepts, accepts, ""},
	{"Mars/Olympus", refuses, refuses, ""},
	{"europe/amsterdam", refuses, refuses, ""},
	{" UTC", refuses, refuses, ""},
	{"Local", accepts, refuses, "the server machine's zone"},
}

// TestCronCorpus checks fly's answers without a server.
func TestCronCorpus(t *testing.T) {
	for _, c := range cronCorpus {
		_, err := fly.ParseCron(c.expr)
		if got := err == nil; got != c.fly {
			t.Errorf("fly.ParseCron(%q): accepted %v, want %v (%s); err = %v", c.expr, got, c.fly, c.note, err)
		}
	}
	for _, c := range zoneCorpus {
		err := fly.CheckTimeZone(c.zone)
		if got := err == nil; got != c.fly {
			t.Errorf("fly.CheckTimeZone(%q): accepted %v, want %v (%s); err = %v", c.zone, got, c.fly, c.note, err)
		}
	}
}

// TestCronAgreesWithTemporal asks a real Temporal dev server to create a
// Schedule for every corpus entry and compares its answer with the corpus,
// whose fly column TestCronCorpus checks.
func TestCronAgreesWithTemporal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  testbin.Temporal(t),
		ClientOptions: &client.Options{Logger: quietLogger{}},
		LogLevel:      "error",
		Stdout:        io.Discard, Stderr: io.Discard,
	})
	if err != nil {
		t.Fatalf("start Temporal dev server: %v", err)
	}
	t.Cleanup(func() { _ = dev.Stop() })
	schedules := dev.Client().ScheduleClient()

	create := func(id string, spec client.ScheduleSpec) (bool, error) {
		_, err := schedules.Create(ctx, client.ScheduleOptions{
			ID:   id,
			Spec: spec,
			Action: &client.ScheduleWorkflowAction{
				ID: id + "-wf", Workflow: "cron-corpus", TaskQueue: "cron-corpus",
			},
			Paused: true,
		})
		if err == nil {
			return true, nil
		}
		var invalid *serviceerror.InvalidArgument
		if errors.As(err, &invalid) && strings.Contains(err.Error(), "schedule spec") {
			return false, err
		}
		t.Fatalf("create schedule %s: not a verdict on its spec: %v", id, err)
		return false, nil
	}
	for i, c := range cronCorpus {
		got, err := create(fmt.Sprintf("cron-%d", i), client.ScheduleSpec{CronExpressions: []string{c.expr}})
		if got != c.temporal {
			t.Errorf("Temporal on %q: accepted %v, want %v (%s); err = %v", c.expr, got, c.temporal, c.note, err)
		}
	}
	for i, c := range zoneCorpus {
		got, err := create(fmt.Sprintf("zone-%d", i), client.ScheduleSpec{CronExpressions: []string{"0 3 * * *"}, TimeZoneName: c.zone})
		if got != c.temporal {
			t.Errorf("Temporal on time zone %q: accepted %v, want %v (%s); err = %v", c.zone, got, c.temporal, c.note, err)
		}
	}
}

type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
