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

variable "cores" {
  type        = number
  description = "Cores (1 to 4), from fly's serverless shape."
}

variable "core_fraction" {
  type        = number
  description = "The guaranteed share of the core, in percent (5, 20, 50 or 100)."
}

variable "memory_mib" {
  type = number
}

variable "max_run_minutes" {
  type        = number
  description = "The execution timeout: the egg's job timeout, at most 60 minutes."

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
  description = "The runner image (gitlab-runner and the gosling agent): MG/config.fly's agent.image."
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
  type        = string
  description = "The egg's runner service account (gosling deploy makes it): lockbox.payloadViewer on the egg's runner-token secret, nothing else."

  validation {
    condition     = var.service_account_id != ""
    error_message = "A serverless runner needs its egg's service account: run gosling deploy."
  }
}
