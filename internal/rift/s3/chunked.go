package s3

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// streamingUnsignedTrailer is the x-amz-content-sha256 of an aws-chunked
// body whose chunks are unsigned and whose checksum comes in a trailer:
// what the AWS SDKs send by default for PutObject since their flexible
// checksums (AWS, "Uploading objects with checksums: trailing checksums").
const streamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

// awsChunkedReader decodes an aws-chunked body: chunks of
// "<hex size>\r\n<bytes>\r\n", a last "0\r\n", then trailer lines
// "name:value\r\n" and an empty line. It checks the trailer's checksum when
// its algorithm is CRC32, CRC32C, SHA-1 or SHA-256.
type awsChunkedReader struct {
	r        *bufio.Reader
	left     int64
	started  bool
	done     bool
	trailer  string // the x-amz-trailer header: the checksum's name
	sum      hash.Hash
	decoded  int64
	Trailers http.Header
}

func newAWSChunkedReader(body io.Reader, trailer string) *awsChunkedReader {
	c := &awsChunkedReader{r: bufio.NewReaderSize(body, 64<<10), trailer: strings.ToLower(strings.TrimSpace(trailer)), Trailers: http.Header{}}
	switch c.trailer {
	case "x-amz-checksum-crc32":
		c.sum = crc32.NewIEEE()
	case "x-amz-checksum-crc32c":
		c.sum = crc32.New(crc32.MakeTable(crc32.Castagnoli))
	case "x-amz-checksum-sha1":
		c.sum = sha1.New()
	case "x-amz-checksum-sha256":
		c.sum = sha256.New()
	}
	return c
}

var errChunked = errf(http.StatusBadRequest, "IncompleteBody", "The aws-chunked body is malformed.")

func (c *awsChunkedReader) line() (string, error) {
	s, err := c.r.ReadString('\n')
	if err != nil {
		return "", errChunked
	}
	return strings.TrimRight(s, "\r\n"), nil
}

func (c *awsChunkedReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		if c.started {
			if l, err := c.line(); err != nil || l != "" {
				return 0, errChunked
			}
		}
		c.started = true
		l, err := c.line()
		if err != nil {
			return 0, err
		}
		size, ext, _ := strings.Cut(l, ";")
		if strings.HasPrefix(ext, "chunk-signature=") {
			return 0, errf(http.StatusNotImplemented, "NotImplemented", "Signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) are not supported.")
		}
		n, err := strconv.ParseInt(size, 16, 64)
		if err != nil || n < 0 {
			return 0, errChunked
		}
		if n == 0 {
			return 0, c.finish()
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	k, err := c.r.Read(p)
	c.left -= int64(k)
	c.decoded += int64(k)
	if c.sum != nil {
		c.sum.Write(p[:k])
	}
	if err == io.EOF {
		return k, errChunked
	}
	return k, err
}

// finish reads the trailers and checks the checksum.
func (c *awsChunkedReader) finish() error {
	for {
		l, err := c.line()
		if err != nil {
			return err
		}
		if l == "" {
			break
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return errChunked
		}
		c.Trailers.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	c.done = true
	if c.sum != nil {
		want := c.Trailers.Get(c.trailer)
		if want == "" {
			return errf(http.StatusBadRequest, "InvalidRequest", "The trailer %s announced in x-amz-trailer is missing.", c.trailer)
		}
		if got := base64.StdEncoding.EncodeToString(c.sum.Sum(nil)); got != want {
			return errf(http.StatusBadRequest, "BadDigest", "The body's %s does not match its trailer.", strings.TrimPrefix(c.trailer, "x-amz-checksum-"))
		}
	}
	return io.EOF
}

// chunkedBody decodes an aws-chunked PUT body and returns it with its
// decoded length (x-amz-decoded-content-length, -1 when absent).
func chunkedBody(r *http.Request) (io.Reader, int64, error) {
	size := int64(-1)
	if v := r.Header.Get("X-Amz-Decoded-Content-Length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, 0, errf(http.StatusBadRequest, "InvalidArgument", "x-amz-decoded-content-length is not a length.")
		}
		size = n
	}
	return newAWSChunkedReader(r.Body, r.Header.Get("X-Amz-Trailer")), size, nil
}
