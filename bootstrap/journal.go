package bootstrap

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Entry statuses.
const (
	// StatusApplied: every change of the entry was made.
	StatusApplied = "applied"
	// StatusUndone: a step failed and the changes before it were undone;
	// the entry changed nothing in the end.
	StatusUndone = "undone"
	// StatusPartial: a step failed and, as --keep-partial asked, the
	// changes before it were kept.
	StatusPartial = "partial"
	// StatusRunning: a deploy or rollback is changing the deployment; the
	// entry is the advisory lock other deploys find (see LockTimeout).
	StatusRunning = "running"
)

// LockTimeout is how long a running entry keeps other deploys out: past
// it, the deploy that wrote it is taken to have died.
const LockTimeout = time.Hour

// Entry kinds.
const (
	KindDeploy   = "deploy"
	KindRollback = "rollback"
)

// Entry is one deploy or rollback in the journal: every change it made,
// with the resource before (nil when it was created) and after (nil when
// it was deleted). Props never hold secret values, so neither do entries.
type Entry struct {
	ID     int       `json:"id"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Status string    `json:"status"`
	// To is, for a rollback, the entry whose state it returned to.
	To int `json:"to,omitempty"`
	// Error is why a deploy stopped part-way.
	Error   string          `json:"error,omitempty"`
	Changes []JournalChange `json:"changes"`
}

// JournalChange is one change made.
type JournalChange struct {
	Action  Action    `json:"action"`
	Address string    `json:"address"`
	Before  *Resource `json:"before,omitempty"`
	After   *Resource `json:"after,omitempty"`
}

// Journal keeps a deployment's entries, oldest first.
type Journal interface {
	// Entries returns every kept entry, oldest first; none is no error.
	Entries(ctx context.Context) ([]Entry, error)
	// Append adds e (its ID set by the caller), replacing an entry of the
	// same ID.
	Append(ctx context.Context, e Entry) error
	// Where says where the journal is, for messages.
	Where() string
}

// MaxEntries is how many entries a journal keeps; older ones are dropped.
const MaxEntries = 50

// BlobStore reads and writes one opaque document: a secret's current
// value in the cloud's secret store.
type BlobStore interface {
	// Load returns the document, or nil when it does not exist yet.
	Load(ctx context.Context) ([]byte, error)
	Save(ctx context.Context, doc []byte) error
	Where() string
}

// BlobJournal keeps the journal as one gzip-compressed JSON document (the
// last MaxEntries entries) in a BlobStore: a dedicated Secrets Manager
// secret on AWS, a Lockbox secret on Yandex Cloud. Each append writes a
// new version of it.
type BlobJournal struct{ Store BlobStore }

// Entries implements Journal.
func (j BlobJournal) Entries(ctx context.Context) ([]Entry, error) {
	doc, err := j.Store.Load(ctx)
	if err != nil || doc == nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("read the journal at %s: %w", j.Store.Where(), err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read the journal at %s: %w", j.Store.Where(), err)
	}
	var out []Entry
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("read the journal at %s: %w", j.Store.Where(), err)
	}
	return out, nil
}

// Append implements Journal.
func (j BlobJournal) Append(ctx context.Context, e Entry) error {
	entries, err := j.Entries(ctx)
	if err != nil {
		return err
	}
	entries = slices.DeleteFunc(entries, func(x Entry) bool { return x.ID == e.ID })
	entries = append(entries, e)
	if len(entries) > MaxEntries {
		entries = entries[len(entries)-MaxEntries:]
	}
	raw, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(raw)
	if err := zw.Close(); err != nil {
		return err
	}
	if err := j.Store.Save(ctx, buf.Bytes()); err != nil {
		return fmt.Errorf("write the journal to %s: %w", j.Store.Where(), err)
	}
	return nil
}

// Where implements Journal.
func (j BlobJournal) Where() string { return j.Store.Where() }

// FileBlob is a BlobStore in a local file, for tests and for a copy kept
// beside the cloud's.
type FileBlob struct{ Path string }

// Load implements BlobStore.
func (f FileBlob) Load(context.Context) ([]byte, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// Save implements BlobStore.
func (f FileBlob) Save(_ context.Context, doc []byte) error {
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return err
	}
	tmp := f.Path + ".tmp"
	if err := os.WriteFile(tmp, doc, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f.Path)
}

// Where implements BlobStore.
func (f FileBlob) Where() string { return f.Path }
