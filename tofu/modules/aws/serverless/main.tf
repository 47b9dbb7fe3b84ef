# A one-job runner as an ECS Fargate task: Fargate runs a task for as long as
# it needs, so jobs up to Gosling's 60-minute serverless limit fit (AWS Lambda
# stops at 15 minutes and only suits eggs whose jobs are that short). The
# runner token comes from Secrets Manager through the task's secrets, never
# through OpenTofu. Needs `tofu init` with network access.

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
    image       = var.agent_image
    essential   = true
    stopTimeout = 120
    command     = ["agent", "run", "--one-job", "--max-run", "${var.max_run_minutes}m"]
    environment = [
      { name = "GOSLING_RUNNER_ID", value = var.runner_id },
      { name = "GOSLING_GITLAB_URL", value = var.gitlab_url },
      { name = "GOSLING_JOB_IMAGE", value = var.image },
      { name = "GOSLING_RUNNER_TAGS", value = join(",", var.tags) },
      { name = "GOSLING_AGENT_CONFIG", value = var.agent_config },
    ]
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

resource "aws_ecs_service" "runner" {
  name            = "gosling-${var.runner_id}"
  cluster         = var.cluster
  task_definition = aws_ecs_task_definition.runner.arn
  desired_count   = 1
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = var.subnets
    assign_public_ip = false
  }
}
