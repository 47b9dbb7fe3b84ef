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

  validation {
    condition     = contains(["running", "stopped"], var.state)
    error_message = "The state must be running or stopped."
  }
}

variable "instance_type" {
  type        = string
  description = "The EC2 instance type fly chose for the egg's cpu and memory (fly.VMShapeFor)."
}

variable "disk_gib" {
  type = number
}

variable "user_data" {
  type        = string
  description = "The first-boot script, rendered by internal/agent.MachineContract. It names the token's secret URI, never the token; the agent reads the token with the instance profile."
}

variable "region" {
  type = string
}

variable "role_arn" {
  type        = string
  default     = ""
  description = "A role the AWS provider assumes to make the machine (provider \"aws\" role_arn); empty: the worker's own identity."
}

variable "subnets" {
  type        = list(string)
  description = "The aws provider's subnets; the instance goes into the first."

  validation {
    condition     = length(var.subnets) > 0
    error_message = "The aws provider names no subnet: set subnets in MG/config.fly."
  }
}

variable "instance_profile" {
  type        = string
  description = "The instance profile of the egg's runner role (gosling deploy makes it): it may read the egg's runner token and nothing else."

  validation {
    condition     = var.instance_profile != ""
    error_message = "A runner VM needs its egg's instance profile: run gosling deploy."
  }
}

variable "capacity" {
  type        = string
  default     = "on_demand"
  description = "How the instance is bought: on_demand, or spot (EC2 Spot)."

  validation {
    condition     = contains(["on_demand", "spot"], var.capacity)
    error_message = "An EC2 instance is bought on_demand or as spot."
  }
}

variable "availability_zone" {
  type        = string
  default     = ""
  description = "The Availability Zone to place the instance in (the first of the subnets there); empty: the first subnet's."
}
