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

variable "user_data" {
  type        = string
  description = "The first-boot script, rendered by internal/agent.MachineContract. It names the token's secret URI, never the token; the agent reads the token with the instance's service account."
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
