package activities

import (
	"os"
	"testing"

	"github.com/gosling-ci/gosling/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}
