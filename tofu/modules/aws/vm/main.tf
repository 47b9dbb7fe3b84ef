# An EC2 instance running gitlab-runner supervised by the gosling agent. Its
# first-boot script (var.user_data) is rendered by
# internal/agent.MachineContract: it downloads the gosling agent, checks its
# SHA-256, runs `gosling agent install` and starts the gosling-agent unit.
# The instance runs as the egg's runner identity (var.instance_profile,
# made by `gosling deploy`), which may read the egg's runner token and
# nothing else. Stopping the instance makes a dormant Nadir runner (the
# agent stops gitlab-runner gracefully first); starting it promotes it to
# Apex. The instance type is chosen by fly (fly.VMShapeFor). Needs `tofu
# init` with network access; the AWS provider authenticates with the
# worker's own identity, passed per run.

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

data "aws_ssm_parameter" "ubuntu" {
  name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
}

# With an Availability Zone, the instance goes into the first of the
# provider's subnets in that zone.
data "aws_subnet" "each" {
  for_each = var.availability_zone == "" ? toset([]) : toset(var.subnets)
  id       = each.value
}

locals {
  zone_subnets = [for s in var.subnets : s if var.availability_zone != "" && try(data.aws_subnet.each[s].availability_zone, "") == var.availability_zone]
  subnet_id    = var.availability_zone == "" ? var.subnets[0] : try(local.zone_subnets[0], "")
}

data "aws_subnet" "first" {
  id = var.subnets[0]
}

# The runner takes no connection: it only calls out (GitLab, MotherGoose,
# Secrets Manager, registries).
resource "aws_security_group" "runner" {
  name        = "gosling-${var.runner_id}"
  description = "Gosling runner ${var.runner_id}: outbound only"
  vpc_id      = data.aws_subnet.first.vpc_id

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_instance" "runner" {
  ami                    = data.aws_ssm_parameter.ubuntu.value
  instance_type          = var.instance_type
  subnet_id              = local.subnet_id
  vpc_security_group_ids = [aws_security_group.runner.id]
  iam_instance_profile   = var.instance_profile

  root_block_device {
    volume_size = var.disk_gib
    volume_type = "gp3"
    encrypted   = true
  }

  metadata_options {
    http_tokens = "required"
  }

  user_data = var.user_data

  # A Spot instance: a persistent request whose instance stops when EC2
  # interrupts it (EC2 allows stopping and starting a Spot instance only
  # for persistent requests, and persistent requests only with the stop
  # or hibernate behaviour), so a Nadir runner can sleep. The agent sees
  # the two-minute notice in the instance metadata and reports it; the
  # runner's workflow then destroys the instance, which cancels its
  # request.
  dynamic "instance_market_options" {
    for_each = var.capacity == "spot" ? [1] : []
    content {
      market_type = "spot"
      spot_options {
        spot_instance_type             = "persistent"
        instance_interruption_behavior = "stop"
      }
    }
  }

  tags = {
    Name               = "gosling-${var.runner_id}"
    "gosling:capacity" = var.capacity
  }

  lifecycle {
    ignore_changes = [ami]

    precondition {
      condition     = local.subnet_id != ""
      error_message = "None of provider \"aws\"'s subnets is in Availability Zone ${var.availability_zone}: add a subnet there or remove zone from the runner's fallback entry."
    }
  }
}

resource "aws_ec2_instance_state" "power" {
  instance_id = aws_instance.runner.id
  state       = var.state
}
