// Package runnerid names what an egg's runners are on each cloud: the
// runner identity their machines run as and the secret their runner tokens
// are kept in. `gosling deploy` (package bootstrap) makes them by these
// names; the workers (internal/machines, activities) find them by the
// same names, so neither needs the other's records.
package runnerid

import (
	"crypto/sha256"
	"encoding/hex"
)

// Name limits of the clouds: IAM role and instance profile names (64
// characters), Yandex Cloud service account and Lockbox secret names (63,
// [a-z]([-a-z0-9]*[a-z0-9])?).
const (
	maxAWSName    = 64
	maxYandexName = 63
)

// fit shortens a name past max to its start, a dash and 8 hex digits of
// its SHA-256, so long names stay distinct and stable.
func fit(name string, max int) string {
	if len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:max-9] + "-" + hex.EncodeToString(sum[:4])
}

// AWSPath is the IAM path of a deployment's roles: /gosling/<deployment>/.
func AWSPath(deployment string) string { return "/gosling/" + deployment + "/" }

// AWSRole is the egg's runner role (and its instance profile, of the same
// name): VMs, ECS tasks and Lambda functions of the egg run as it.
func AWSRole(deployment, egg string) string {
	return fit(deployment+"-runner-"+egg, maxAWSName)
}

// AWSExecutionRole is the egg's ECS task execution role: it reads the
// runner token into a Fargate task's secrets and writes the task's logs.
func AWSExecutionRole(deployment, egg string) string {
	return fit(deployment+"-runner-"+egg+"-exec", maxAWSName)
}

// AWSTokenPrefix starts the names of the egg's runner-token secrets in
// Secrets Manager (and Vault): gosling/<deployment>/runners/<egg>/, one
// secret per runner under it, so one policy resource names them all.
func AWSTokenPrefix(deployment, egg string) string {
	return "gosling/" + deployment + "/runners/" + egg + "/"
}

// AWSTokensPrefix starts the names of every runner-token secret of the
// deployment: gosling/<deployment>/runners/.
func AWSTokensPrefix(deployment string) string {
	return "gosling/" + deployment + "/runners/"
}

// YandexServiceAccount is the egg's runner service account: VMs and
// Serverless Containers of the egg run as it.
func YandexServiceAccount(deployment, egg string) string {
	return fit(deployment+"-runner-"+egg, maxYandexName)
}

// LockboxTokenSecret is the egg's Lockbox secret of runner tokens, one
// entry per runner: the egg's service account may read it and no other.
func LockboxTokenSecret(deployment, egg string) string {
	return fit(deployment+"-runners-"+egg, maxYandexName)
}
