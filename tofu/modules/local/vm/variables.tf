variable "runner_id" {
  type        = string
  description = "Gosling's ID of the runner."
}

variable "egg" {
  type        = string
  description = "The egg the runner serves."
}

variable "state" {
  type        = string
  description = "running (Apex) or stopped (Nadir)."

  validation {
    condition     = contains(["running", "stopped"], var.state)
    error_message = "The state must be running or stopped."
  }
}

variable "cpu" {
  type    = number
  default = 1
}

variable "memory_mib" {
  type    = number
  default = 1024
}

variable "disk_gib" {
  type    = number
  default = 10
}

variable "image" {
  type    = string
  default = "alpine:3.20"
}

variable "concurrent" {
  type    = number
  default = 1
}

variable "tags" {
  type    = list(string)
  default = []
}

variable "agent_binary" {
  type        = string
  description = "Path of the gosling binary that runs the agent."
}

variable "agent_config" {
  type        = string
  description = "The agent's configuration, as JSON. It names the token's secret URI, never the token."
}

variable "state_dir" {
  type        = string
  description = "Directory under which the machine's work directory is made."
}
