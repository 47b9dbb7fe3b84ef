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
  type = string
}

variable "agent_image" {
  type = string
}

variable "agent_config" {
  type = string
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
