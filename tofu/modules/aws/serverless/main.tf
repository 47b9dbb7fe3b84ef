# A one-job runner as an ECS Fargate task definition: the workflow starts it
# with ECS RunTask (the InvokeRunner activity) when a job waits, and the task
# runs the agent, which runs gitlab-runner run-single for one job and exits.
# Fargate runs a task for as long as it needs, so jobs up to Gosling's
# 60-minute serverless limit fit (AWS Lambda stops at 15 minutes and only
# suits eggs whose jobs are that short). The runner token comes from Secrets
# Manager through the task's secrets, never through OpenTofu. The container's
# command and environment are rendered by internal/agent.MachineContract.
# Needs `tofu init` with network access.

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
  token = regex("^aws-sm://(.+)/([^/?]+)", var.token_ref)
  # 1024 CPU units per vCPU; fly admits only Fargate's sizes (0.25 to 16 vCPU).
  task_cpu = floor(var.cpu * 1024 + 0.5)
}

data "aws_secretsmanager_secret" "token" {
  name = local.token[0]
}

resource "aws_ecs_task_definition" "runner" {
  family                   = "gosling-${var.runner_id}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.task_cpu
  memory                   = var.memory_mib
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = var.task_role_arn

  container_definitions = jsonencode([{
    name        = "runner"
    image       = var.container_image
    essential   = true
    stopTimeout = 120
    command     = var.container_command
    environment = [for k in sort(keys(var.container_environment)) : { name = k, value = var.container_environment[k] }]
    secrets = [
      { name = "GOSLING_RUNNER_TOKEN", valueFrom = "${data.aws_secretsmanager_secret.token.arn}:${local.token[1]}::" },
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
}
