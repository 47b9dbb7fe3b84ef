variable "runner_id" {
  type = string
}

variable "egg" {
  type = string
}

variable "state" {
  type        = string
  description = "running (Apex) or stopped (Nadir)."
}

variable "cpu" {
  type = number
}

variable "memory_mib" {
  type = number
}

variable "disk_gib" {
  type = number
}

variable "image" {
  type = string
}

variable "concurrent" {
  type = number
}

variable "tags" {
  type = list(string)
}

variable "gitlab_url" {
  type = string
}

variable "token_ref" {
  type        = string
  description = "Secret URI of the runner token (yc-lockbox://...); the agent reads it with the instance's service account."
}

variable "agent_url" {
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

variable "subnet_id" {
  type = string
}

variable "service_account_id" {
  type    = string
  default = ""
}
