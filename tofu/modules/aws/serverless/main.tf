# A one-job runner on AWS, on the platform fly chose (fly.Runner.OnLambda):
#
#   lambda: a Lambda function from the runner image, for jobs whose
#     deadline fits Lambda's 15 minutes. The workflow invokes it
#     (InvokeRunner, Lambda Invoke); the agent takes the invocation from
#     the Lambda Runtime API, runs gitlab-runner run-single for one job and
#     answers when the job is done. The function's role is the egg's
#     runner role, with which the agent reads the runner token from
#     Secrets Manager.
#   fargate: an ECS Fargate task definition that the workflow starts with
#     ECS RunTask when a job waits; the task runs the agent, which runs one
#     job and exits. Its execution role reads the runner token into the
#     task's secrets; its task role is the egg's runner role.
#
# The container's command and environment are rendered by
# internal/agent.MachineContract; the token never passes through OpenTofu.
# Logs go to the deployment's runner log group, which gosling deploy makes.
# Needs `tofu init` with network access; the AWS provider authenticates
# with the worker's own identity, passed per run.

terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "gosling:deployment" = var.deployment
      "gosling:runner"     = var.runner_id
      "gosling:egg"        = var.egg
    }
  }

  dynamic "assume_role" {
    for_each = var.role_arn == "" ? [] : [var.role_arn]
    content {
      role_arn     = assume_role.value
      session_name = "gosling-${var.runner_id}"
    }
  }
}

locals {
  # aws-sm://{secret-name}/{key}
  token   = regex("^aws-sm://(.+)/([^/?]+)", var.token_ref)
  lambda  = var.platform == "lambda" ? 1 : 0
  fargate = var.platform == "fargate" ? 1 : 0
  # 1024 CPU units per vCPU; fly admits only Fargate's sizes (0.25 to 16 vCPU).
  task_cpu = floor(var.cpu * 1024 + 0.5)
}

# The secret's ARN, from its metadata: never its value.
data "aws_secretsmanager_secret" "token" {
  count = local.fargate
  name  = local.token[0]
}

resource "aws_ecs_task_definition" "runner" {
  count                    = local.fargate
  family                   = "gosling-${var.runner_id}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.task_cpu
  memory                   = var.memory_mib
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = var.task_role_arn

  ephemeral_storage {
    size_in_gib = min(max(var.disk_gib, 21), 200)
  }

  container_definitions = jsonencode([{
    name        = "runner"
    image       = var.container_image
    essential   = true
    stopTimeout = 120
    command     = var.container_command
    environment = [for k in sort(keys(var.container_environment)) : { name = k, value = var.container_environment[k] }]
    secrets = [
      { name = "GOSLING_RUNNER_TOKEN", valueFrom = "${data.aws_secretsmanager_secret.token[0].arn}:${local.token[1]}::" },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = var.log_group
        awslogs-region        = var.region
        awslogs-stream-prefix = var.runner_id
      }
    }
  }])

  lifecycle {
    precondition {
      condition     = var.execution_role_arn != "" && var.task_role_arn != ""
      error_message = "A Fargate runner needs its egg's task and execution roles: run gosling deploy."
    }
  }
}

resource "aws_lambda_function" "runner" {
  count         = local.lambda
  function_name = "gosling-${var.runner_id}"
  package_type  = "Image"
  image_uri     = var.container_image
  role          = var.task_role_arn
  memory_size   = var.memory_mib
  timeout       = var.max_run_minutes * 60

  image_config {
    command = var.container_command
  }

  environment {
    variables = var.container_environment
  }

  ephemeral_storage {
    size = min(max(var.disk_gib * 1024, 512), 10240)
  }

  logging_config {
    log_format = "Text"
    log_group  = var.log_group
  }

  lifecycle {
    precondition {
      condition     = var.task_role_arn != "" && var.max_run_minutes <= 15
      error_message = "A Lambda runner needs its egg's runner role and a deadline of 15 minutes at most."
    }
  }
}
