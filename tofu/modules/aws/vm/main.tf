# An EC2 instance running gitlab-runner supervised by the gosling agent. Its
# first-boot script (var.user_data) is rendered by
# internal/agent.MachineContract: it downloads gosling, checks its SHA-256,
# runs `gosling agent install` and starts the gosling-agent unit. Stopping
# the instance makes a dormant Nadir runner (the agent stops gitlab-runner
# gracefully first); starting it promotes it to Apex. Needs `tofu init` with
# network access.

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

  default_tags {
    tags = {
      "gosling:deployment" = var.deployment
      "gosling:runner"     = var.runner_id
      "gosling:egg"        = var.egg
    }
  }
}

locals {
  # The smallest general-purpose type that fits the requested shape.
  sizes = [
    { type = "t3.small", cpu = 2, mem = 2048 },
    { type = "t3.medium", cpu = 2, mem = 4096 },
    { type = "m6i.large", cpu = 2, mem = 8192 },
    { type = "m6i.xlarge", cpu = 4, mem = 16384 },
    { type = "m6i.2xlarge", cpu = 8, mem = 32768 },
    { type = "m6i.4xlarge", cpu = 16, mem = 65536 },
    { type = "m6i.8xlarge", cpu = 32, mem = 131072 },
    { type = "m6i.16xlarge", cpu = 64, mem = 262144 },
  ]
  fitting       = [for s in local.sizes : s.type if s.cpu >= var.cpu && s.mem >= var.memory_mib]
  instance_type = var.instance_type != "" ? var.instance_type : local.fitting[0]
}

data "aws_ssm_parameter" "ubuntu" {
  name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
}

resource "aws_instance" "runner" {
  ami                  = data.aws_ssm_parameter.ubuntu.value
  instance_type        = local.instance_type
  subnet_id            = element(var.subnets, 0)
  iam_instance_profile = var.instance_profile

  root_block_device {
    volume_size = var.disk_gib
    volume_type = "gp3"
    encrypted   = true
  }

  metadata_options {
    http_tokens = "required"
  }

  user_data = var.user_data

  tags = {
    Name = "gosling-${var.runner_id}"
  }

  lifecycle {
    ignore_changes = [ami]
  }
}

resource "aws_ec2_instance_state" "power" {
  instance_id = aws_instance.runner.id
  state       = var.state
}
