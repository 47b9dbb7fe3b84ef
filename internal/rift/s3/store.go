package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/space"
)

// Objects live one per file, named by the SHA-256 of their key, under
// objects/<first two hex digits>/. A file starts with a header block of
// headerSize bytes (the object's metadata as JSON, padded with spaces and
// ending in a newline) followed by the object's bytes. A write goes to a
// temporary file under tmp/ and is renamed into place, so a reader sees
// the old object or the new one, whole.
const headerSize = 4096

// maxKeyLen is S3's longest object key, in bytes.
const maxKeyLen = 1024

// meta is an object's header.
type meta struct {
	Key          string    `json:"key"`
	Size         int64     `json:"size"`
	ETag         string    `json:"etag"`
	ContentType  string    `json:"content_type,omitempty"`
	LastModified time.Time `json:"last_modified"`
}

// bucketStore is one egg's bucket on disk.
type bucketStore struct {
	name  string
	egg   string
	dir   string
	space *space.Space
}

func (b *bucketStore) objectsDir() string { return filepath.Join(b.dir, "objects") }
func (b *bucketStore) tmpDir() string     { return filepath.Join(b.dir, "tmp") }

// fileID names an object's file: the hex SHA-256 of its key.
func fileID(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func (b *bucketStore) path(id string) string {
	return filepath.Join(b.objectsDir(), id[:2], id)
}

// open makes the bucket's directories, removes temporary files a crash
// left behind and loads every object into the books.
func (b *bucketStore) open() error {
	for _, d := range []string{b.objectsDir(), b.tmpDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("make bucket %s's directory: %w", b.name, err)
		}
	}
	tmp, err := os.ReadDir(b.tmpDir())
	if err != nil {
		return err
	}
	for _, e := range tmp {
		_ = os.Remove(filepath.Join(b.tmpDir(), e.Name()))
	}
	b.space.Register(space.KindCache, b.remove)
	return filepath.WalkDir(b.objectsDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		// A file's modification time is its last use: reads touch it.
		b.space.Load(space.KindCache, d.Name(), max(info.Size()-headerSize, 0), info.ModTime())
		return nil
	})
}

// remove deletes an object's file by its file ID (the Space's remover).
func (b *bucketStore) remove(id string) error {
	if len(id) != 64 {
		return fmt.Errorf("not an object file ID: %q", id)
	}
	err := os.Remove(b.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// object is an open object: its metadata and a reader of its bytes.
type object struct {
	meta
	f    *os.File
	body *io.SectionReader
}

func (o *object) Close() error { return o.f.Close() }

var errNoSuchKey = errors.New("no such key")

// get opens an object. A file whose header cannot be read is treated as
// missing and removed.
func (b *bucketStore) get(key string) (*object, error) {
	id := fileID(key)
	f, err := os.Open(b.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoSuchKey
	}
	if err != nil {
		return nil, err
	}
	var m meta
	hdr := make([]byte, headerSize)
	if _, err := io.ReadFull(f, hdr); err != nil || json.Unmarshal(bytes.TrimSpace(hdr), &m) != nil || m.Key != key {
		f.Close()
		if m.Key == "" || m.Key == key {
			_ = b.remove(id)
			b.space.Removed(space.KindCache, id)
		}
		return nil, errNoSuchKey
	}
	return &object{meta: m, f: f, body: io.NewSectionReader(f, headerSize, m.Size)}, nil
}

// touch marks an object used now, on disk (its modification time) and in
// the books.
func (b *bucketStore) touch(key string, size int64) {
	id := fileID(key)
	now := b.space.Now()
	_ = os.Chtimes(b.path(id), now, now)
	b.space.Used(space.KindCache, id, size)
}

// putOptions say what a PUT's body must be.
type putOptions struct {
	key         string
	contentType string
	// size is the Content-Length, or -1 when unknown.
	size int64
	// sha256 and md5, when set, are the digests the body must have
	// (x-amz-content-sha256 in hex, Content-MD5 in base64 decoded).
	sha256 string
	md5    []byte
}

// put writes an object atomically: a temporary file, then a rename. It
// returns the stored metadata.
func (b *bucketStore) put(ctx context.Context, body io.Reader, o putOptions) (meta, error) {
	if err := b.space.Reserve(o.size); err != nil {
		return meta{}, errf(400, "EntityTooLarge", "%v.", err)
	}
	f, err := os.CreateTemp(b.tmpDir(), "put-*")
	if err != nil {
		return meta{}, err
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Seek(headerSize, io.SeekStart); err != nil {
		return meta{}, err
	}
	md5h := md5.New()
	var shah hash.Hash
	hashes := []io.Writer{md5h}
	if o.sha256 != "" {
		shah = sha256.New()
		hashes = append(hashes, shah)
	}
	limit := b.space.Limits().MaxBytes
	src := body
	if limit > 0 {
		src = io.LimitReader(body, limit+1)
	}
	n, err := copyHashing(f, src, io.MultiWriter(hashes...))
	if err != nil {
		return meta{}, fmt.Errorf("write object %s: %w", o.key, err)
	}
	switch {
	case limit > 0 && n > limit:
		return meta{}, errf(400, "EntityTooLarge", "The object is larger than egg %s's cache (%d bytes).", b.egg, limit)
	case o.size >= 0 && n != o.size:
		return meta{}, errf(400, "IncompleteBody", "The body had %d bytes; Content-Length said %d.", n, o.size)
	case shah != nil && hex.EncodeToString(shah.Sum(nil)) != o.sha256:
		return meta{}, errf(400, "XAmzContentSHA256Mismatch", "The body's SHA-256 does not match x-amz-content-sha256.")
	case o.md5 != nil && !bytes.Equal(md5h.Sum(nil), o.md5):
		return meta{}, errf(400, "BadDigest", "The body's MD5 does not match Content-MD5.")
	}
	m := meta{Key: o.key, Size: n, ETag: `"` + hex.EncodeToString(md5h.Sum(nil)) + `"`, ContentType: o.contentType, LastModified: b.space.Now().UTC().Truncate(time.Second)}
	hdr, err := json.Marshal(m)
	if err != nil {
		return meta{}, err
	}
	if len(hdr) >= headerSize {
		return meta{}, errf(400, "KeyTooLongError", "The object key is too long once encoded.")
	}
	block := append(hdr, bytes.Repeat([]byte{' '}, headerSize-len(hdr)-1)...)
	block = append(block, '\n')
	if _, err := f.WriteAt(block, 0); err != nil {
		return meta{}, err
	}
	if err := f.Sync(); err != nil {
		return meta{}, err
	}
	if err := f.Close(); err != nil {
		return meta{}, err
	}
	id := fileID(o.key)
	if err := os.MkdirAll(filepath.Dir(b.path(id)), 0o750); err != nil {
		return meta{}, err
	}
	now := b.space.Now()
	_ = os.Chtimes(tmp, now, now)
	if err := os.Rename(tmp, b.path(id)); err != nil {
		return meta{}, err
	}
	committed = true
	b.space.Added(ctx, space.KindCache, id, n)
	return m, nil
}

// delete removes an object; a missing one is not an error (S3's DELETE).
func (b *bucketStore) delete(key string) error {
	id := fileID(key)
	if err := b.remove(id); err != nil {
		return err
	}
	b.space.Removed(space.KindCache, id)
	return nil
}

func validKey(key string) *Error {
	switch {
	case key == "":
		return errf(400, "InvalidRequest", "The object key is empty.")
	case len(key) > maxKeyLen:
		return errf(400, "KeyTooLongError", "Object keys are at most %d bytes.", maxKeyLen)
	case strings.ContainsRune(key, 0):
		return errf(400, "InvalidArgument", "Object keys cannot hold NUL.")
	}
	return nil
}

// copyBuffers and copyBufferSize shape copyHashing's pipeline.
const (
	copyBuffers    = 4
	copyBufferSize = 1 << 20
)

var bufferPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// copyHashing copies src to dst and feeds the same bytes to h, hashing
// in a goroutine of its own so the digests cost no time on top of the
// network and the disk.
func copyHashing(dst io.Writer, src io.Reader, h io.Writer) (int64, error) {
	free := make(chan []byte, copyBuffers)
	var held []*[]byte
	for range copyBuffers {
		b := bufferPool.Get().(*[]byte)
		held = append(held, b)
		free <- *b
	}
	defer func() {
		for _, b := range held {
			bufferPool.Put(b)
		}
	}()
	full := make(chan []byte, copyBuffers)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range full {
			h.Write(b)
			free <- b[:cap(b)]
		}
	}()
	var n int64
	var err error
	for {
		buf := <-free
		k, rerr := io.ReadFull(src, buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				err = werr
				break
			}
			n += int64(k)
			full <- buf[:k]
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	close(full)
	<-done
	return n, err
}
