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

variable "platform_id" {
  type        = string
  description = "The Compute Cloud platform (fly.YandexVMPlatform)."
}

variable "cores" {
  type        = number
  description = "vCPUs, a count the platform takes (fly.VMShapeFor)."
}

variable "core_fraction" {
  type        = number
  description = "The guaranteed share of each vCPU, in percent."
}

variable "memory_gib" {
  type        = number
  description = "Memory in GiB, a whole number per vCPU the platform takes."
}

variable "disk_gib" {
  type = number
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
  type        = string
  description = "The egg's runner service account (gosling deploy makes it): lockbox.payloadViewer on the egg's runner-token secret, nothing else."

  validation {
    condition     = var.service_account_id != ""
    error_message = "A runner VM needs its egg's service account: run gosling deploy."
  }
}

variable "capacity" {
  type        = string
  default     = "on_demand"
  description = "How the VM is bought: on_demand, or preemptible."

  validation {
    condition     = contains(["on_demand", "preemptible"], var.capacity)
    error_message = "A Compute Cloud VM is bought on_demand or as preemptible."
  }
}
