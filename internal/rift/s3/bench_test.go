package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/gosling-ci/gosling/internal/rift/space"
)

// BenchmarkCache measures the build cache's presigned PUT and GET (made by
// the AWS SDK's presign client, over loopback HTTP) against writing and
// reading the same bytes straight to and from a file on the same disk
// (write + fsync, as the cache does; read back whole). MB/s is the figure.
func BenchmarkCache(b *testing.B) {
	for _, size := range []int{1 << 20, 100 << 20} {
		name := fmt.Sprintf("%dMiB", size>>20)
		data := make([]byte, size)
		rand.Read(data)
		f := newFixture(b, space.Limits{MaxBytes: 4 << 30})
		pc := f.presign("web")
		ctx := context.Background()
		put, err := pc.PresignPutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("bench/" + name)})
		if err != nil {
			b.Fatal(err)
		}
		get, err := pc.PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String("web-cache"), Key: aws.String("bench/" + name)})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("put-"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				req, _ := http.NewRequest(http.MethodPut, put.URL, bytes.NewReader(data))
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("PUT: %v %v", err, resp)
				}
				resp.Body.Close()
			}
		})
		b.Run("get-"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				resp, err := http.Get(get.URL)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("GET: %v %v", err, resp)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != int64(size) {
					b.Fatalf("GET read %d bytes", n)
				}
			}
		})
		dir := b.TempDir()
		raw := filepath.Join(dir, "raw")
		b.Run("raw-write-"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				fh, err := os.Create(raw)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := fh.Write(data); err != nil {
					b.Fatal(err)
				}
				if err := fh.Sync(); err != nil {
					b.Fatal(err)
				}
				fh.Close()
			}
		})
		b.Run("raw-read-"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				fh, err := os.Open(raw)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, fh)
				fh.Close()
				if n != int64(size) {
					b.Fatalf("read %d bytes", n)
				}
			}
		})
	}
}
