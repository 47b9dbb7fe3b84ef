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

variable "platform" {
  type        = string
  description = "lambda (jobs within Lambda's 15 minutes) or fargate, as fly chose (fly.Runner.OnLambda)."

  validation {
    condition     = contains(["lambda", "fargate"], var.platform)
    error_message = "The platform must be lambda or fargate."
  }
}

variable "cpu" {
  type        = number
  description = "vCPUs of a Fargate task (Lambda's follow from memory_mib)."
}

variable "memory_mib" {
  type = number
}

variable "disk_gib" {
  type        = number
  description = "The runner's disk: a Fargate task's ephemeral storage (21 to 200 GiB) or a Lambda function's /tmp (at most 10 GiB)."
}

variable "max_run_minutes" {
  type = number

  validation {
    condition     = var.max_run_minutes > 0 && var.max_run_minutes <= 60
    error_message = "Serverless runners live at most 60 minutes."
  }
}

variable "token_ref" {
  type        = string
  description = "Secret URI of the runner token (aws-sm://...); ECS mounts the token into a task, a Lambda runner's agent reads it with the function's role: OpenTofu never sees it."
}

variable "container_image" {
  type        = string
  description = "The runner image (gitlab-runner and the gosling agent): MG/config.fly's agent.image."
}

variable "container_command" {
  type        = list(string)
  description = "The container's command (gosling agent run --one-job ... on Fargate, gosling agent serve --lambda ... on Lambda), rendered by internal/agent.MachineContract."
}

variable "container_environment" {
  type        = map(string)
  description = "The container's environment, rendered likewise. It names the token's secret URI, never the token."
}

variable "region" {
  type = string
}

variable "role_arn" {
  type        = string
  default     = ""
  description = "A role the AWS provider assumes to make the machine (provider \"aws\" role_arn); empty: the worker's own identity."
}

variable "cluster" {
  type = string
}

variable "subnets" {
  type = list(string)
}

variable "task_role_arn" {
  type        = string
  description = "The egg's runner role (gosling deploy makes it): the Fargate task's role or the Lambda function's. It may read the egg's runner token and nothing else."
}

variable "execution_role_arn" {
  type        = string
  description = "The egg's ECS task execution role (gosling deploy makes it): pulls the image, reads the runner token into the task's secrets, writes its logs. Empty for Lambda."
}

variable "log_group" {
  type        = string
  description = "The deployment's runner log group (/gosling/<deployment>/runners), which gosling deploy makes."
}

variable "capacity" {
  type        = string
  default     = "on_demand"
  description = "How a Fargate task is bought: on_demand (capacity provider FARGATE) or spot (FARGATE_SPOT, which the cluster must have among its capacity providers). Lambda functions have one capacity."

  validation {
    condition     = contains(["on_demand", "spot"], var.capacity)
    error_message = "A Fargate task is bought on_demand or as spot."
  }
}
