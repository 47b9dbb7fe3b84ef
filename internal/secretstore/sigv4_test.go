package secretstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The agent's SigV4 signature is the AWS SDK's, byte for byte, for the
// requests it sends: JSON posts with and without a session token, and a
// query string.
func TestSigV4IsTheSDKs(t *testing.T) {
	at := time.Date(2026, 12, 7, 21, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		url, token string
		body       []byte
	}{
		{"https://secretsmanager.eu-west-1.amazonaws.com/", "", []byte(`{"SecretId":"gosling/prod/runners/web/web-1"}`)},
		{"https://secretsmanager.eu-west-1.amazonaws.com/", "session-token-x", []byte(`{"SecretId":"a b/c"}`)},
		{"http://127.0.0.1:4566/path/x%20y?b=2&a=1&a=0&c=%2F", "", nil},
	} {
		mk := func() *http.Request {
			req, _ := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(c.body))
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
			req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
			return req
		}
		ours := mk()
		if err := signV4(ours, awsCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: c.token}, "secretsmanager", "eu-west-1", at); err != nil {
			t.Fatal(err)
		}
		sdk := mk()
		sum := sha256.Sum256(c.body)
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: c.token},
			sdk, hex.EncodeToString(sum[:]), "secretsmanager", "eu-west-1", at); err != nil {
			t.Fatal(err)
		}
		if got, want := ours.Header.Get("Authorization"), sdk.Header.Get("Authorization"); got != want {
			t.Errorf("%s:\n ours %s\n SDK  %s", c.url, got, want)
		}
	}
}
