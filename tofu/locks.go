package tofu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hashicorp/terraform-exec/tfexec"
)

// A run killed while it holds the state lock (the worker died, the
// activity timed out) leaves the lock behind on the s3 backend, whose lock
// is a file; the pg backend's lock ends with the run's connection. Gosling
// never force-unlocks blindly: each run records the lock IDs it takes
// (LockLedger.OnLock: the activity keeps them in its heartbeat details),
// and a retry of the same operation that finds one of them still held
// releases that lock, and only that one, and runs again.

// LockLedger is what a run knows of its operation's state locks.
type LockLedger struct {
	// Owned are the lock IDs earlier attempts of this same operation
	// took: a lock still held under one of them is a killed attempt's.
	Owned []string
	// OnLock, when set, is told the ID of the lock this run takes as soon
	// as it is seen (the s3 backend's lock file).
	OnLock func(id string)
}

// lockHolderRE reads the ID of the lock holder from OpenTofu's "Error
// acquiring the state lock" message (its Lock Info block).
var lockHolderRE = regexp.MustCompile(`(?m)^\s*ID:\s+([0-9a-fA-F-]{36})\s*$`)

// lockHolder is the ID of the lock that made a run fail, "" when the run
// failed for another reason.
func lockHolder(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	if !regexpAcquire.MatchString(msg) {
		return ""
	}
	if m := lockHolderRE.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}

var regexpAcquire = regexp.MustCompile(`(?i)error acquiring the state lock`)

// locked runs run, one of the workspace's state-locking commands; when it
// fails on a lock the ledger owns, it releases that lock (tofu
// force-unlock, with that ID) and runs again, once. While run lasts, the
// lock it takes is reported to the ledger.
func (e *Executor) locked(ctx context.Context, tf *tfexec.Terraform, workspace string, ledger *LockLedger, run func() error) error {
	stop := e.watchLock(ctx, workspace, ledger)
	err := run()
	stop()
	id := lockHolder(err)
	if ledger == nil || id == "" || !slices.Contains(ledger.Owned, id) {
		return err
	}
	if uerr := tf.ForceUnlock(ctx, id); uerr != nil {
		return errors.Join(err, fmt.Errorf("release lock %s, left by a killed run of this operation: %w", id, uerr))
	}
	stop = e.watchLock(ctx, workspace, ledger)
	defer stop()
	return run()
}

// lockPoll is how often a run's lock file is looked for.
const lockPoll = 250 * time.Millisecond

// watchLock reports to the ledger the lock the workspace's state gets
// while a run lasts (backends whose lock is a readable object: s3). stop
// ends the watch and waits for it.
func (e *Executor) watchLock(ctx context.Context, workspace string, ledger *LockLedger) (stop func()) {
	if ledger == nil || ledger.OnLock == nil || e.Backend.lockID == nil {
		return func() {}
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		seen := map[string]bool{}
		for _, id := range ledger.Owned {
			seen[id] = true
		}
		t := time.NewTicker(lockPoll)
		defer t.Stop()
		for {
			if id, err := e.Backend.lockID(wctx, workspace); err == nil && id != "" && !seen[id] {
				seen[id] = true
				ledger.OnLock(id)
			}
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// s3LockID reads the ID of the lock held on a workspace's state in an s3
// backend: the lock file OpenTofu writes beside the state
// (<prefix>/<workspace>/<key>.tflock, JSON with an ID), "" when none is.
func s3LockID(c S3Config, prefix, key string) func(ctx context.Context, workspace string) (string, error) {
	var once sync.Once
	var client *s3.Client
	var cerr error
	return func(ctx context.Context, workspace string) (string, error) {
		once.Do(func() { client, cerr = s3Client(ctx, c) })
		if cerr != nil {
			return "", cerr
		}
		out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.Bucket), Key: aws.String(path.Join(prefix, workspace, key) + ".tflock")})
		var nsk *s3types.NoSuchKey
		if errors.As(err, &nsk) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		defer out.Body.Close()
		b, err := io.ReadAll(io.LimitReader(out.Body, 64<<10))
		if err != nil {
			return "", err
		}
		var info struct{ ID string }
		if err := json.Unmarshal(b, &info); err != nil {
			return "", fmt.Errorf("read lock file: %w", err)
		}
		return info.ID, nil
	}
}

// s3Client reaches the bucket as OpenTofu does: the backend's static key
// when it has one, else the worker's own identity.
func s3Client(ctx context.Context, c S3Config) (*s3.Client, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(c.Region)}
	if id, secret := c.Env["AWS_ACCESS_KEY_ID"], c.Env["AWS_SECRET_ACCESS_KEY"]; id != "" && secret != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(id, secret, c.Env["AWS_SESSION_TOKEN"])))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.PathStyle
		// S3-compatible storage may send no checksum; OpenTofu asks for
		// none either (skip_s3_checksum).
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}
