variable "runner_id" {
  type = string
}

variable "egg" {
  type = string
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

variable "gitlab_url" {
  type = string
}

variable "token_ref" {
  type        = string
  description = "Secret URI of the runner token (yc-lockbox://...); the platform mounts the token into the container, OpenTofu never sees it."
}

variable "agent_image" {
  type = string
}

variable "agent_config" {
  type        = string
  description = "The agent's configuration, as JSON. It names the token's secret URI, never the token, so it is not sensitive."
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
