package bootstrap

import (
	"os"
	"testing"

	"github.com/gosling-ci/gosling/internal/mototest"
)

// TestMain shares one moto_server between the package's tests; each test
// has an AWS account of its own on it (mototest.NewProxy).
func TestMain(m *testing.M) { os.Exit(mototest.Runner(m).Run()) }
