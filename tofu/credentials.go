package tofu

import (
	"sort"
	"strings"

	"github.com/gosling-ci/gosling/fly"
)

// awsCredentialEnv are the variables the AWS provider (the AWS SDK's
// default chain) takes the worker's identity from: static keys, a profile,
// an ECS task role's container credentials, a web identity token, and
// where to find them. terraform-exec passes OpenTofu none of the worker's
// environment, so they are listed here, never inherited.
var awsCredentialEnv = []string{
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
	"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_CA_BUNDLE",
	"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
	"AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
}

// awsEndpointPrefix starts the AWS SDKs' endpoint overrides
// (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_EC2, ...).
const awsEndpointPrefix = "AWS_ENDPOINT_URL"

// yandexCredentialEnv are the variables the yandex provider takes the
// worker's identity from: an IAM or OAuth token (YC_TOKEN), a service
// account's key file or the key itself (YC_SERVICE_ACCOUNT_KEY_FILE takes
// either), and the API endpoint.
var yandexCredentialEnv = []string{"YC_TOKEN", "YC_SERVICE_ACCOUNT_KEY_FILE", "YC_ENDPOINT", "YC_STORAGE_ENDPOINT_URL"}

// Yandex variables Gosling reads for its own SDK calls
// (internal/yandexauth) whose provider twin is another name.
const envGoslingYCIAMToken = "YC_IAM_TOKEN"

// CloudCredentials returns the environment one OpenTofu run of a module on
// cloud needs to act as the worker: the worker's own credential variables
// of that cloud's provider (env, KEY=value entries, the worker's
// environment), and, for Yandex Cloud, the provider block's service
// account key (serviceAccountKey, the resolved value of fly's
// service_account_key) as YC_SERVICE_ACCOUNT_KEY_FILE, which the provider
// takes as a path or as the key's JSON. Nothing of another cloud is
// passed, and a module of the local provider gets nothing. With none of
// them set, the providers use the instance's metadata service (an EC2
// instance profile, a Compute Cloud instance's service account).
func CloudCredentials(cloud string, env []string, serviceAccountKey string) map[string]string {
	get := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && v != "" {
			get[k] = v
		}
	}
	out := map[string]string{}
	switch cloud {
	case fly.CloudAWS:
		names := append([]string(nil), awsCredentialEnv...)
		for k := range get {
			if strings.HasPrefix(k, awsEndpointPrefix) {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, k := range names {
			if v, ok := get[k]; ok {
				out[k] = v
			}
		}
	case fly.CloudYandex:
		for _, k := range yandexCredentialEnv {
			if v, ok := get[k]; ok {
				out[k] = v
			}
		}
		if _, ok := out["YC_TOKEN"]; !ok {
			if v, ok := get[envGoslingYCIAMToken]; ok {
				out["YC_TOKEN"] = v
			}
		}
		if serviceAccountKey != "" {
			out["YC_SERVICE_ACCOUNT_KEY_FILE"] = serviceAccountKey
			delete(out, "YC_TOKEN")
		}
	}
	return out
}
