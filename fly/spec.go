package fly

// The types in this file are the plain, JSON-serialisable result of loading a
// Nest. They hold no HCL or cty values, so workflows can take them as input.

// Nest is a whole, type-checked Nest repository.
type Nest struct {
	// Dir is the directory the Nest was loaded from.
	Dir string `json:"dir"`
	// Eggs holds every egg and eggsbucket, sorted by name.
	Eggs []Egg `json:"eggs"`
	// Jobs holds every self-management job, sorted by name.
	Jobs []Job `json:"jobs"`
	// UglyFox is the pruning configuration (UF/config.fly). When the file is
	// absent it holds the defaults.
	UglyFox UglyFox `json:"uglyfox"`
	// MotherGoose is the server infrastructure (MG/config.fly).
	MotherGoose MotherGoose `json:"mothergoose"`
}

// Egg returns the egg or bucket with the given name.
func (n *Nest) Egg(name string) (*Egg, bool) {
	for i := range n.Eggs {
		if n.Eggs[i].Name == name {
			return &n.Eggs[i], true
		}
	}
	return nil, false
}

// Job returns the job with the given name.
func (n *Nest) Job(name string) (*Job, bool) {
	for i := range n.Jobs {
		if n.Jobs[i].Name == name {
			return &n.Jobs[i], true
		}
	}
	return nil, false
}

// EggKind tells a single-project egg from a bucket.
type EggKind string

// Egg kinds.
const (
	KindEgg    EggKind = "egg"
	KindBucket EggKind = "eggsbucket"
)

// Egg is one GitLab project (KindEgg) or a bucket of projects or a group
// (KindBucket) sharing one runner configuration.
type Egg struct {
	Name string  `json:"name"`
	Kind EggKind `json:"kind"`
	// File is the path of the file that declares the egg, relative to the Nest.
	File string `json:"file"`
	// Version is a content hash of the declaring file: it changes whenever the
	// egg's configuration may have changed.
	Version string `json:"version"`

	GitLab GitLab `json:"gitlab"`
	// Projects lists the projects the egg serves: exactly one for an egg, one
	// or more for a bucket that lists repositories.
	Projects []ProjectRef `json:"projects,omitempty"`
	// Group is set for a bucket that serves a whole GitLab group.
	Group *GroupRef `json:"group,omitempty"`

	Runner Runner    `json:"runner"`
	Apex   Pool      `json:"apex"`
	Nadir  Pool      `json:"nadir"`
	Rift   *RiftSpec `json:"rift,omitempty"`
}

// GitLab says which GitLab instance an egg lives on and how Gosling talks to it.
type GitLab struct {
	// Host is the instance's host name (gitlab.com, a self-managed host or a
	// GitLab Dedicated tenant), optionally with a port.
	Host string `json:"host"`
	// Flavor is "saas", "self-managed" or "dedicated".
	Flavor string `json:"flavor"`
	// Insecure selects plain HTTP; only meant for local test servers.
	Insecure bool `json:"insecure,omitempty"`
	// Token is the API token (create_runner and api scopes).
	Token SecretRef `json:"token"`
	// WebhookSecret is the secret GitLab sends in X-Gitlab-Token.
	WebhookSecret SecretRef `json:"webhook_secret"`
}

// BaseURL is the instance's base URL, such as https://gitlab.com.
func (g GitLab) BaseURL() string {
	if g.Insecure {
		return "http://" + g.Host
	}
	return "https://" + g.Host
}

// ProjectRef names a GitLab project by numeric ID, by path with namespace, or by both.
type ProjectRef struct {
	ID   int64  `json:"id,omitempty"`
	Path string `json:"path,omitempty"`
}

// String is the path when known, else the ID.
func (p ProjectRef) String() string {
	if p.Path != "" {
		return p.Path
	}
	return itoa(p.ID)
}

// GroupRef names a GitLab group whose projects a bucket serves.
type GroupRef struct {
	ID               int64 `json:"id"`
	IncludeSubgroups bool  `json:"include_subgroups"`
}

// Runner types.
const (
	RunnerServerless = "serverless"
	RunnerVM         = "vm"
	RunnerAuto       = "auto"
)

// Clouds runners can run on. "local" is the embedded development provider.
const (
	CloudYandex = "yandex"
	CloudAWS    = "aws"
	CloudLocal  = "local"
)

// Runner is the shape of the runners an egg gets.
type Runner struct {
	// Type is serverless, vm or auto.
	Type string `json:"type"`
	// Clouds is the cloud preference order.
	Clouds []string `json:"clouds"`
	// CPU is the number of vCPUs, 0.05 to 64; serverless runners take the
	// values their cloud makes (see ServerlessShapeFor).
	CPU    float64 `json:"cpu"`
	Memory Size    `json:"memory"`
	Disk   Size    `json:"disk"`
	// MaxConcurrent bounds the runners of this egg that run jobs at once.
	MaxConcurrent int `json:"max_concurrent"`
	// JobsPerRunner is the gitlab-runner "concurrent" setting of one runner.
	JobsPerRunner int      `json:"jobs_per_runner"`
	Tags          []string `json:"tags"`
	RunUntagged   bool     `json:"run_untagged"`
	Image         string   `json:"image"`
	// ExpectedJobDuration feeds the auto runner type: jobs expected to finish
	// within the cloud's serverless limit get serverless runners.
	ExpectedJobDuration Duration `json:"expected_job_duration"`
	// Env are environment variables for jobs; values may be secret URIs.
	Env map[string]EnvValue `json:"env,omitempty"`
	// Module is an optional OpenTofu module source replacing the built-in one.
	Module string `json:"module,omitempty"`
	// Capacity is how the machines are bought: CapacityOnDemand (the
	// default), CapacitySpot (AWS) or CapacityPreemptible (Yandex Cloud);
	// with Fallback entries it is the first cloud's, else every cloud's.
	// Empty in specs decoded before it existed: on demand.
	Capacity string `json:"capacity,omitempty"`
	// Fallback is the ordered list of placements asked after the first
	// (see Runner.Placements) when a cloud refuses the machine for
	// capacity or quota.
	Fallback []Placement `json:"fallback,omitempty"`
	// CapacityCooldown is how long an egg's pool leaves a placement that
	// refused a machine before asking it again (see CooldownOrDefault);
	// -1 remembers no refusal.
	CapacityCooldown Duration `json:"capacity_cooldown,omitempty"`
	// Serverless holds the shape of the runners on each cloud where they
	// are serverless (see Runner.KindOn), in the clouds' order. It is filled
	// in by LoadNest.
	Serverless []ServerlessShape `json:"serverless,omitempty"`
}

// EnvValue is a plain value or a reference to a secret.
type EnvValue struct {
	Value  string    `json:"value,omitempty"`
	Secret SecretRef `json:"secret,omitempty"`
}

// Pool holds the limits of an Apex or Nadir pool.
type Pool struct {
	Min         int      `json:"min"`
	Max         int      `json:"max"`
	IdleTimeout Duration `json:"idle_timeout"`
	// MaxCPU and MaxMemory cap the pool's vCPU and memory totals; zero
	// means no cap beyond Max runners.
	MaxCPU    float64 `json:"max_cpu,omitempty"`
	MaxMemory Size    `json:"max_memory,omitempty"`
	// WarmFor, on the Apex pool, is how long a Nadir runner promoted ahead
	// of announced jobs (a push, a merge request, a pipeline's created
	// jobs) waits for one before it goes back to Nadir; zero: announced
	// jobs promote nothing.
	WarmFor Duration `json:"warm_for,omitempty"`
}

// RiftSpec configures the optional Rift cache and remote container context.
type RiftSpec struct {
	Enabled bool `json:"enabled"`
	// Engine is docker, podman or nerdctl.
	Engine string `json:"engine"`
	// Cache bounds the bytes the egg's build cache and image mirror hold
	// together; past it the least recently used entries are evicted.
	Cache Size `json:"cache"`
	// MaxAge evicts an entry that was not read or written for this long.
	MaxAge Duration `json:"max_age"`
	// Endpoint is an existing Rift server; empty means Gosling runs one.
	Endpoint string `json:"endpoint,omitempty"`
	// Bucket is the egg's cache bucket (gitlab-runner's BucketName); it
	// defaults to the egg's name.
	Bucket string `json:"bucket"`
	// AccessKey and SecretKey are the bucket's S3 credentials, which
	// gitlab-runner signs its cache requests with. AccessKey is an access
	// key ID or a secret URI holding one; SecretKey is a secret URI. Both
	// empty: Rift derives a pair for the egg from its own key.
	AccessKey string    `json:"access_key,omitempty"`
	SecretKey SecretRef `json:"secret_key,omitempty"`
	// Mirror, when set, gives the egg a pull-through image mirror.
	Mirror *RiftMirror `json:"mirror,omitempty"`
}

// RiftMirror is the upstream registry of an egg's image mirror.
type RiftMirror struct {
	// Upstream is the registry's base URL, such as https://registry-1.docker.io.
	Upstream string `json:"upstream"`
	// Username and Password log in to the upstream; Password is a secret URI.
	Username string    `json:"username,omitempty"`
	Password SecretRef `json:"password,omitempty"`
}

// Job kinds.
const (
	JobSecretRotation    = "secret_rotation"
	JobNestUpdate        = "nest_update"
	JobRunnerImageUpdate = "runner_image_update"
	JobCustom            = "custom"
)

// Job is a self-management job that Gosling runs on a cron schedule.
type Job struct {
	Name    string `json:"name"`
	File    string `json:"file"`
	Version string `json:"version"`
	// Schedule is a five-field cron expression (or a @descriptor).
	Schedule string `json:"schedule"`
	Timezone string `json:"timezone"`
	Kind     string `json:"kind"`
	Enabled  bool   `json:"enabled"`
	// Timeout bounds one run.
	Timeout Duration `json:"timeout"`
	// Runner says where the job runs: on an egg's runners or on runners with tags.
	Runner JobRunner `json:"runner"`
	// Params are the kind's parameters.
	Params map[string]any `json:"params,omitempty"`
}

// JobRunner selects the runner of a job.
type JobRunner struct {
	Egg      string   `json:"egg,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	Image    string   `json:"image,omitempty"`
	Elevated bool     `json:"elevated"`
}

// Policy actions.
const (
	ActionTerminate = "terminate"
	ActionRecycle   = "recycle"
	ActionDemote    = "demote"
	ActionNotify    = "notify"
	ActionIgnore    = "ignore"
	ActionReap      = "reap"
	ActionReport    = "report"
)

// UglyFox is the pruning configuration.
type UglyFox struct {
	File     string `json:"file,omitempty"`
	Schedule string `json:"schedule"`
	DryRun   bool   `json:"dry_run"`

	Failed    FailedPolicy    `json:"failed"`
	Old       OldPolicy       `json:"old"`
	Idle      IdlePolicy      `json:"idle"`
	Heartbeat HeartbeatPolicy `json:"heartbeat"`
	Reconcile ReconcilePolicy `json:"reconcile"`
	Audit     AuditPolicy     `json:"audit"`
}

// FailedPolicy terminates runners that fail too often.
type FailedPolicy struct {
	Threshold int      `json:"threshold"`
	Window    Duration `json:"window"`
	Action    string   `json:"action"`
}

// OldPolicy recycles runners past their maximum age.
type OldPolicy struct {
	MaxAge      Duration `json:"max_age"`
	NadirMaxAge Duration `json:"nadir_max_age"`
	Action      string   `json:"action"`
}

// IdlePolicy demotes or removes idle runners.
type IdlePolicy struct {
	Apex   Duration `json:"apex"`
	Nadir  Duration `json:"nadir"`
	Action string   `json:"action"`
}

// HeartbeatPolicy handles runners whose agent went silent.
type HeartbeatPolicy struct {
	Timeout Duration `json:"timeout"`
	Action  string   `json:"action"`
}

// ReconcilePolicy compares GitLab, cloud and store and reaps orphans.
type ReconcilePolicy struct {
	Schedule string `json:"schedule"`
	Action   string `json:"action"`
}

// AuditPolicy keeps the audit log.
type AuditPolicy struct {
	Retention Duration `json:"retention"`
}

// MotherGoose describes the servers' own infrastructure.
type MotherGoose struct {
	File   string `json:"file,omitempty"`
	Cloud  string `json:"cloud"`
	Region string `json:"region"`

	Temporal   Temporal   `json:"temporal"`
	APIGateway APIGateway `json:"api_gateway"`
	Containers Containers `json:"containers"`
	Queue      Queue      `json:"queue"`
	Triggers   Triggers   `json:"triggers"`
	Database   Database   `json:"database"`
	// State is where workers keep the runners' OpenTofu state.
	State     TofuState           `json:"state"`
	Secrets   Secrets             `json:"secrets"`
	Providers map[string]Provider `json:"providers"`
	Nest      NestSource          `json:"nest"`
	Sweep     Sweep               `json:"sweep"`
	// Agent says how runner machines get the gosling agent and which
	// versions of it and of gitlab-runner they run.
	Agent AgentRelease `json:"agent"`
	// Cost is the price table jobs are charged by (cost block).
	Cost Cost `json:"cost"`
}

// AgentRelease is the mothergoose agent block. Every field defaults to
// empty: without url, cloud VM runners are refused before `tofu apply`;
// without image, serverless runners on clouds are; without version (or
// gitlab_runner_version) agents keep what they run. URLs may name {version},
// {os} and {arch}, filled per machine; each download's SHA-256 is read from
// the same URL followed by ".sha256" (sha256sum format).
type AgentRelease struct {
	// URL is where cloud VMs download the gosling agent (https): the
	// release of cmd/gosling-agent, which runs gosling's agent command
	// lines without the rest of gosling.
	URL string `json:"url,omitempty"`
	// Image is the runner image serverless runners run: gitlab-runner
	// and gosling (the Dockerfile's runner target).
	Image string `json:"image,omitempty"`
	// Version pins the agent: running agents update themselves to it.
	Version string `json:"version,omitempty"`
	// GitLabRunnerVersion and GitLabRunnerURL pin gitlab-runner on VMs
	// (installed at first boot, upgraded between jobs). Both or neither.
	GitLabRunnerVersion string `json:"gitlab_runner_version,omitempty"`
	GitLabRunnerURL     string `json:"gitlab_runner_url,omitempty"`
}

// Temporal says where the Temporal service is.
type Temporal struct {
	Address   string    `json:"address"`
	Namespace string    `json:"namespace"`
	TLS       bool      `json:"tls"`
	APIKey    SecretRef `json:"api_key,omitempty"`
}

// APIGateway fronts the API.
type APIGateway struct {
	Name   string `json:"name"`
	Domain string `json:"domain,omitempty"`
	// CertificateARN is the ACM certificate
	// (arn:aws:acm:REGION:ACCOUNT:certificate/ID, in the deployment's
	// region) that the AWS gateway's custom domain serves Domain with; set
	// on cloud "aws" exactly when Domain is.
	CertificateARN string `json:"certificate_arn,omitempty"`
	// Auth is the gateway's authorizer function.
	Auth AuthFunction `json:"auth"`
}

// AuthFunction checks bearer tokens in front of the REST API.
type AuthFunction struct {
	Name     string      `json:"name"`
	Tokens   []SecretRef `json:"tokens"`
	CacheTTL Duration    `json:"cache_ttl"`
}

// Containers holds the serverless containers the servers run in.
type Containers struct {
	API     Container `json:"api"`
	Worker  Container `json:"mothergoose_worker"`
	UglyFox Container `json:"uglyfox_worker"`
}

// Container is one serverless container's shape.
type Container struct {
	Image        string   `json:"image"`
	CPU          float64  `json:"cpu"`
	Memory       Size     `json:"memory"`
	MinInstances int      `json:"min_instances"`
	MaxInstances int      `json:"max_instances"`
	Concurrency  int      `json:"concurrency"`
	Timeout      Duration `json:"timeout"`
}

// Queue is MG/config.fly's queue block, kept so that Nests written for
// the Celery-era design still load: gosling deploy makes no queue (the
// store's outbox keeps accepted webhooks while Temporal is unreachable)
// and fly warns where the block is. Kind is "none" without the block.
type Queue struct {
	Kind              string   `json:"kind"`
	Name              string   `json:"name"`
	VisibilityTimeout Duration `json:"visibility_timeout"`
	DeadLetterAfter   int      `json:"dead_letter_after"`
}

// Triggers is MG/config.fly's triggers block, kept so that old Nests
// still load: Temporal Schedules run UglyFox and the jobs, gosling deploy
// makes no cloud trigger, and fly warns where the block is. Kind is
// "none" without the block.
type Triggers struct {
	Kind string `json:"kind"`
}

// Database is the store. Engines read: sqlite Path; postgresql DSN;
// dynamodb TablePrefix, Region, Endpoint; ydb Name (the database path),
// Endpoint (its gRPC endpoint), DocumentAPIEndpoint, TablePrefix, Auth.
type Database struct {
	Engine string `json:"engine"`
	// Endpoint is YDB's gRPC endpoint, or a DynamoDB endpoint URL that
	// replaces the region's (VPC endpoints, compatible servers).
	Endpoint string `json:"endpoint,omitempty"`
	// Name is the YDB database's path (/ru-central1/b1g.../etn...).
	Name string    `json:"name,omitempty"`
	DSN  SecretRef `json:"dsn,omitempty"`
	Path string    `json:"path,omitempty"`
	// TablePrefix names DynamoDB's and YDB's tables: <prefix>-store.
	TablePrefix string `json:"table_prefix,omitempty"`
	// Region is DynamoDB's AWS region (default: MotherGoose's region).
	Region string `json:"region,omitempty"`
	// DocumentAPIEndpoint is the YDB database's DynamoDB-compatible
	// endpoint (default: YDBDocumentAPIHost followed by Name).
	DocumentAPIEndpoint string `json:"document_api_endpoint,omitempty"`
	// Auth is how the store authenticates to YDB's Document API: iam (IAM
	// tokens) or static (a service account's static access key).
	Auth string `json:"auth,omitempty"`
	// At is where the block (or, without one, the mothergoose block) is
	// declared, as file:line:column, for errors raised after loading.
	At string `json:"at,omitempty"`
}

// State backends of TofuState.Backend.
const (
	StateLocal = "local"
	StatePG    = "pg"
	StateS3    = "s3"
)

// TofuState is the mothergoose state block: where the workers keep the
// OpenTofu state of the runners' machines. Every worker replica must share
// it, so that a machine one worker made is torn down by another: pg (the
// default with a postgresql database: the same database, schema
// gosling_tofu) or s3 (AWS S3 or Yandex Object Storage, locked with a lock
// file). local keeps each worker's states on its own disk: one worker only.
type TofuState struct {
	// Backend is local, pg or s3; empty takes the default (Effective).
	Backend string `json:"backend,omitempty"`
	// S3: the bucket, the prefix of every state's key, the region, and for
	// S3-compatible storage the endpoint and path-style addressing.
	Bucket    string `json:"bucket,omitempty"`
	Prefix    string `json:"prefix,omitempty"`
	Region    string `json:"region,omitempty"`
	Endpoint  string `json:"endpoint,omitempty"`
	PathStyle bool   `json:"path_style,omitempty"`
	// AccessKey and SecretKey are secret URIs of a static key (Yandex
	// Object Storage); without them the worker's own identity is used.
	AccessKey SecretRef `json:"access_key,omitempty"`
	SecretKey SecretRef `json:"secret_key,omitempty"`
}

// Effective is the backend in force: the one the block names, else pg
// when the store is PostgreSQL, else local.
func (s TofuState) Effective(postgresStore bool) string {
	switch {
	case s.Backend != "":
		return s.Backend
	case postgresStore:
		return StatePG
	}
	return StateLocal
}

// Secrets configures the secret backends.
type Secrets struct {
	// Backend is where Gosling writes runner tokens: yc-lockbox, aws-sm, vault or local.
	Backend  string                   `json:"backend"`
	CacheTTL Duration                 `json:"cache_ttl"`
	Backends map[string]SecretBackend `json:"backends"`
}

// SecretBackend is the configuration of one secret backend.
type SecretBackend struct {
	Scheme   string   `json:"scheme"`
	CacheTTL Duration `json:"cache_ttl"`
	// FolderID is the Lockbox folder, where each egg's secret of runner
	// tokens is (internal/runnerid.LockboxTokenSecret).
	FolderID string `json:"folder_id,omitempty"`
	// RunnerTokens is the one Lockbox secret that kept every runner's
	// token before each egg's went to a secret of its own: runners whose
	// record names no token reference are looked for there.
	RunnerTokens string `json:"runner_tokens,omitempty"`
	// Region is the AWS region.
	Region string `json:"region,omitempty"`
	// Address, Auth, Mount and Role configure Vault.
	Address string `json:"address,omitempty"`
	Auth    string `json:"auth,omitempty"`
	Mount   string `json:"mount,omitempty"`
	Role    string `json:"role,omitempty"`
	// Path is the local backend's file.
	Path string `json:"path,omitempty"`
}

// Provider holds the credentials and placement of one runner cloud.
type Provider struct {
	Name string `json:"name"`
	// Yandex.
	FolderID          string    `json:"folder_id,omitempty"`
	Zone              string    `json:"zone,omitempty"`
	SubnetID          string    `json:"subnet_id,omitempty"`
	ServiceAccountKey SecretRef `json:"service_account_key,omitempty"`
	// AWS.
	Region  string   `json:"region,omitempty"`
	RoleARN string   `json:"role_arn,omitempty"`
	Subnets []string `json:"subnets,omitempty"`
	Cluster string   `json:"cluster,omitempty"`
	// VPCID is the VPC of Subnets. MotherGoose on AWS needs it for its
	// API gateway, whose VPC link reaches the API service through a
	// private Cloud Map namespace in this VPC.
	VPCID    string `json:"vpc_id,omitempty"`
	StateDir string `json:"state_dir,omitempty"`
}

// NestSource says where the Nest repository itself lives, so pushes to it
// reload the configuration.
type NestSource struct {
	Project string `json:"project,omitempty"`
	Ref     string `json:"ref"`
	// Host is the GitLab instance holding the project (default: the host
	// the eggs share), and Token a secret URI of an API token that can read
	// it (default: the token of an egg on that host).
	Host  string    `json:"host,omitempty"`
	Token SecretRef `json:"token,omitempty"`
	// WebhookSecret is the secret token of the Nest repository's push
	// hook: a secret of its own, never an egg's, so that no egg's secret
	// can make MotherGoose apply the Nest. Without it, pushes to the Nest
	// are refused and servers follow the head of Ref by polling.
	WebhookSecret SecretRef `json:"webhook_secret,omitempty"`
}
