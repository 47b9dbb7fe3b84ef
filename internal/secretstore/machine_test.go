package secretstore_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/mototest"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/secrets/awssmtest"
	"github.com/gosling-ci/gosling/internal/secrets/lockboxtest"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// A Yandex Cloud machine reads Lockbox over its REST API with the IAM
// token of its service account from the metadata service: the token, a
// pinned version, versions, and Lockbox's refusals as this package's
// errors. It writes nothing.
func TestMachineLockbox(t *testing.T) {
	srv, err := lockboxtest.New("t1.deployer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	rest := srv.RESTServer()
	t.Cleanup(rest.Close)
	md := srv.MetadataServer()
	t.Cleanup(md.Close)
	// The worker writes the tokens through the SDK backend.
	writer, err := secrets.NewLockbox(context.Background(), secrets.LockboxOptions{Endpoint: srv.Addr, Plaintext: true, IAMToken: "t1.deployer"})
	if err != nil {
		t.Fatal(err)
	}
	srv.CreateSecret("e6qrunnersweb")
	srv.CreateSecret("e6qrunnersapi")
	w := secretstore.NewResolver(writer)
	first, err := w.Put(context.Background(), "yc-lockbox://e6qrunnersweb/web-1", "glrt-first")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Put(context.Background(), "yc-lockbox://e6qrunnersweb/web-1", "glrt-second"); err != nil {
		t.Fatal(err)
	}
	srv.Deny("e6qrunnersapi")
	r, err := secretstore.OpenMachine(fly.Secrets{}, secretstore.MachineOptions{Getenv: env(map[string]string{
		secretstore.EnvYCMetadataAddr: strings.TrimPrefix(md.URL, "http://"),
		secretstore.EnvLockboxAPI:     rest.URL, secretstore.EnvLockboxPayloadAPI: rest.URL,
	})})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if v, err := r.Resolve(ctx, "yc-lockbox://e6qrunnersweb/web-1"); err != nil || v != "glrt-second" {
		t.Errorf("current token %q, %v", v, err)
	}
	if v, err := r.Resolve(ctx, fly.SecretRef("yc-lockbox://e6qrunnersweb/web-1?version="+first)); err != nil || v != "glrt-first" {
		t.Errorf("pinned token %q, %v", v, err)
	}
	vs, err := r.Versions(ctx, "yc-lockbox://e6qrunnersweb/web-1")
	if err != nil || len(vs) != 2 || vs[0].ID != first || !vs[1].Current {
		t.Errorf("versions %+v, %v", vs, err)
	}
	for _, c := range []struct {
		ref  fly.SecretRef
		want error
	}{
		{"yc-lockbox://e6qrunnersweb/web-2", secretstore.ErrKeyNotFound},
		{"yc-lockbox://e6qmissing/web-1", secretstore.ErrNotFound},
		{"yc-lockbox://e6qrunnersapi/api-1", secretstore.ErrPermission},
		{"yc-lockbox://e6qrunnersweb/web-1?version=e6qnoversion", secretstore.ErrVersion},
	} {
		if _, err := r.Resolve(ctx, c.ref); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.ref, err, c.want)
		}
	}
	if _, err := r.Put(ctx, "yc-lockbox://e6qrunnersweb/web-1", "x"); !errors.Is(err, secretstore.ErrReadOnlyPath) {
		t.Errorf("a machine's write: %v", err)
	}
	// Without a metadata service nor a token: an authentication error.
	bad, _ := secretstore.OpenMachine(fly.Secrets{}, secretstore.MachineOptions{Getenv: env(map[string]string{
		secretstore.EnvYCMetadataAddr: "127.0.0.1:1", secretstore.EnvLockboxPayloadAPI: rest.URL})})
	if _, err := bad.Resolve(ctx, "yc-lockbox://e6qrunnersweb/web-1"); !errors.Is(err, secretstore.ErrAuth) {
		t.Errorf("no metadata service: %v", err)
	}
}

// imds is a STAND-IN for EC2's instance metadata service, version 2: a
// session token from PUT /latest/api/token, which every GET must carry, and
// the instance profile's role and keys.
func imds(t *testing.T, role string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" && r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") != "":
			_, _ = w.Write([]byte("imds-session"))
		case r.Method == http.MethodGet && r.Header.Get("X-aws-ec2-metadata-token") != "imds-session":
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			_, _ = w.Write([]byte(role))
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/"+role:
			_, _ = w.Write([]byte(`{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret","Token":"imds-token","Expiration":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// An AWS machine reads Secrets Manager's JSON API signed with the keys of
// its identity, wherever the SDKs' default chain would find them: a Lambda
// function's environment, an ECS task role's container credentials, an
// EC2 instance profile's through IMDSv2.
func TestMachineSecretsManager(t *testing.T) {
	sm := awssmtest.New(t)
	sm.SetSecretString(t, "gosling/prod/runners/web/web-1", `{"token":"glrt-web"}`)
	var containerCalls atomic.Int32
	container := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/credentials/task" || r.Header.Get("Authorization") != "task-auth" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		containerCalls.Add(1)
		_, _ = w.Write([]byte(`{"AccessKeyId":"ASIATASK","SecretAccessKey":"task-secret","Token":"task-token","Expiration":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`))
	}))
	t.Cleanup(container.Close)
	instance := imds(t, "gosling-prod-runner-web")
	base := map[string]string{"AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.URL}
	for name, extra := range map[string]map[string]string{
		"lambda":   {"AWS_ACCESS_KEY_ID": "ASIALAMBDA", "AWS_SECRET_ACCESS_KEY": "lambda-secret", "AWS_SESSION_TOKEN": "lambda-token", "AWS_REGION": mototest.Region},
		"ecs":      {"AWS_CONTAINER_CREDENTIALS_FULL_URI": container.URL + "/v2/credentials/task", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "task-auth", "AWS_REGION": mototest.Region},
		"instance": {"AWS_EC2_METADATA_SERVICE_ENDPOINT": instance.URL},
	} {
		t.Run(name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range base {
				e[k] = v
			}
			for k, v := range extra {
				e[k] = v
			}
			cfg := fly.Secrets{Backends: map[string]fly.SecretBackend{fly.SchemeAWSSM: {Region: mototest.Region}}}
			r, err := secretstore.OpenMachine(cfg, secretstore.MachineOptions{Getenv: env(e)})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if v, err := r.Resolve(ctx, "aws-sm://gosling/prod/runners/web/web-1/token"); err != nil || v != "glrt-web" {
				t.Fatalf("token %q, %v", v, err)
			}
			vs, err := r.Versions(ctx, "aws-sm://gosling/prod/runners/web/web-1/token")
			if err != nil || len(vs) != 1 || !vs[0].Current {
				t.Errorf("versions %+v, %v", vs, err)
			}
			pinned := fly.SecretRef("aws-sm://gosling/prod/runners/web/web-1/token?version=" + vs[0].ID)
			if v, err := r.Fresh(ctx, pinned); err != nil || v != "glrt-web" {
				t.Errorf("pinned: %q, %v", v, err)
			}
			if _, err := r.Resolve(ctx, "aws-sm://gosling/prod/runners/api/api-1/token"); !errors.Is(err, secretstore.ErrNotFound) {
				t.Errorf("a missing secret: %v", err)
			}
			if err := r.Delete(ctx, "aws-sm://gosling/prod/runners/web/web-1/token"); !errors.Is(err, secretstore.ErrReadOnlyPath) {
				t.Errorf("a machine's delete: %v", err)
			}
		})
	}
	if containerCalls.Load() != 1 {
		t.Errorf("container credentials fetched %d times, want once (reused until they near expiry)", containerCalls.Load())
	}
	sm.Deny("gosling/prod/runners/api/api-1")
	r, _ := secretstore.OpenMachine(fly.Secrets{}, secretstore.MachineOptions{Getenv: env(map[string]string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.URL, "AWS_REGION": mototest.Region, "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1"})})
	if _, err := r.Resolve(context.Background(), "aws-sm://gosling/prod/runners/web/web-1/token"); !errors.Is(err, secretstore.ErrAuth) {
		t.Errorf("no identity at all: %v", err)
	}
}
