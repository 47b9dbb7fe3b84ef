variable "runner_id" {
  type = string
}

variable "egg" {
  type = string
}

variable "deployment" {
  type        = string
  description = "The Gosling deployment that made the machine (api_gateway.name): one of its labels, by which reconciliation finds it without its state."
}

variable "cpu" {
  type = number
}

variable "memory_mib" {
  type = number
}

variable "image" {
  type = string
}

variable "tags" {
  type = list(string)
}

variable "max_run_minutes" {
  type = number

  validation {
    condition     = var.max_run_minutes > 0 && var.max_run_minutes <= 60
    error_message = "Serverless runners live at most 60 minutes."
  }
}

variable "token_ref" {
  type        = string
  description = "Secret URI of the runner token (yc-lockbox://...); the platform mounts the token into the container, OpenTofu never sees it."
}

variable "container_image" {
  type        = string
  description = "The runner image (gitlab-runner and gosling): MG/config.fly's agent.image."
}

variable "container_args" {
  type        = list(string)
  description = "The container's arguments (gosling agent serve ...), rendered by internal/agent.MachineContract."
}

variable "container_environment" {
  type        = map(string)
  description = "The container's environment, rendered likewise. It names the token's secret URI, never the token."
}

variable "folder_id" {
  type = string
}

variable "zone" {
  type = string
}

variable "service_account_id" {
  type    = string
  default = ""
}
