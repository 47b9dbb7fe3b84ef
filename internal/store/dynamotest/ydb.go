package dynamotest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// YDBDocAPI is a stand-in for a YDB database's Document API endpoint
// (https://docapi.serverless.yandexcloud.net/ru-central1/CLOUD/DATABASE):
// it checks a request's authentication the way Yandex documents it, then
// hands the request to dynalite. It is not YDB: only the authentication
// and the endpoint's path are YDB's; the DynamoDB operations are
// dynalite's. Refused requests get HTTP 400 with an AccessDeniedException
// body, as DynamoDB answers them.
type YDBDocAPI struct {
	// Endpoint is the database's Document API endpoint on this stand-in:
	// http://127.0.0.1:PORT/ru-central1/b1gstandin/etnstandin.
	Endpoint string
	// Bearer counts requests accepted with an IAM token, SigV4 those
	// accepted with a static key's signature.
	Bearer, SigV4 atomic.Int64

	path     string
	upstream string
	accept   func(token string) bool
	keyID    string
	secret   string
	srv      *httptest.Server
}

// YDBOptions configure the stand-in.
type YDBOptions struct {
	// AcceptToken tells whether an IAM token is valid; nil refuses all.
	AcceptToken func(token string) bool
	// KeyID and Secret are the one static access key it accepts
	// signatures of (region ru-central1, service dynamodb).
	KeyID, Secret string
}

// StartYDBDocAPI starts the stand-in in front of the dynalite at upstream
// (Start's endpoint) and stops it when the test ends.
func StartYDBDocAPI(t testing.TB, upstream string, o YDBOptions) *YDBDocAPI {
	t.Helper()
	y := &YDBDocAPI{path: "/ru-central1/b1gstandin/etnstandin", upstream: upstream, accept: o.AcceptToken, keyID: o.KeyID, secret: o.Secret}
	y.srv = httptest.NewServer(http.HandlerFunc(y.serve))
	t.Cleanup(y.srv.Close)
	y.Endpoint = y.srv.URL + y.path
	return y
}

// DSN is a ydb:// DSN for fresh tables behind the stand-in; params are
// more DSN parameters (auth=static, key_file=...).
func (y *YDBDocAPI) DSN(params ...string) string {
	q := append([]string{"insecure=true", "table_prefix=" + TablePrefix()}, params...)
	return "ydb://" + strings.TrimPrefix(y.Endpoint, "http://") + "?" + strings.Join(q, "&")
}

func deny(w http.ResponseWriter, format string, args ...any) {
	body := fmt.Sprintf(`{"__type":"com.amazonaws.dynamodb.v20120810#AccessDeniedException","message":%q}`, fmt.Sprintf(format, args...))
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	// DynamoDB's clients check the body against this checksum.
	w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
	w.WriteHeader(http.StatusBadRequest)
	_, _ = io.WriteString(w, body)
}

func (y *YDBDocAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || strings.TrimSuffix(r.URL.Path, "/") != y.path {
		http.Error(w, "no Document API at "+r.URL.Path, http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	auth := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(auth, "Bearer "):
		if y.accept == nil || !y.accept(strings.TrimPrefix(auth, "Bearer ")) {
			deny(w, "The IAM token is invalid or expired")
			return
		}
		y.Bearer.Add(1)
	case strings.HasPrefix(auth, "AWS4-HMAC-SHA256 "):
		if err := y.checkSignature(r, body); err != nil {
			deny(w, "%v", err)
			return
		}
		y.SigV4.Add(1)
	default:
		deny(w, "Request is missing Authentication Token")
		return
	}
	y.forward(w, r, body)
}

// checkSignature signs the request again with the stand-in's key and
// compares: only the headers the client signed take part.
func (y *YDBDocAPI) checkSignature(r *http.Request, body []byte) error {
	fields := map[string]string{}
	for _, f := range strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[0] != y.keyID || y.keyID == "" {
		return fmt.Errorf("unknown access key %q", scope[0])
	}
	if scope[2] != "ru-central1" || scope[3] != "dynamodb" {
		return fmt.Errorf("signed for region %s, service %s: want ru-central1, dynamodb", scope[2], scope[3])
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("X-Amz-Date: %v", err)
	}
	clone := r.Clone(r.Context())
	signed := map[string]bool{}
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		signed[h] = true
	}
	for k := range clone.Header {
		if !signed[strings.ToLower(k)] {
			clone.Header.Del(k)
		}
	}
	if !signed["content-length"] {
		clone.ContentLength = 0
	}
	clone.URL.Host, clone.URL.Scheme = r.Host, "http"
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(r.Context(), aws.Credentials{AccessKeyID: y.keyID, SecretAccessKey: y.secret},
		clone, hex.EncodeToString(sum[:]), "dynamodb", "ru-central1", at)
	if err != nil {
		return err
	}
	if sig := signature(clone.Header.Get("Authorization")); sig != fields["Signature"] {
		return fmt.Errorf("the request signature does not match")
	}
	return nil
}

func signature(auth string) string {
	_, sig, _ := strings.Cut(auth, "Signature=")
	return sig
}

// forward sends the request on to dynalite, signed with a key dynalite
// takes (it checks only the signature's form).
func (y *YDBDocAPI) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	ctx, cancel := waitContext()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, y.upstream+"/", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for _, h := range []string{"Content-Type", "X-Amz-Target"} {
		req.Header.Set(h, r.Header.Get(h))
	}
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: "AKIDSTANDIN", SecretAccessKey: "standin"},
		req, hex.EncodeToString(sum[:]), "dynamodb", Region, time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "X-Amzn-Requestid", "X-Amz-Crc32"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}
