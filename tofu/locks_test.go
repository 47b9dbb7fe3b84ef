package tofu

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/mototest"
)

// TestS3StaleLockReleasedByItsOwner: on the s3 backend (moto's S3, an
// implementation written outside this repository) a run killed while it
// holds the state lock leaves the lock file; a run that does not own it
// waits and gives up, naming it; the retry of the killed operation, which
// recorded the lock's ID, releases that lock and applies.
func TestS3StaleLockReleasedByItsOwner(t *testing.T) {
	endpoint := mototest.Start(t)
	ctx := context.Background()
	creds := map[string]string{"AWS_ACCESS_KEY_ID": "AKIDTOFUTEST", "AWS_SECRET_ACCESS_KEY": "tofu-test-secret"}
	cfg := S3Config{Bucket: "gosling-tofu-locks", Region: "us-east-1", Endpoint: endpoint, PathStyle: true, Env: creds}
	client, err := s3Client(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(cfg.Bucket)}); err != nil {
		t.Fatal(err)
	}
	be, err := S3Backend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ex := newExecutor(t)
	ex.Backend, ex.LockTimeout = be, 3*time.Second

	slow := filepath.Join(t.TempDir(), "slow")
	if err := os.WriteFile(slow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mod := slowModule(t, slow)
	m := localMachine(t, ex, "web-lock-1", fly.RunnerVM)
	vars, err := m.Variables()
	if err != nil {
		t.Fatal(err)
	}
	req := ApplyRequest{Workspace: m.RunnerID, Module: Module{Cloud: m.Cloud, Kind: m.Kind, Source: mod}, Vars: vars}

	// 1. An apply killed in the middle (SIGKILL, as when its worker
	// dies): its lock stays.
	var mu sync.Mutex
	var recorded []string
	first := req
	first.Locks = &LockLedger{OnLock: func(id string) { mu.Lock(); recorded = append(recorded, id); mu.Unlock() }}
	var once sync.Once
	first.OnLine = func(l string) {
		if strings.Contains(l, "Provisioning with 'local-exec'") {
			// Give the watch a moment to see the lock, then kill.
			go once.Do(func() { time.Sleep(2 * time.Second); killTofu(t, ex.WorkspaceDir(m.RunnerID)) })
		}
	}
	if _, err := ex.Apply(ctx, first); err == nil {
		t.Fatal("the killed apply succeeded")
	}
	mu.Lock()
	owned := append([]string(nil), recorded...)
	mu.Unlock()
	if len(owned) != 1 {
		t.Fatalf("locks recorded by the killed apply: %v", owned)
	}
	if held, err := be.lockID(ctx, m.RunnerID); err != nil || held != owned[0] {
		t.Fatalf("lock after the kill: %q %v, want %s still held", held, err, owned[0])
	}
	if err := os.Remove(slow); err != nil {
		t.Fatal(err)
	}

	// 2. A run that does not own it waits, then fails naming it.
	other := req
	other.Locks = &LockLedger{Owned: []string{"00000000-0000-0000-0000-000000000000"}}
	if _, err := ex.Apply(ctx, other); err == nil || lockHolder(err) != owned[0] {
		t.Fatalf("apply under another's lock: %v", err)
	}

	// 3. The killed operation's retry releases its own lock and applies.
	retry := req
	retry.Locks = &LockLedger{Owned: owned}
	if _, err := ex.Apply(ctx, retry); err != nil {
		t.Fatalf("the owner's retry: %v", err)
	}
	if held, err := be.lockID(ctx, m.RunnerID); err != nil || held != "" {
		t.Errorf("lock after the retry: %q %v, want none", held, err)
	}
	if err := ex.Destroy(ctx, m.RunnerID, nil); err != nil {
		t.Fatal(err)
	}
}

// killTofu kills, with SIGKILL, the process group of the OpenTofu run
// working in dir (terraform-exec starts each run in a group of its own).
func killTofu(t *testing.T, dir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if cwd == dir && strings.Contains(string(cmd), "apply") {
			if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
				t.Errorf("kill tofu %d: %v", pid, err)
			}
			return
		}
	}
	t.Error("no OpenTofu run to kill")
}

// slowModule writes a module with the local VM module's variables and
// outputs whose apply sleeps a minute while the file slow exists.
func slowModule(t *testing.T, slow string) string {
	t.Helper()
	dir := turnModule(t, filepath.Join(t.TempDir(), "runs.log"))
	main := `resource "terraform_data" "slow" {
  triggers_replace = [timestamp()]
  provisioner "local-exec" {
    command = "if [ -f ` + slow + ` ]; then sleep 60; fi"
  }
}
output "machine_id" { value = terraform_data.slow.id }
output "work_dir" { value = var.work_dir }
output "state" { value = var.state }
`
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
