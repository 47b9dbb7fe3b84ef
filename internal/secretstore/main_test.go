package secretstore_test

import (
	"os"
	"testing"

	"github.com/gosling-ci/gosling/internal/mototest"
)

// TestMain shares one moto_server between the package's tests.
func TestMain(m *testing.M) { os.Exit(mototest.Runner(m).Run()) }
