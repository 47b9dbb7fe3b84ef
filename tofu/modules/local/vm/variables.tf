variable "runner_id" {
  type        = string
  description = "Gosling's ID of the runner."
}

variable "egg" {
  type        = string
  description = "The egg the runner serves."
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

variable "work_dir" {
  type        = string
  description = "The machine's work directory."
}

variable "launch_command" {
  type        = list(string)
  description = "gosling agent launch, as internal/agent.MachineContract renders it (the last element is the command, the rest its interpreter). It names the token's secret URI, never the token."
}

variable "stop_command" {
  type        = list(string)
  description = "gosling agent stop, rendered likewise."
}

variable "power_command" {
  type        = list(string)
  description = "gosling agent power for var.state, rendered likewise."
}

variable "capacity" {
  type        = string
  default     = "on_demand"
  description = "The capacity type the machine plays (on_demand, spot or preemptible): one of its labels; `gosling dev interrupt` plays a spot interruption on any local machine."

  validation {
    condition     = contains(["on_demand", "spot", "preemptible"], var.capacity)
    error_message = "The capacity must be on_demand, spot or preemptible."
  }
}
