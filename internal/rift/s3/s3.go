// Package s3 is Rift's build cache: an S3-compatible endpoint for
// gitlab-runner's distributed cache ([runners.cache] Type = "s3"), one
// bucket per egg, objects on local disk.
//
// gitlab-runner presigns a GET (restore) and a PUT (archive) URL per cache
// key with the bucket's AccessKey and SecretKey and hands them to the job
// (GitLab Runner docs, "The [runners.cache.s3] section"). Rift checks the
// presigned (query-string) and header-signed (Authorization:
// AWS4-HMAC-SHA256) forms of Signature Version 4 by signing the request
// again with the AWS SDK's signer and comparing in constant time, and
// refuses a key on any bucket but its egg's (403 AccessDenied, the same
// answer as for a bucket that does not exist).
//
// Supported: GetObject, HeadObject, PutObject, DeleteObject and HeadBucket,
// path-style (http(s)://host:port/<bucket>/<key>). A PUT body may be plain
// (x-amz-content-sha256 UNSIGNED-PAYLOAD or the body's SHA-256, checked) or
// aws-chunked with a trailing checksum (STREAMING-UNSIGNED-PAYLOAD-TRAILER,
// the AWS SDKs' default over HTTPS; CRC32, CRC32C, SHA-1 and SHA-256
// trailers are checked); signed chunks are not supported. Objects up to the egg's
// cache size; ETag is the hex MD5 of the bytes, as S3's for single PUTs.
package s3

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/gosling-ci/gosling/internal/rift/riftapi"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/space"
)

// Bucket is one egg's bucket.
type Bucket struct {
	// Name is the bucket name (gitlab-runner's BucketName).
	Name string
	Egg  string
	// Dir holds the bucket's objects.
	Dir string
	// Space keeps the egg's books; eviction deletes objects through it.
	Space *space.Space
}

// Config configures a Server.
type Config struct {
	Buckets []Bucket
	Keys    []Key
	// Now is the clock signatures are checked against (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Server serves the S3 API. It is an http.Handler.
type Server struct {
	buckets map[string]*bucketStore
	keys    map[string]Key
	verify  *verifier
	log     *slog.Logger
}

// New opens every bucket's directory and loads the objects it holds into
// the egg's books.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{buckets: map[string]*bucketStore{}, keys: map[string]Key{}, log: cfg.Logger}
	for _, b := range cfg.Buckets {
		if _, dup := s.buckets[b.Name]; dup {
			return nil, fmt.Errorf("bucket %s is named twice: give each egg's rift block its own bucket", b.Name)
		}
		bs := &bucketStore{name: b.Name, egg: b.Egg, dir: b.Dir, space: b.Space}
		if err := bs.open(); err != nil {
			return nil, err
		}
		s.buckets[b.Name] = bs
	}
	for _, k := range cfg.Keys {
		if k.AccessKeyID == "" || k.SecretAccessKey == "" {
			return nil, fmt.Errorf("egg %s's S3 key is empty", k.Egg)
		}
		if prev, dup := s.keys[k.AccessKeyID]; dup && prev.Egg != k.Egg {
			return nil, fmt.Errorf("eggs %s and %s share the access key ID %s: each egg needs its own", prev.Egg, k.Egg, k.AccessKeyID)
		}
		s.keys[k.AccessKeyID] = k
	}
	s.verify = newVerifier(func(id string) (Key, bool) { k, ok := s.keys[id]; return k, ok }, cfg.Now)
	return s, nil
}

func requestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// ServeHTTP routes /<bucket> and /<bucket>/<key>.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := requestID()
	if err := s.serve(w, r, id); err != nil {
		var e *Error
		if !errors.As(err, &e) {
			s.log.ErrorContext(r.Context(), "rift s3: request failed", "method", r.Method, "path", r.URL.Path, "error", err)
			e = errf(http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
		}
		e.write(w, r, id)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, id string) error {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	sig, e := s.verify.verify(r)
	if e != nil {
		return e
	}
	if bucket == "" {
		return errf(http.StatusNotImplemented, "NotImplemented", "ListBuckets is not supported: each egg has one bucket, named in its rift block.")
	}
	b, ok := s.buckets[bucket]
	if !ok || b.egg != sig.key.Egg {
		return errf(http.StatusForbidden, "AccessDenied", "Access Denied: this key opens only egg %s's bucket.", sig.key.Egg)
	}
	w.Header().Set("X-Amz-Request-Id", id)
	if key == "" {
		switch r.Method {
		case http.MethodHead:
			w.WriteHeader(http.StatusOK)
			return nil
		case http.MethodGet:
			return errf(http.StatusNotImplemented, "NotImplemented", "Listing objects is not supported: gitlab-runner's cache reads keys it knows.")
		}
		return errf(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
	}
	if e := validKey(key); e != nil {
		return e
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return s.get(w, r, b, key)
	case http.MethodPut:
		return s.put(w, r, b, key, sig)
	case http.MethodDelete:
		if err := b.delete(key); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return errf(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, b *bucketStore, key string) error {
	o, err := b.get(key)
	if errors.Is(err, errNoSuchKey) {
		if r.Method == http.MethodGet {
			b.space.Missed(space.KindCache)
		}
		return errf(http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
	}
	if err != nil {
		return err
	}
	defer o.Close()
	if r.Method == http.MethodGet {
		b.touch(key, o.Size)
	}
	h := w.Header()
	h.Set("ETag", o.ETag)
	h.Set("Accept-Ranges", "bytes")
	ct := o.ContentType
	if ct == "" {
		ct = "binary/octet-stream"
	}
	h.Set("Content-Type", ct)
	// ServeContent answers Range, If-None-Match, If-Modified-Since and
	// HEAD, and sets Content-Length and Last-Modified.
	http.ServeContent(w, r, "", o.LastModified, o.body)
	return nil
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, b *bucketStore, key string, sig signed) error {
	if r.Header.Get("X-Amz-Copy-Source") != "" {
		return errf(http.StatusNotImplemented, "NotImplemented", "CopyObject is not supported.")
	}
	if r.URL.Query().Has("uploadId") || r.URL.Query().Has("partNumber") {
		return errf(http.StatusNotImplemented, "NotImplemented", "Multipart uploads are not supported: gitlab-runner uploads a cache archive in one PUT.")
	}
	var body io.Reader = r.Body
	o := putOptions{key: key, contentType: r.Header.Get("Content-Type"), size: r.ContentLength}
	switch {
	case sig.payloadHash == streamingUnsignedTrailer:
		if !strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") {
			return errf(http.StatusBadRequest, "InvalidRequest", "%s needs Content-Encoding: aws-chunked.", streamingUnsignedTrailer)
		}
		b, size, err := chunkedBody(r)
		if err != nil {
			return err
		}
		body, o.size = b, size
	case strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked"):
		return errf(http.StatusNotImplemented, "NotImplemented", "aws-chunked bodies are supported with x-amz-content-sha256 = %s only.", streamingUnsignedTrailer)
	case sig.payloadHash != unsignedPayload && sig.payloadHash != "":
		o.sha256 = sig.payloadHash
	}
	if v := r.Header.Get("Content-MD5"); v != "" {
		d, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(d) != 16 {
			return errf(http.StatusBadRequest, "InvalidDigest", "Content-MD5 is not a base64 MD5 digest.")
		}
		o.md5 = d
	}
	m, err := b.put(r.Context(), body, o)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", m.ETag)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return nil
}

// Buckets lists the bucket names, for logs.
func (s *Server) Buckets() []string {
	out := make([]string, 0, len(s.buckets))
	for n := range s.buckets {
		out = append(out, n)
	}
	return out
}

// Settings are the [runners.cache] and [runners.cache.s3] values of
// gitlab-runner's config.toml that point a runner at its egg's bucket
// (riftapi.CacheSettings, which runners' agents read).
type Settings = riftapi.CacheSettings

// DefaultLocation is the region gitlab-runner signs with when none is set.
const DefaultLocation = riftapi.DefaultLocation
