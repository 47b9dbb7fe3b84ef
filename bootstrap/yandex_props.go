package bootstrap

import "encoding/json"

// The Props of the Yandex Cloud resource kinds. Field names are the
// Terraform provider's for the same resource, which the plan prints and
// the journal keeps.

// ServiceAccountProps is a service account (yandex_iam_service_account).
type ServiceAccountProps struct {
	Name        string `json:"name"`
	FolderID    string `json:"folder_id"`
	Description string `json:"description"`
}

// FolderBindingProps are a service account's roles on a folder
// (yandex_folder_iam_binding).
type FolderBindingProps struct {
	FolderID         string   `json:"folder_id"`
	ServiceAccountID string   `json:"service_account_id"`
	Roles            []string `json:"roles"`
}

// ResourceBindingProps are a service account's roles on one Lockbox
// secret (yandex_lockbox_secret_iam_binding) or function
// (yandex_function_iam_binding).
type ResourceBindingProps struct {
	ResourceID       string   `json:"resource_id"`
	ServiceAccountID string   `json:"service_account_id"`
	Roles            []string `json:"roles"`
}

// LockboxSecretProps is a Lockbox secret (yandex_lockbox_secret), made
// without a version: no value passes through a plan or the journal.
type LockboxSecretProps struct {
	Name        string            `json:"name"`
	FolderID    string            `json:"folder_id"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
}

// DatabaseProps is a YDB database (yandex_ydb_database).
type DatabaseProps struct {
	Name       string            `json:"name"`
	FolderID   string            `json:"folder_id"`
	Serverless bool              `json:"serverless"`
	Labels     map[string]string `json:"labels"`
}

func (ServiceAccountProps) isProps()  {}
func (FolderBindingProps) isProps()   {}
func (ResourceBindingProps) isProps() {}
func (LockboxSecretProps) isProps()   {}
func (DatabaseProps) isProps()        {}

func (p ServiceAccountProps) cloudName() string { return p.Name }
func (p LockboxSecretProps) cloudName() string  { return p.Name }
func (p DatabaseProps) cloudName() string       { return p.Name }

// binding is the Props of the three binding kinds.
type binding interface {
	Props
	// target is the ID of the folder, secret or function bound on.
	target() string
	account() string
	roles() []string
}

func (p FolderBindingProps) target() string    { return p.FolderID }
func (p FolderBindingProps) account() string   { return p.ServiceAccountID }
func (p FolderBindingProps) roles() []string   { return p.Roles }
func (p ResourceBindingProps) target() string  { return p.ResourceID }
func (p ResourceBindingProps) account() string { return p.ServiceAccountID }
func (p ResourceBindingProps) roles() []string { return p.Roles }

// ContainerProps is a Serverless Container (yandex_serverless_container)
// with the revision it runs; Revision is nil for a container without one.
// A change of Revision deploys a new revision.
type ContainerProps struct {
	Name     string             `json:"name"`
	FolderID string             `json:"folder_id"`
	Labels   map[string]string  `json:"labels"`
	Revision *ContainerRevision `json:"revision"`
}

// ContainerRevision is what a container's revision runs: Memory in
// bytes, CoreFraction in per cent of a core, TimeoutSeconds per request.
type ContainerRevision struct {
	Image            string            `json:"image"`
	Args             []string          `json:"args"`
	Memory           int64             `json:"memory"`
	Cores            int64             `json:"cores"`
	CoreFraction     int64             `json:"core_fraction"`
	Concurrency      int64             `json:"concurrency"`
	TimeoutSeconds   int64             `json:"timeout_seconds"`
	MinInstances     int64             `json:"min_instances"`
	ServiceAccountID string            `json:"service_account_id"`
	Environment      map[string]string `json:"environment"`
}

// TriggerProps is a timer trigger (yandex_function_trigger) that invokes
// a container's Path with Payload on Cron as ServiceAccountID.
type TriggerProps struct {
	Name             string            `json:"name"`
	FolderID         string            `json:"folder_id"`
	Labels           map[string]string `json:"labels"`
	Cron             string            `json:"cron"`
	Payload          string            `json:"payload"`
	ContainerID      string            `json:"container_id"`
	Path             string            `json:"path"`
	ServiceAccountID string            `json:"service_account_id"`
}

// CloudFunctionProps is a Cloud Functions function (yandex_function) with
// its $latest version; Version is nil for a function without one.
type CloudFunctionProps struct {
	Name        string            `json:"name"`
	FolderID    string            `json:"folder_id"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
	Version     *FunctionVersion  `json:"version"`
}

// FunctionVersion is a function version: Memory in bytes, CodeSHA256 the
// sha256 of its code, which deploy writes in the version's description.
type FunctionVersion struct {
	Runtime          string          `json:"runtime"`
	Entrypoint       string          `json:"entrypoint"`
	Memory           int64           `json:"memory"`
	TimeoutSeconds   int64           `json:"timeout_seconds"`
	ServiceAccountID string          `json:"service_account_id"`
	CodeSHA256       string          `json:"code_sha256"`
	Secrets          []VersionSecret `json:"secrets"`
}

// VersionSecret is a Lockbox entry a version reads into an environment
// variable; Version is a version ID or secretCurrent.
type VersionSecret struct {
	SecretID            string `json:"secret_id"`
	Version             string `json:"version"`
	Key                 string `json:"key"`
	EnvironmentVariable string `json:"environment_variable"`
}

// GatewayProps is an API gateway (yandex_api_gateway) with its OpenAPI
// specification, kept as the JSON document it is.
type GatewayProps struct {
	Name        string            `json:"name"`
	FolderID    string            `json:"folder_id"`
	Labels      map[string]string `json:"labels"`
	Description string            `json:"description"`
	OpenAPISpec json.RawMessage   `json:"openapi_spec"`
}

// InstanceGroupProps is a Compute Cloud instance group
// (yandex_compute_instance_group) of VMs running one container on the
// Container-Optimized Image, acting as ServiceAccountID.
type InstanceGroupProps struct {
	Name             string            `json:"name"`
	FolderID         string            `json:"folder_id"`
	Labels           map[string]string `json:"labels"`
	Description      string            `json:"description"`
	ServiceAccountID string            `json:"service_account_id"`
	Instance         InstanceTemplate  `json:"instance"`
	Scale            GroupScale        `json:"scale"`
	Deploy           GroupDeploy       `json:"deploy"`
	Zones            []string          `json:"zones"`
	HealthCheck      GroupHealthCheck  `json:"health_check"`
}

// InstanceTemplate is a group's VM: Memory in bytes, CoreFraction in per
// cent.
type InstanceTemplate struct {
	PlatformID       string            `json:"platform_id"`
	Cores            int64             `json:"cores"`
	CoreFraction     int64             `json:"core_fraction"`
	Memory           int64             `json:"memory"`
	BootDisk         BootDisk          `json:"boot_disk"`
	SubnetID         string            `json:"subnet_id"`
	ServiceAccountID string            `json:"service_account_id"`
	Container        COIContainer      `json:"container"`
	Labels           map[string]string `json:"labels"`
}

// BootDisk is a VM's boot disk from the newest image of a family; Size in
// bytes.
type BootDisk struct {
	ImageFamily   string `json:"image_family"`
	ImageFolderID string `json:"image_folder_id"`
	Type          string `json:"type"`
	Size          int64  `json:"size"`
}

// COIContainer is the one container a VM's COI specification declares.
type COIContainer struct {
	Image       string            `json:"image"`
	Args        []string          `json:"args"`
	Environment map[string]string `json:"environment"`
}

// GroupScale keeps a group between Min and Max VMs at CPUTarget per cent
// of CPU.
type GroupScale struct {
	Min       int64   `json:"min"`
	Max       int64   `json:"max"`
	CPUTarget float64 `json:"cpu_target"`
}

// GroupDeploy is how a group rolls: StartupSeconds before a new VM counts.
type GroupDeploy struct {
	MaxUnavailable int64 `json:"max_unavailable"`
	MaxExpansion   int64 `json:"max_expansion"`
	StartupSeconds int64 `json:"startup_seconds"`
}

// GroupHealthCheck probes GET Path on Port; OnFailure (recreate) is what
// auto-healing does with a VM that fails it.
type GroupHealthCheck struct {
	Port      int64  `json:"port,omitempty"`
	Path      string `json:"path,omitempty"`
	OnFailure string `json:"on_failure,omitempty"`
}

func (ContainerProps) isProps()     {}
func (TriggerProps) isProps()       {}
func (CloudFunctionProps) isProps() {}
func (GatewayProps) isProps()       {}
func (InstanceGroupProps) isProps() {}

func (p ContainerProps) cloudName() string     { return p.Name }
func (p TriggerProps) cloudName() string       { return p.Name }
func (p CloudFunctionProps) cloudName() string { return p.Name }
func (p GatewayProps) cloudName() string       { return p.Name }
func (p InstanceGroupProps) cloudName() string { return p.Name }

// openAPISpec is the part of an OpenAPI 3.0 document a Yandex API gateway
// of gosling's uses: paths to operations (by method, or
// x-yc-apigateway-any-method) that integrate with a Serverless Container,
// and an authorizer function as a security scheme
// (https://yandex.cloud/en/docs/api-gateway/concepts/extensions/).
type openAPISpec struct {
	OpenAPI    string                                 `json:"openapi"`
	Info       openAPIInfo                            `json:"info"`
	Paths      map[string]map[string]openAPIOperation `json:"paths"`
	Components *openAPIComponents                     `json:"components,omitempty"`
}

type openAPIInfo struct {
	Title   string `json:"title"`
	Version string `json:"version"`
}

type openAPIOperation struct {
	Parameters  []openAPIParameter `json:"parameters,omitempty"`
	Integration ycIntegration      `json:"x-yc-apigateway-integration"`
	// Security names the schemes an operation needs, each with its
	// scopes.
	Security []map[string][]string `json:"security,omitempty"`
}

type openAPIParameter struct {
	Name     string        `json:"name"`
	In       string        `json:"in"`
	Required bool          `json:"required"`
	Schema   openAPISchema `json:"schema"`
}

type openAPISchema struct {
	Type string `json:"type"`
}

// ycIntegration is x-yc-apigateway-integration: what an operation calls.
type ycIntegration struct {
	Type             string `json:"type"`
	ContainerID      string `json:"container_id,omitempty"`
	ServiceAccountID string `json:"service_account_id,omitempty"`
}

type openAPIComponents struct {
	SecuritySchemes map[string]securityScheme `json:"securitySchemes"`
}

type securityScheme struct {
	Type       string       `json:"type"`
	Scheme     string       `json:"scheme"`
	Authorizer ycAuthorizer `json:"x-yc-apigateway-authorizer"`
}

// ycAuthorizer is x-yc-apigateway-authorizer: a function that checks the
// bearer token, its answer cached for TTLSeconds.
type ycAuthorizer struct {
	Type             string `json:"type"`
	FunctionID       string `json:"function_id"`
	Tag              string `json:"tag"`
	ServiceAccountID string `json:"service_account_id"`
	TTLSeconds       int    `json:"authorizer_result_ttl_in_seconds,omitempty"`
}
