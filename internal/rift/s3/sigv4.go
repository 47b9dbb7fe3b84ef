package s3

import (
	"context"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Key is one egg's S3 credentials: gitlab-runner's AccessKey and SecretKey.
type Key struct {
	AccessKeyID     string
	SecretAccessKey string
	// Egg is the egg whose bucket the key opens.
	Egg string
}

// Signature Version 4 constants (AWS, "Authenticating Requests: Using Query
// Parameters" and "Using the Authorization Header").
const (
	algorithm       = "AWS4-HMAC-SHA256"
	amzDateFormat   = "20060102T150405Z"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	emptySHA256     = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// maxExpires is S3's longest presigned URL: seven days.
	maxExpires = 7 * 24 * 3600
	// maxSkew is how far a request's date may be from Rift's clock, as S3
	// allows (RequestTimeTooSkewed).
	maxSkew = 15 * time.Minute
)

// verifier checks Signature Version 4 requests by signing them again with
// the AWS SDK's signer and comparing the signatures in constant time.
type verifier struct {
	lookup func(accessKeyID string) (Key, bool)
	now    func() time.Time
	signer *v4.Signer
}

func newVerifier(lookup func(string) (Key, bool), now func() time.Time) *verifier {
	return &verifier{lookup: lookup, now: now, signer: v4.NewSigner()}
}

// signed is what a verified request says of itself.
type signed struct {
	key Key
	// payloadHash is the x-amz-content-sha256 the signature covers:
	// UNSIGNED-PAYLOAD, or the hex SHA-256 the body must have.
	payloadHash string
}

// verify authenticates r, presigned (query string) or header-signed.
func (v *verifier) verify(r *http.Request) (signed, *Error) {
	q := r.URL.Query()
	switch {
	case q.Has("X-Amz-Signature") || q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Credential"):
		return v.verifyPresigned(r, q)
	case strings.HasPrefix(r.Header.Get("Authorization"), algorithm+" "):
		return v.verifyHeader(r)
	case r.Header.Get("Authorization") != "":
		return signed{}, errf(http.StatusBadRequest, "InvalidRequest", "Only Signature Version 4 (AWS4-HMAC-SHA256) is supported.")
	case q.Has("AWSAccessKeyId"):
		return signed{}, errf(http.StatusBadRequest, "InvalidRequest", "Signature Version 2 is not supported: presign with Signature Version 4.")
	}
	return signed{}, errf(http.StatusForbidden, "AccessDenied", "Anonymous access is refused: sign the request with the egg's access key.")
}

// credentialScope is AKID/yyyymmdd/region/service/aws4_request.
type credentialScope struct {
	accessKeyID, date, region, service string
}

func parseCredential(s string) (credentialScope, bool) {
	p := strings.Split(s, "/")
	if len(p) != 5 || p[4] != "aws4_request" || p[0] == "" || len(p[1]) != 8 || p[2] == "" {
		return credentialScope{}, false
	}
	return credentialScope{accessKeyID: p[0], date: p[1], region: p[2], service: p[3]}, true
}

func (v *verifier) keyFor(scope credentialScope, date time.Time) (Key, *Error) {
	if scope.service != "s3" {
		return Key{}, errf(http.StatusBadRequest, "AuthorizationQueryParametersError", "The credential scope's service is %q; it must be \"s3\".", scope.service)
	}
	if scope.date != date.Format("20060102") {
		return Key{}, errf(http.StatusForbidden, "SignatureDoesNotMatch", "The credential scope's date does not match X-Amz-Date.")
	}
	k, ok := v.lookup(scope.accessKeyID)
	if !ok {
		return Key{}, errf(http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
	}
	return k, nil
}

func (v *verifier) verifyPresigned(r *http.Request, q url.Values) (signed, *Error) {
	if q.Get("X-Amz-Algorithm") != algorithm {
		return signed{}, errf(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Algorithm must be %s.", algorithm)
	}
	scope, ok := parseCredential(q.Get("X-Amz-Credential"))
	if !ok {
		return signed{}, errf(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Credential must be <access key>/<yyyymmdd>/<region>/s3/aws4_request.")
	}
	date, err := time.Parse(amzDateFormat, q.Get("X-Amz-Date"))
	if err != nil {
		return signed{}, errf(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Date must be an ISO 8601 basic time, such as 20250102T030405Z.")
	}
	expires, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || expires < 1 || expires > maxExpires {
		return signed{}, errf(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Expires must be a number of seconds from 1 to %d (seven days).", maxExpires)
	}
	sig := q.Get("X-Amz-Signature")
	signedHeaders := q.Get("X-Amz-SignedHeaders")
	if sig == "" || signedHeaders == "" {
		return signed{}, errf(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Signature and X-Amz-SignedHeaders are required.")
	}
	now := v.now()
	if now.Before(date.Add(-maxSkew)) {
		return signed{}, errf(http.StatusForbidden, "AccessDenied", "Request is not valid yet: X-Amz-Date is in the future.")
	}
	if now.After(date.Add(time.Duration(expires) * time.Second)) {
		return signed{}, errf(http.StatusForbidden, "AccessDenied", "Request has expired.")
	}
	key, e := v.keyFor(scope, date)
	if e != nil {
		return signed{}, e
	}
	q.Del("X-Amz-Signature")
	req := canonicalRequest(r, q, signedHeaders)
	uri, _, err := v.signer.PresignHTTP(context.Background(), credentials(key), req, unsignedPayload, scope.service, scope.region, date, signerOptions)
	if err != nil {
		return signed{}, errf(http.StatusInternalServerError, "InternalError", "Cannot check the signature.")
	}
	u, err := url.Parse(uri)
	if err != nil || !equalSignature(u.Query().Get("X-Amz-Signature"), sig) {
		return signed{}, errf(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
	}
	return signed{key: key, payloadHash: unsignedPayload}, nil
}

func (v *verifier) verifyHeader(r *http.Request) (signed, *Error) {
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), algorithm+" "), ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = val
	}
	scope, ok := parseCredential(fields["Credential"])
	if !ok || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return signed{}, errf(http.StatusBadRequest, "AuthorizationHeaderMalformed", "The Authorization header must hold Credential, SignedHeaders and Signature.")
	}
	date, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return signed{}, errf(http.StatusBadRequest, "AuthorizationHeaderMalformed", "X-Amz-Date must be an ISO 8601 basic time, such as 20250102T030405Z.")
	}
	if d := v.now().Sub(date); d > maxSkew || d < -maxSkew {
		return signed{}, errf(http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the server's time is too large.")
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case payload == unsignedPayload, payload == streamingUnsignedTrailer, isHexSHA256(payload):
	case payload == "":
		return signed{}, errf(http.StatusBadRequest, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256.")
	default:
		return signed{}, errf(http.StatusNotImplemented, "NotImplemented", "x-amz-content-sha256 %q (chunked signing) is not supported: send UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER or the body's SHA-256.", payload)
	}
	key, e := v.keyFor(scope, date)
	if e != nil {
		return signed{}, e
	}
	req := canonicalRequest(r, r.URL.Query(), fields["SignedHeaders"])
	if err := v.signer.SignHTTP(context.Background(), credentials(key), req, payload, scope.service, scope.region, date, signerOptions); err != nil {
		return signed{}, errf(http.StatusInternalServerError, "InternalError", "Cannot check the signature.")
	}
	_, got, _ := strings.Cut(req.Header.Get("Authorization"), "Signature=")
	if !equalSignature(got, fields["Signature"]) {
		return signed{}, errf(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
	}
	return signed{key: key, payloadHash: payload}, nil
}

// signerOptions are S3's: the path is signed as sent, not escaped again,
// and signed headers stay headers.
func signerOptions(o *v4.SignerOptions) {
	o.DisableURIPathEscaping = true
	o.DisableHeaderHoisting = true
}

func credentials(k Key) aws.Credentials {
	return aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey}
}

// canonicalRequest is a copy of r holding what the signature covers: the
// method, the path as sent, the query and the signed headers only.
func canonicalRequest(r *http.Request, q url.Values, signedHeaders string) *http.Request {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u := &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: q.Encode()}
	req := &http.Request{Method: r.Method, URL: u, Host: r.Host, Header: http.Header{}}
	for _, h := range strings.Split(signedHeaders, ";") {
		switch h = strings.ToLower(strings.TrimSpace(h)); h {
		case "host":
		case "content-length":
			req.ContentLength = r.ContentLength
		default:
			if vals := r.Header.Values(h); len(vals) > 0 {
				req.Header[http.CanonicalHeaderKey(h)] = vals
			}
		}
	}
	return req
}

func equalSignature(a, b string) bool {
	return len(a) == 64 && subtle.ConstantTimeCompare([]byte(a), []byte(strings.ToLower(b))) == 1
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
