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

variable "max_run_minutes" {
  type        = number
  description = "The runner's deadline; at most 60."

  validation {
    condition     = var.max_run_minutes > 0 && var.max_run_minutes <= 60
    error_message = "Serverless runners live at most 60 minutes."
  }
}

variable "work_dir" {
  type        = string
  description = "The container's work directory; serve.url there says where it takes invocations."
}

variable "launch_command" {
  type        = list(string)
  description = "gosling agent launch --serve, as internal/agent.MachineContract renders it (the last element is the command, the rest its interpreter). It names the token's secret URI, never the token."
}

variable "stop_command" {
  type        = list(string)
  description = "gosling agent stop, rendered likewise."
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
