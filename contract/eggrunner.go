package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/fly"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// WorkflowEggRunner holds the one GitLab runner an egg's machines of one
// runner shape share (EggRunner).
const WorkflowEggRunner = "EggRunner"

// UpdateEnsureEggRunner asks an EggRunner workflow for its GitLab runner,
// created on the first call. No argument; the result is an EggRunner.
const UpdateEnsureEggRunner = "ensure"

// QueryEggRunner returns an EggRunnerStatus.
const QueryEggRunner = "egg-runner"

// DefaultEggRunnerRetireCheck is how often an EggRunner workflow checks
// whether its runner is retired: its shape no longer the egg's, and no
// machine left on it.
const DefaultEggRunnerRetireCheck = time.Hour

// EggRunnerDescriptionPrefix starts the GitLab description of an egg's
// shared runner: gosling-egg/<egg>/<shape key>. It is not a machine's
// (RunnerDescription), so reconciliation never takes it for an orphan
// machine's runner.
const EggRunnerDescriptionPrefix = "gosling-egg/"

// eggRunnerSecretPrefix starts the secret name of an egg's shared runner
// token (EggRunnerSecretName); runner IDs and egg names hold no dot.
const eggRunnerSecretPrefix = "egg-runner."

// RunnerShape is what GitLab fixes per runner, so every machine sharing
// one GitLab runner must agree on it: tags, run_untagged, maximum timeout,
// where GitLab lets it take jobs (a group, or projects), and where its
// token is kept (the local provider's store, or the configured backend).
// GitLab's access level and protection are not set by Gosling (every
// runner is not_protected); they would join the shape when they are.
type RunnerShape struct {
	Tags        []string `json:"tags,omitempty"`
	RunUntagged bool     `json:"run_untagged,omitempty"`
	// MaximumTimeout is GitLab's maximum_timeout (a serverless runner's
	// run limit); zero sets none.
	MaximumTimeout time.Duration    `json:"maximum_timeout,omitempty"`
	GroupID        int64            `json:"group_id,omitempty"`
	Projects       []fly.ProjectRef `json:"projects,omitempty"`
	// LocalToken keeps the token in the local provider's store, where
	// local machines read it.
	LocalToken bool `json:"local_token,omitempty"`
}

// Key is the shape's short stable hash (12 hex digits): equal shapes, with
// tags in any order, have equal keys.
func (s RunnerShape) Key() string {
	tags := slices.Clone(s.Tags)
	slices.Sort(tags)
	// Written field by field (no reflection: workflows call it), each
	// value length-prefixed so no two shapes write the same bytes.
	var b strings.Builder
	field := func(v string) { b.WriteString(strconv.Itoa(len(v)) + ":" + v + ";") }
	field(strconv.Itoa(len(tags)))
	for _, t := range tags {
		field(t)
	}
	field(strconv.FormatBool(s.RunUntagged))
	field(strconv.FormatInt(int64(s.MaximumTimeout), 10))
	field(strconv.FormatInt(s.GroupID, 10))
	field(strconv.Itoa(len(s.Projects)))
	for _, p := range s.Projects {
		field(strconv.FormatInt(p.ID, 10))
		field(p.Path)
	}
	field(strconv.FormatBool(s.LocalToken))
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:6])
}

// EggRunnerWorkflowID is the fixed ID of the EggRunner workflow of an egg
// and shape key: every provisioning of the egg asks that one workflow, so
// two at once never create two GitLab runners.
func EggRunnerWorkflowID(egg, shapeKey string) string {
	return "egg-runner/" + egg + "/" + shapeKey
}

// EggOfEggRunnerWorkflow is the egg an EggRunnerWorkflowID names.
func EggOfEggRunnerWorkflow(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, "egg-runner/")
	if !ok {
		return "", false
	}
	egg, _, ok := strings.Cut(rest, "/")
	return egg, ok && egg != ""
}

// EggRunnerOf is an egg's shared GitLab runner, as its EggRunner workflow
// holds it.
type EggRunnerOf struct {
	Egg    string    `json:"egg"`
	Runner EggRunner `json:"runner"`
}

// EggRunnerDescription is the GitLab description of an egg's shared runner.
func EggRunnerDescription(egg, shapeKey string) string {
	return EggRunnerDescriptionPrefix + egg + "/" + shapeKey
}

// EggRunnerSecretName is the name its token is stored under, in the place
// a machine's token would be (a runner ID's place in the token reference).
func EggRunnerSecretName(egg, shapeKey string) string {
	return eggRunnerSecretPrefix + egg + "." + shapeKey
}

// IsEggRunnerToken tells a token reference of an egg's shared runner from a
// machine's own (older runners had one GitLab runner each): a shared one is
// never deleted, paused or reset for one machine.
func IsEggRunnerToken(ref string) bool {
	return strings.Contains(ref, "/"+eggRunnerSecretPrefix)
}

// EggRunnerInput starts an EggRunner workflow.
type EggRunnerInput struct {
	Egg    string      `json:"egg"`
	GitLab fly.GitLab  `json:"gitlab"`
	Shape  RunnerShape `json:"shape"`
	// Cloud is a cloud of the egg's machines: where the token is kept
	// (see CreateGitLabRunnerInput.Cloud).
	Cloud string `json:"cloud"`
	// RetireCheck overrides DefaultEggRunnerRetireCheck.
	RetireCheck time.Duration `json:"retire_check,omitempty"`
	// RotateAhead is how long before its token_expires_at the runner's
	// token is rotated; 0 means a third of the token's life (TokenRotateAt).
	RotateAhead time.Duration `json:"rotate_ahead,omitempty"`
	// Runner is the runner made so far, carried across continue-as-new.
	Runner *EggRunner `json:"runner,omitempty"`
}

// EggRunner is an egg's shared GitLab runner: its ID and where its token
// is (a secret reference, never the token).
type EggRunner struct {
	GitLabRunnerID int64  `json:"gitlab_runner_id"`
	TokenRef       string `json:"token_ref"`
	ShapeKey       string `json:"shape_key"`
	// TokenIssuedAt and TokenExpiresAt are when the current token was
	// made (created or reset) and when GitLab lets it expire
	// (token_expires_at); TokenExpiresAt is nil when it never expires.
	TokenIssuedAt  time.Time  `json:"token_issued_at,omitzero"`
	TokenExpiresAt *time.Time `json:"token_expires_at,omitempty"`
}

// TokenRotateAt is when an expiring token is rotated: ahead before its
// expiry, or, with ahead 0, once two thirds of its life (issued to expiry)
// have passed; a token whose issue time is unknown is taken as living
// DefaultTokenLife. ok is false for a token that never expires.
func (r EggRunner) TokenRotateAt(ahead time.Duration) (at time.Time, ok bool) {
	if r.TokenExpiresAt == nil {
		return time.Time{}, false
	}
	if ahead <= 0 {
		life := DefaultTokenLife
		if !r.TokenIssuedAt.IsZero() && r.TokenExpiresAt.After(r.TokenIssuedAt) {
			life = r.TokenExpiresAt.Sub(r.TokenIssuedAt)
		}
		ahead = life / 3
	}
	return r.TokenExpiresAt.Add(-ahead), true
}

// DefaultTokenLife is the longest life GitLab gives a runner token where
// an instance sets an expiry (15 days).
const DefaultTokenLife = 15 * 24 * time.Hour

// TokenRotationRetry is how long an EggRunner waits before it tries
// again to rotate an expiring token after a rotation that did not reset
// it (another rotation running, GitLab unreachable).
const TokenRotationRetry = 5 * time.Minute

// EggRunnerStatus is an EggRunner workflow's state (QueryEggRunner).
type EggRunnerStatus struct {
	Runner   *EggRunner `json:"runner,omitempty"`
	Retiring bool       `json:"retiring,omitempty"`
}

// EggRunnerStartOptions are the start options of an EggRunner workflow,
// used with UpdateWithStart: a running one is joined, an ended one (its
// runner retired) started again.
func EggRunnerStartOptions(egg, shapeKey string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID: EggRunnerWorkflowID(egg, shapeKey), TaskQueue: TaskQueueMotherGoose,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}
}

// EggShape is the shape of an egg's runners: its tags and run_untagged,
// its group or else its projects (fallback, the project of the job at hand
// when the egg lists none), with a maximum timeout (a serverless runner's
// run limit, else zero) and where its token is kept.
func EggShape(egg fly.Egg, fallback *fly.ProjectRef, maximumTimeout time.Duration, localToken bool) RunnerShape {
	s := RunnerShape{
		Tags: slices.Clone(egg.Runner.Tags), RunUntagged: egg.Runner.RunUntagged,
		MaximumTimeout: maximumTimeout, LocalToken: localToken,
	}
	switch {
	case egg.Group != nil:
		s.GroupID = egg.Group.ID
	case len(egg.Projects) > 0:
		s.Projects = slices.Clone(egg.Projects)
	case fallback != nil:
		s.Projects = []fly.ProjectRef{*fallback}
	}
	return s
}
